"""Files of run directories, exports and checkpoints, local or remote.

Every path may be local or a filesystem TensorFlow knows (`gs://`, `ram://`, ...), so that
`--run-dir gs://bucket/run` works the same as a local folder. Remote paths go through
`tf.io.gfile`, local ones through Python's own file functions with the same calls
(`_LocalFiles`), as Keras's file utilities do: a local preset folder or checkpoint then needs
no TensorFlow, under the JAX and torch backends too. Nothing here calls `os` on a path that
may be remote.

Writes are atomic: content goes to a hidden partial file beside the target
(`.partial-HOST-PID-XXXXXX.NAME`: the name's own suffix stays last, as Keras and h5py require
of the files they write), then is renamed over it, so a SIGKILL at any moment leaves either
the previous file or the new one, never half of one. A successful write also removes the
partials of the same name that dead writers left behind, and only those: a live writer's
partial (another process writing the same file) is left to it. A writer on this host is
dead when its process is gone; one on another host (a shared `gs://` folder) cannot be
asked, so its partial counts as abandoned once it has not changed for ABANDONED_AFTER_S.
Libraries that can only write local files (h5py, Keras's zip writer, the TFLite converter)
write the partial file itself when the target is local, and into a local scratch folder when
it is remote (`staged_file`, `staged_dir`); scratch folders live in the system temp folder
as `keras-mixer-PID-XXXX`, and the next one made removes those of processes that no longer
run.

A write that fails for a reason of the file system (no space left, no permission, a
read-only disk) raises StorageError naming the path and the reason, in one line; the
partial file is removed, so the previous file stays as it was.
"""

import contextlib
import errno
import json
import os
import posixpath
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
import types

SCRATCH_PREFIX = "keras-mixer-"
_PARTIAL = ".partial-"  # a partial file's name starts with it: hidden
# A partial file of another host that has not changed for this long is a dead writer's: a live
# writer renames its partial as soon as it is complete, and an upload lands whole on gs://.
ABANDONED_AFTER_S = 3600
# The file-system errors a user fixes (free space, permissions, another disk), whatever
# raises them: Python (OSError.errno) or TensorFlow (whose message ends "PATH; <strerror>").
_NO_SPACE = "no space left on the device"
_USER_FIXABLE = (
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class StorageError(OSError):
    """A path that cannot be read or written as asked; the message names it and the fix."""


def host():
    """This machine's name as partial files and run leases record it."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _is_tf_error(error, kind="OpError"):
    """Whether `error` is TensorFlow's `tf.errors.<kind>`; never when TensorFlow is not loaded
    (then no error can be one), so that local files need no TensorFlow."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, getattr(tf.errors, kind))


def _file_system_error(error):
    """`(reason, path)` for an error a user fixes in the file system (reason e.g. "no space
    left on the device"; path the file as the error names it, or None); None for any other."""
    if isinstance(error, OSError):
        code, path = error.errno, error.filename
    elif _is_tf_error(error):  # its message holds "PATH; <strerror>"
        found = (re.search(rf"(\S+); {re.escape(os.strerror(c))}", error.message)
                 for c in _USER_FIXABLE)
        code, path = next(((c, m[1]) for c, m in zip(_USER_FIXABLE, found) if m), (None, None))
        if code is None and _is_tf_error(error, "PermissionDeniedError"):  # gs:// IAM
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
        found = _file_system_error(error)
        if found is None or (space_only and found[0] != _NO_SPACE):
            raise
        reason, named = found
        if named is None or _PARTIAL in named:  # a partial name: the file it would become
            named = path
        fix = ("Free space there or choose another folder" if reason == _NO_SPACE
               else "Choose a folder you can write to")
        raise StorageError(
            f"cannot write {os.fspath(named)!r}: {reason}. {fix}, then run the command "
            "again (the files already there are intact)."
        ) from None


class _LocalFiles:
    """The calls of `tf.io.gfile` this module makes, on local paths with Python's own."""

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


def _gfile(path):
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


def _checked(function, path):
    """`function(path)` with the file system's own errors (a bucket that does not exist, no
    permission) as one StorageError naming the path."""
    try:
        return function(os.fspath(path))
    except Exception as error:
        if not _is_tf_error(error):
            raise
        raise StorageError(f"cannot read {os.fspath(path)!r}: {error.message}") from None


def exists(path):
    return _checked(_gfile(path).exists, path)


def isdir(path):
    return _checked(_gfile(path).isdir, path)


def makedirs(path):
    with writing(path):
        _gfile(path).makedirs(os.fspath(path))


def read_bytes(path):
    with _gfile(path).GFile(os.fspath(path), "rb") as file:
        return file.read()


def read_text(path):
    with _gfile(path).GFile(os.fspath(path), "r") as file:
        return file.read()


def read_json(path):
    return json.loads(read_text(path))


def _partial_name(path):
    token = secrets.token_hex(3)
    return join(dirname(path), f"{_PARTIAL}{host()}-{os.getpid()}-{token}.{basename(path)}")


def pid_alive(pid):
    """Whether the process `pid` of this host runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_change_s(path):
    """Seconds since `path` (a file, or the newest file of a folder) last changed; None where
    the file system keeps no times (ram://)."""
    gfile = _gfile(path)
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


def _remove_partials(path):
    """Removes the partial files or folders of `path` that dead writers left (not those of
    live ones: each writer renames or removes its own)."""
    gfile, directory = _gfile(path), dirname(path)
    pattern = re.compile(
        rf"^{re.escape(_PARTIAL)}(?:(?P<host>.+?)-)?(?P<pid>\d+)-[0-9a-f]{{6}}"
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
            gone = isinstance(error, FileNotFoundError) or _is_tf_error(error, "NotFoundError")
            if not gone:
                raise


@contextlib.contextmanager
def _published(path):
    """Yields the partial name to fill; on success renames it over `path` (local or remote)."""
    gfile, path = _gfile(path), os.fspath(path)
    partial = _partial_name(path)
    try:
        with writing(path):
            gfile.makedirs(dirname(path))
            yield partial
            gfile.rename(partial, path, overwrite=True)
    except BaseException:
        if gfile.exists(partial):
            gfile.remove(partial)
        raise
    _remove_partials(path)


def write_atomically(path, content):
    """Writes bytes or text to `path` (local or remote): a partial file, then a rename."""
    with _published(path) as partial:
        with _gfile(partial).GFile(partial, "wb" if isinstance(content, bytes) else "w") as file:
            file.write(content)
    return os.fspath(path)


def copy_file(source, path):
    """Copies the file `source` to `path` (each local or remote): a partial file, then a rename."""
    with _published(path) as partial:
        _gfile(source if is_remote(source) else partial).copy(
            os.fspath(source), partial, overwrite=True)
    return os.fspath(path)


def write_json(path, value):
    return write_atomically(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def remove(path):
    _gfile(path).remove(os.fspath(path))


def remove_empty_dir(path):
    """Removes the folder `path` if it holds nothing."""
    gfile = _gfile(path)
    if gfile.isdir(path) and not gfile.listdir(path):
        gfile.rmtree(os.fspath(path))


@contextlib.contextmanager
def scratch_dir():
    """A local folder for libraries that write local files only; removed on exit.

    Folders that killed processes left in the system temp folder are removed first.
    """
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        match = re.match(rf"^{SCRATCH_PREFIX}(\d+)-", name)
        if match and not pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    with writing(root):
        directory = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=root)
    try:
        with writing(directory):
            yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def staged_file(path):
    """Yields a local file name to write; on success the file lands atomically at `path`.

    Local: the yielded name is the partial file itself (no copy). Remote: a scratch file,
    copied to the partial name beside `path`, then renamed.
    """
    if not is_remote(path):
        with _published(path) as partial:
            yield partial
        return
    with scratch_dir() as scratch:
        local = os.path.join(scratch, basename(path))
        yield local
        with _published(path) as partial:
            _gfile(partial).copy(local, partial, overwrite=True)


@contextlib.contextmanager
def local_copy(path):
    """Yields a local file holding a copy of `path` (for readers of local files, e.g. h5py)."""
    if not is_remote(path):
        yield os.fspath(path)
        return
    with scratch_dir() as scratch:
        local = os.path.join(scratch, basename(path))
        _gfile(path).copy(os.fspath(path), local, overwrite=True)
        yield local


@contextlib.contextmanager
def staged_dir(path, entry_file=None):
    """Yields a local folder to fill; on success it replaces the folder `path`.

    Local: the old folder is renamed aside, the filled one into place, the old one removed:
    a kill leaves the old folder or the new one at `path` (or, between the two renames, the
    old one under its partial name, removed by the next write). Remote stores have no folder
    rename: the files are copied into a partial folder, `path` is removed, and the partial
    folder's files are renamed into place with `entry_file` (what readers open first, e.g.
    `saved_model.pb`) last, so that a folder with its entry file is always complete.
    """
    gfile, path = _gfile(path), os.fspath(path)
    with writing(path):
        gfile.makedirs(dirname(path))
        if is_remote(path):
            yield from _staged_remote_dir(path, entry_file)
        else:
            yield from _staged_local_dir(path)
    _remove_partials(path)


def _staged_local_dir(path):
    partial, previous = _partial_name(path), _partial_name(path)
    os.makedirs(partial)
    try:
        yield partial
        os.chmod(partial, 0o755)
        if os.path.isdir(path):
            os.replace(path, previous)
        os.replace(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def _staged_remote_dir(path, entry_file):
    gfile = _gfile(path)
    with scratch_dir() as scratch:
        local = os.path.join(scratch, basename(path))
        os.makedirs(local)
        yield local
        files = sorted(
            os.path.relpath(os.path.join(root, name), local)
            for root, _, names in os.walk(local)
            for name in names
        )
        if entry_file in files:
            files.remove(entry_file)
            files.append(entry_file)
        partial = _partial_name(path)
        for relative in files:
            gfile.makedirs(posixpath.dirname(posixpath.join(partial, relative)))
            gfile.copy(os.path.join(local, relative), posixpath.join(partial, relative))
        if gfile.exists(path):
            gfile.rmtree(path)
        for relative in files:
            target = posixpath.join(path, relative)
            gfile.makedirs(posixpath.dirname(target))
            gfile.rename(posixpath.join(partial, relative), target, overwrite=True)
        gfile.rmtree(partial)


def check_writable(directory, what="--out"):
    """Creates `directory` if needed and proves a file can be written there, or says why not."""
    gfile, directory = _gfile(directory), os.fspath(directory)
    if gfile.exists(directory) and not gfile.isdir(directory):
        raise StorageError(f"{directory!r} is a file, not a folder: choose a folder for {what}.")
    probe = join(directory, f".write-test{_PARTIAL}{os.getpid()}-{secrets.token_hex(3)}")
    try:
        gfile.makedirs(directory)
        with gfile.GFile(probe, "w") as file:
            file.write("")
        gfile.remove(probe)
    except Exception as error:  # gfile raises tf.errors.*, OSError, PermissionError
        reason = ((_file_system_error(error) or [None])[0] or getattr(error, "strerror", None)
                  or getattr(error, "message", None) or error)
        raise StorageError(
            f"cannot write to {directory!r} ({reason}): choose a folder you can write to "
            f"for {what}."
        ) from None
