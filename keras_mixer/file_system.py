"""The file functions of a path, local or remote, and what their failures say to a person.

Every path may be local or a filesystem TensorFlow knows (`gs://`, `ram://`, ...), so that
`--run-dir gs://bucket/run` works the same as a local folder. Remote paths go through
`tf.io.gfile`, local ones through Python's own file functions with the same calls
(`_LocalFiles`), as Keras's file utilities do: a local preset folder or checkpoint then needs
no TensorFlow, under the JAX and torch backends too. Nothing here calls `os` on a path that
may be remote.

A failure a user fixes in the file system (no space left, no permission, a read-only disk)
reads alike from either side: Python raises OSError with an errno, TensorFlow a
`tf.errors.*` whose message ends "PATH; <strerror>". `writing` turns both into one
StorageError line naming the path, the reason and the fix. This module is the layer under
keras_mixer/storage.py, which callers use; it knows nothing of partial files but their
name's prefix, so that an error names the file a partial one becomes.
"""

import contextlib
import errno
import os
import posixpath
import re
import shutil
import sys
import types

# A partial file's name starts with it (keras_mixer/partial_files.py): hidden.
PARTIAL = ".partial-"
# The file-system errors a user fixes (free space, permissions, another disk), whatever
# raises them: Python (OSError.errno) or TensorFlow (whose message ends "PATH; <strerror>").
_NO_SPACE = "no space left on the device"
_USER_FIXABLE = (
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class StorageError(OSError):
    """A path that cannot be read or written as asked; the message names it and the fix."""


class _LocalFiles:
    """The calls of `tf.io.gfile` that keras_mixer makes, on local paths with Python's own."""

    GFile = staticmethod(open)
    exists = staticmethod(os.path.exists)
    isdir = staticmethod(os.path.isdir)
    listdir = staticmethod(os.listdir)
    remove = staticmethod(os.remove)
    rmtree = staticmethod(shutil.rmtree)
    walk = staticmethod(os.walk)

    @staticmethod
    def makedirs(path):
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def rename(source, target, overwrite=False):
        if not overwrite and os.path.exists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
        os.replace(source, target)

    @staticmethod
    def copy(source, target, overwrite=False):
        if not overwrite and os.path.exists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
        shutil.copyfile(source, target)

    @staticmethod
    def stat(path):
        return types.SimpleNamespace(mtime_nsec=os.stat(path).st_mtime_ns)


def gfile_for(path):
    """The file functions for `path`: tf.io.gfile's for a remote one (TensorFlow is imported
    then, on first use), Python's for a local one."""
    if not is_remote(path):
        return _LocalFiles
    import tensorflow as tf

    return tf.io.gfile


def is_remote(path):
    """True for `scheme://...` paths (gs://, ram://, s3://), which only tf.io.gfile can open."""
    return bool(_SCHEME.match(os.fspath(path)))


def join(directory, *names):
    directory = os.fspath(directory)
    return posixpath.join(directory, *names) if is_remote(directory) else os.path.join(
        directory, *names
    )


def dirname(path):
    path = os.fspath(path)
    return posixpath.dirname(path) if is_remote(path) else os.path.dirname(os.path.abspath(path))


def basename(path):
    return posixpath.basename(os.fspath(path).rstrip("/"))


def is_tf_error(error, kind="OpError"):
    """Whether `error` is TensorFlow's `tf.errors.<kind>`; never when TensorFlow is not loaded
    (then no error can be one), so that local files need no TensorFlow."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, getattr(tf.errors, kind))


def file_system_error(error):
    """`(reason, path)` for an error a user fixes in the file system (reason e.g. "no space
    left on the device"; path the file as the error names it, or None); None for any other."""
    if isinstance(error, OSError):
        code, path = error.errno, error.filename
    elif is_tf_error(error):  # its message holds "PATH; <strerror>"
        found = (re.search(rf"(\S+); {re.escape(os.strerror(c))}", error.message)
                 for c in _USER_FIXABLE)
        code, path = next(((c, m[1]) for c, m in zip(_USER_FIXABLE, found) if m), (None, None))
        if code is None and is_tf_error(error, "PermissionDeniedError"):  # gs:// IAM
            return f"permission denied ({' '.join(error.message.split())})", None
    else:
        return None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return _NO_SPACE, path
    return (os.strerror(code).lower(), path) if code in _USER_FIXABLE else None


@contextlib.contextmanager
def writing(path, space_only=False):
    """Turns a file-system error raised in the block (no space, no permission) into one
    StorageError line naming the file and the reason: the file the error names, else `path`
    (also in place of a partial file's name).

    `space_only`: only a lack of space, for a block that also reads (a training run, an
    export): there a permission error may be a read's, which "cannot write" would misname.
    """
    try:
        yield
    except StorageError:
        raise
    except Exception as error:  # OSError, or tf.errors.* from tf.io.gfile and the converters
        found = file_system_error(error)
        if found is None or (space_only and found[0] != _NO_SPACE):
            raise
        reason, named = found
        if named is None or PARTIAL in named:  # a partial name: the file it would become
            named = path
        fix = ("Free space there or choose another folder" if reason == _NO_SPACE
               else "Choose a folder you can write to")
        raise StorageError(
            f"cannot write {os.fspath(named)!r}: {reason}. {fix}, then run the command "
            "again (the files already there are intact)."
        ) from None
