"""The walk of an image folder's directories: class folders, image files, and what is left out.

training/image_folder.py indexes a folder from what this walk finds; the rules of what counts
as what live here, apart from the index's checks and reports:
- A class's images are its folder's image files at any depth (ROOT/train/cat/2024/x.jpg is a
  cat), as Keras's `image_dataset_from_directory` reads them; image files are those with an
  extension TensorFlow decodes, `training.images.IMAGE_EXTENSIONS` (.jpg, .jpeg, .png, .bmp,
  .gif, .webp, any case). Other files come back with why they are left out, to be reported.
- Hidden entries (names starting with ".": .ipynb_checkpoints/, .DS_Store, macOS's ._x.jpg)
  are never classes or images, and are not reported.
- Symbolic links are followed (a class folder may link to photos kept elsewhere); a link to
  nothing is a broken link, left out; a link loop (train/e -> e, or a link to a folder above)
  is a DataError naming the link, as the walk would never end.
- Entries are typed by the directory listing itself (no stat per file); only links are
  resolved.
"""

import errno
import os

from training.errors import DataError
from training.images import IMAGE_EXTENSIONS


def hidden(name):
    """Names starting with "." are never classes or images (.DS_Store, ._x.jpg, .ipynb_...)."""
    return name.startswith(".")


def entries(directory):
    """The visible entries of `directory`, sorted: (folders, files, broken links), following
    symbolic links; a link loop is a DataError."""
    folders, files, broken = [], [], []
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda entry: entry.name):
            if hidden(entry.name):
                continue
            if entry.is_symlink():
                kind = _link_kind(entry.path)
            else:  # the directory listing's own type: no stat per file
                kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
            {"folder": folders, "file": files, "broken": broken}[kind].append(entry.name)
    return folders, files, broken


def _link_kind(path):
    """What the symbolic link `path` leads to: "folder", "file" or "broken" (to nothing)."""
    try:
        is_folder = os.path.isdir(os.path.realpath(path, strict=True))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(
                f"{path} is a symbolic link loop ({path} -> {os.readlink(path)}, which never "
                "reaches a file or folder): remove the link, or point it at a folder of images."
            ) from None
        return "broken"
    return "folder" if is_folder else "file"


def class_files(class_dir):
    """The image files under `class_dir` at any depth, sorted, following symbolic links, and
    the files left out, with why: (paths, [(path, why)]). A link loop is a DataError."""
    found, left_out = [], []

    def visit(directory, above):
        folders, files, broken = entries(directory)
        for path in (os.path.join(directory, name) for name in files):
            if path.lower().endswith(IMAGE_EXTENSIONS):
                found.append(path)
            else:
                left_out.append((path, _extension(path)))
        left_out.extend((os.path.join(directory, name), "broken link") for name in broken)
        for name in folders:
            path = os.path.join(directory, name)
            real = os.path.realpath(path)
            if real in above:
                raise DataError(
                    f"{path} is a symbolic link loop: it leads back to {real}, a folder above "
                    "it, so the folder never ends. Remove the link."
                )
            visit(path, above | {real})

    visit(class_dir, {os.path.realpath(class_dir)})
    return sorted(found), left_out


def link_in(path, root):
    """The first symbolic link on the way from `root` down to `path`, or None."""
    parts = os.path.relpath(path, root).split(os.sep)
    for depth in range(1, len(parts) + 1):
        candidate = os.path.join(root, *parts[:depth])
        if os.path.islink(candidate):
            return candidate
    return None


def _extension(path):
    extension = os.path.splitext(path)[1].lower()
    return f"{extension} file" if extension else "file without extension"
