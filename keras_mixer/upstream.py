"""The version guard of every fence: the modules that alone use an upstream private API.

A fence (`export/litert_internals.py`, ...) names what it uses, why no public API does it,
and the upstream versions it was checked on. When it is imported on another version, this
guard says so once, at the start: a warning where a changed private API can only fail loudly
(an AttributeError, a changed signature), an `UpstreamVersionError` where it could give a
wrong answer without a word. A version bump is then one fence per package to review;
tests/test_fences.py fails when private API is used outside them.
"""

import logging

log = logging.getLogger(__name__)


class UpstreamVersionError(RuntimeError):
    """An upstream package at a version a fence was not checked on, where that could mislead."""


def check_version(distribution, installed, checked, uses, *, wrong_result_possible=False):
    """Warns, or raises UpstreamVersionError, unless `installed`'s major.minor is in `checked`.

    Example:
    >>> check_version("keras", keras.version(), ("3.15",), "training/keras_internals.py")
    """
    if ".".join(installed.split(".")[:2]) in checked:
        return
    message = (
        f"{uses} uses private API of {distribution}, checked on {', '.join(checked)}; this is "
        f"{installed}. Install a checked version (requirements.txt), or check the fence and "
        "add this version to its list."
    )
    if wrong_result_possible:
        raise UpstreamVersionError(message)
    log.warning(message)
