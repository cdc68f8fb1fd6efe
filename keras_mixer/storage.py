"""Files of run directories, exports and checkpoints, local or remote, through `tf.io.gfile`.

Every path may be local or a filesystem TensorFlow knows (`gs://`, `ram://`, ...), so that
`--run-dir gs://bucket/run` works the same as a local folder; nothing here calls `os` on a
path that may be remote.

Writes are atomic: content goes to a hidden partial file beside the target
(`.NAME.partial-PID-XXXX`), then is renamed over it, so a SIGKILL at any moment leaves
either the previous file or the new one, never half of one. A successful write also
removes the partials that killed writers of the same name left behind. Libraries that can
only write local files (h5py, matplotlib, Keras's zip writer, the TFLite converter) write
into a local scratch folder first (`staged_file`, `staged_dir`); scratch folders live in
the system temp folder as `keras-mixer-PID-XXXX` and the next one made removes those of
processes that no longer run.
"""

import contextlib
import json
import os
import posixpath
import re
import secrets
import shutil
import tempfile

SCRATCH_PREFIX = "keras-mixer-"
_PARTIAL = ".partial-"
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class StorageError(OSError):
    """A path that cannot be read or written as asked; the message names it and the fix."""


def _gfile():
    import tensorflow as tf  # imported on first use: `import keras_mixer` stays light

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


def exists(path):
    return _gfile().exists(os.fspath(path))


def isdir(path):
    return _gfile().isdir(os.fspath(path))


def makedirs(path):
    _gfile().makedirs(os.fspath(path))


def read_bytes(path):
    with _gfile().GFile(os.fspath(path), "rb") as file:
        return file.read()


def read_text(path):
    with _gfile().GFile(os.fspath(path), "r") as file:
        return file.read()


def read_json(path):
    return json.loads(read_text(path))


def _partial_name(path):
    return join(dirname(path), f".{basename(path)}{_PARTIAL}{os.getpid()}-{secrets.token_hex(3)}")


def _remove_partials(path, keep=None):
    """Removes the partial files or folders of `path` that earlier, killed writers left."""
    gfile, directory, prefix = _gfile(), dirname(path), f".{basename(path)}{_PARTIAL}"
    if not gfile.isdir(directory):
        return
    for name in gfile.listdir(directory):
        name = name.rstrip("/")
        candidate = join(directory, name)
        if name.startswith(prefix) and candidate != keep:
            (gfile.rmtree if gfile.isdir(candidate) else gfile.remove)(candidate)


def write_atomically(path, content):
    """Writes bytes or text to `path` (local or remote): a partial file, then a rename."""
    gfile, path = _gfile(), os.fspath(path)
    gfile.makedirs(dirname(path))
    partial = _partial_name(path)
    try:
        with gfile.GFile(partial, "wb" if isinstance(content, bytes) else "w") as file:
            file.write(content)
        gfile.rename(partial, path, overwrite=True)
    except BaseException:
        if gfile.exists(partial):
            gfile.remove(partial)
        raise
    _remove_partials(path)
    return path


def write_json(path, value):
    return write_atomically(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def scratch_dir():
    """A local folder for libraries that write local files only; removed on exit.

    Folders that killed processes left in the system temp folder are removed first.
    """
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        match = re.match(rf"^{SCRATCH_PREFIX}(\d+)-", name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    directory = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=root)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def staged_file(path):
    """Yields a local file name to write; on success its bytes land atomically at `path`."""
    with scratch_dir() as scratch:
        local = os.path.join(scratch, basename(path))
        yield local
        with open(local, "rb") as file:
            write_atomically(path, file.read())


@contextlib.contextmanager
def local_copy(path):
    """Yields a local file holding a copy of `path` (for readers of local files, e.g. h5py)."""
    if not is_remote(path):
        yield os.fspath(path)
        return
    with scratch_dir() as scratch:
        local = os.path.join(scratch, basename(path))
        _gfile().copy(os.fspath(path), local, overwrite=True)
        yield local


@contextlib.contextmanager
def staged_dir(path, entry_file=None):
    """Yields a local folder to fill; on success it replaces the folder `path`.

    Local: the filled folder is renamed over `path` (atomic). Remote stores have no folder
    rename: the files are copied into a partial folder, `path` is removed, and the partial
    folder's files are renamed into place with `entry_file` (what readers open first, e.g.
    `saved_model.pb`) last, so that a folder with its entry file is always complete.
    """
    gfile, path = _gfile(), os.fspath(path)
    gfile.makedirs(dirname(path))
    if not is_remote(path):
        partial = _partial_name(path)
        os.makedirs(partial)
        try:
            yield partial
            os.chmod(partial, 0o755)
            if os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(partial, path)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _remove_partials(path)
        return
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
        _remove_partials(path)


def check_writable(directory, what="--out"):
    """Creates `directory` if needed and proves a file can be written there, or says why not."""
    gfile, directory = _gfile(), os.fspath(directory)
    if gfile.exists(directory) and not gfile.isdir(directory):
        raise StorageError(f"{directory!r} is a file, not a folder: choose a folder for {what}.")
    probe = join(directory, f".write-test{_PARTIAL}{os.getpid()}-{secrets.token_hex(3)}")
    try:
        gfile.makedirs(directory)
        with gfile.GFile(probe, "w") as file:
            file.write("")
        gfile.remove(probe)
    except Exception as error:  # gfile raises tf.errors.*, OSError, PermissionError
        reason = getattr(error, "strerror", None) or getattr(error, "message", None) or error
        raise StorageError(
            f"cannot write to {directory!r} ({reason}): choose a folder you can write to "
            f"for {what}."
        ) from None
