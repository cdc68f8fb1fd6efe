"""Partial files: where an atomic write puts its content before the rename, and who cleans up.

Content goes to a hidden partial file beside the target (`.partial-HOST-PID-XXXXXX.NAME`:
the name's own suffix stays last, as Keras and h5py require of the files they write), then
is renamed over it (`published`), so a SIGKILL at any moment leaves either the previous file
or the new one, never half of one. The name and the pattern that finds it again live here
together, with the liveness test that decides whose partial may be removed.

A successful write also removes the partials of the same name that dead writers left behind,
and only those: a live writer's partial (another process writing the same file) is left to it.
A writer on this host is dead when its process is gone; one on another host (a shared `gs://`
folder) cannot be asked, so its partial counts as abandoned once it has not changed for
ABANDONED_AFTER_S.
"""

import contextlib
import os
import re
import secrets
import socket
import time

from keras_mixer.file_system import (
    PARTIAL,
    basename,
    dirname,
    gfile_for,
    is_tf_error,
    join,
    writing,
)

# A partial file of another host that has not changed for this long is a dead writer's: a live
# writer renames its partial as soon as it is complete, and an upload lands whole on gs://.
ABANDONED_AFTER_S = 3600


def host():
    """This machine's name as partial files and run leases record it."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def pid_alive(pid):
    """Whether the process `pid` of this host runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_name(path):
    """A fresh partial name for `path`, beside it, that names this writer (host and pid)."""
    token = secrets.token_hex(3)
    return join(dirname(path), f"{PARTIAL}{host()}-{os.getpid()}-{token}.{basename(path)}")


def _last_change_s(path):
    """Seconds since `path` (a file, or the newest file of a folder) last changed; None where
    the file system keeps no times (ram://)."""
    gfile = gfile_for(path)
    if gfile.isdir(path):
        files = [join(root, name) for root, _, names in gfile.walk(path) for name in names]
    else:
        files = [path]
    newest = max((gfile.stat(file).mtime_nsec for file in files), default=0)
    return time.time() - newest / 1e9 if newest else None


def _abandoned(partial, candidate):
    """Whether the partial file `candidate` (its name matched by `partial`) is a dead writer's."""
    if partial["host"] in (None, host()):  # None: named before hosts were (pid only)
        return not pid_alive(int(partial["pid"]))
    age = _last_change_s(candidate)
    return age is not None and age > ABANDONED_AFTER_S


def remove_abandoned(path):
    """Removes the partial files or folders of `path` that dead writers left (not those of
    live ones: each writer renames or removes its own)."""
    gfile, directory = gfile_for(path), dirname(path)
    pattern = re.compile(
        rf"^{re.escape(PARTIAL)}(?:(?P<host>.+?)-)?(?P<pid>\d+)-[0-9a-f]{{6}}"
        rf"\.{re.escape(basename(path))}$"
    )
    if not gfile.isdir(directory):
        return
    for name in gfile.listdir(directory):
        partial, candidate = pattern.match(name.rstrip("/")), join(directory, name.rstrip("/"))
        try:
            if partial and _abandoned(partial, candidate):
                (gfile.rmtree if gfile.isdir(candidate) else gfile.remove)(candidate)
        except Exception as error:  # its writer renamed or removed it meanwhile
            gone = isinstance(error, FileNotFoundError) or is_tf_error(error, "NotFoundError")
            if not gone:
                raise


@contextlib.contextmanager
def published(path):
    """Yields the partial name to fill; on success renames it over `path` (local or remote)."""
    gfile, path = gfile_for(path), os.fspath(path)
    partial = partial_name(path)
    try:
        with writing(path):
            gfile.makedirs(dirname(path))
            yield partial
            gfile.rename(partial, path, overwrite=True)
    except BaseException:
        if gfile.exists(partial):
            gfile.remove(partial)
        raise
    remove_abandoned(path)
