"""Files of run directories, exports and checkpoints, local or remote: the calls the code makes.

Callers read and write through this module only (`storage.read_json`, `storage.write_json`,
`storage.join`, `storage.StorageError`, ...); the layers beneath it are
keras_mixer/file_system.py (which file functions open a path, and what their failures say)
and keras_mixer/partial_files.py (the partial file of an atomic write, and its cleanup).

Every file a user keeps is written atomically: a partial file, then a rename. Libraries that
can only write local files (h5py, Keras's zip writer, the TFLite converter) write the partial
file itself when the target is local, and into a local scratch folder when it is remote
(`staged_file`, `staged_dir`); scratch folders live in the system temp folder as
`keras-mixer-PID-XXXX`, and the next one made removes those of processes that no longer run.

A write that fails for a reason of the file system (no space left, no permission, a
read-only disk) raises StorageError naming the path and the reason, in one line; the
partial file is removed, so the previous file stays as it was.
"""

import contextlib
import json
import os
import posixpath
import re
import secrets
import shutil
import tempfile

from keras_mixer.file_system import (
    PARTIAL,
    StorageError,
    basename,
    dirname,
    file_system_error,
    gfile_for,
    is_remote,
    is_tf_error,
    join,
    writing,
)
from keras_mixer.partial_files import partial_name, pid_alive, published, remove_abandoned

SCRATCH_PREFIX = "keras-mixer-"


def _checked(function, path):
    """`function(path)` with the file system's own errors (a bucket that does not exist, no
    permission) as one StorageError naming the path."""
    try:
        return function(os.fspath(path))
    except Exception as error:
        if not is_tf_error(error):
            raise
        raise StorageError(f"cannot read {os.fspath(path)!r}: {error.message}") from None


def exists(path):
    return _checked(gfile_for(path).exists, path)


def isdir(path):
    return _checked(gfile_for(path).isdir, path)


def makedirs(path):
    with writing(path):
        gfile_for(path).makedirs(os.fspath(path))


def read_bytes(path):
    with gfile_for(path).GFile(os.fspath(path), "rb") as file:
        return file.read()


def read_text(path):
    with gfile_for(path).GFile(os.fspath(path), "r") as file:
        return file.read()


def read_json(path):
    return json.loads(read_text(path))


def write_atomically(path, content):
    """Writes bytes or text to `path` (local or remote): a partial file, then a rename."""
    with published(path) as partial:
        with gfile_for(partial).GFile(partial, "wb" if isinstance(content, bytes) else "w") as file:
            file.write(content)
    return os.fspath(path)


def copy_file(source, path):
    """Copies the file `source` to `path` (each local or remote): a partial file, then a rename."""
    with published(path) as partial:
        gfile_for(source if is_remote(source) else partial).copy(
            os.fspath(source), partial, overwrite=True)
    return os.fspath(path)


def write_json(path, value):
    return write_atomically(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def remove(path):
    gfile_for(path).remove(os.fspath(path))


def remove_empty_dir(path):
    """Removes the folder `path` if it holds nothing."""
    gfile = gfile_for(path)
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
        with published(path) as partial:
            yield partial
        return
    with scratch_dir() as scratch:
        local = os.path.join(scratch, basename(path))
        yield local
        with published(path) as partial:
            gfile_for(partial).copy(local, partial, overwrite=True)


@contextlib.contextmanager
def local_copy(path):
    """Yields a local file holding a copy of `path` (for readers of local files, e.g. h5py)."""
    if not is_remote(path):
        yield os.fspath(path)
        return
    with scratch_dir() as scratch:
        local = os.path.join(scratch, basename(path))
        gfile_for(path).copy(os.fspath(path), local, overwrite=True)
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
    gfile, path = gfile_for(path), os.fspath(path)
    with writing(path):
        gfile.makedirs(dirname(path))
        if is_remote(path):
            yield from _staged_remote_dir(path, entry_file)
        else:
            yield from _staged_local_dir(path)
    remove_abandoned(path)


def _staged_local_dir(path):
    partial, previous = partial_name(path), partial_name(path)
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
    gfile = gfile_for(path)
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
        partial = partial_name(path)
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
    gfile, directory = gfile_for(directory), os.fspath(directory)
    if gfile.exists(directory) and not gfile.isdir(directory):
        raise StorageError(f"{directory!r} is a file, not a folder: choose a folder for {what}.")
    probe = join(directory, f".write-test{PARTIAL}{os.getpid()}-{secrets.token_hex(3)}")
    try:
        gfile.makedirs(directory)
        with gfile.GFile(probe, "w") as file:
            file.write("")
        gfile.remove(probe)
    except Exception as error:  # gfile raises tf.errors.*, OSError, PermissionError
        reason = ((file_system_error(error) or [None])[0] or getattr(error, "strerror", None)
                  or getattr(error, "message", None) or error)
        raise StorageError(
            f"cannot write to {directory!r} ({reason}): choose a folder you can write to "
            f"for {what}."
        ) from None
