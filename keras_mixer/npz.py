"""Reading an `.npz` checkpoint as float arrays, and telling a damaged or foreign file apart.

A damaged download, a pickle, an integer array, NaNs, a `.keras` zip or a file that is not
a zip at all each get their own `CheckpointError`, before any weight is assigned.
"""

import os
import zipfile
import zlib

import numpy as np

from keras_mixer.official_layout import CheckpointError


def read_npz(path, name=None):
    """Reads an .npz checkpoint into a dict of float arrays, refusing anything that is not one.

    Every array is checked here, before any weight is assigned: it must be a floating-point
    .npy array (never a pickle, which could run code) whose values are all finite, and
    every zip member must pass its CRC check. A damaged download is reported as damaged,
    with the advice to download it again, rather than loading NaNs or leaking zipfile's
    errors. Messages call the file `name` (default: `path`), e.g. the file `path` is a copy of.

    Example:
    >>> params = read_npz("imagenet21k_Mixer-B_16.npz")
    >>> params["stem/kernel"].shape
    (16, 16, 3, 768)
    """
    path = os.fspath(path)
    name = path if name is None else name
    if os.path.isdir(path):
        raise CheckpointError(
            f"{path!r} is a directory, not an .npz file. Pass the path of the checkpoint file "
            "itself (e.g. .../imagenet21k/Mixer-B_16.npz)."
        )
    if not os.path.isfile(path):
        raise CheckpointError(
            f"Checkpoint file {path!r} does not exist. Download an official MLP-Mixer .npz "
            "(e.g. gs://mixer_models/imagenet21k/Mixer-B_16.npz) and pass its local path."
        )
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            starts_like_zip = file.read(4) == b"PK\x03\x04"
        if starts_like_zip:  # a zip whose directory, at the end of the file, is missing
            raise CheckpointError(
                f"{name!r} is corrupt: it starts like an .npz archive but its end is missing, "
                "so the download is incomplete or damaged.", _DOWNLOAD_AGAIN
            )
        raise CheckpointError(
            f"{name!r} is not an .npz archive (a zip of .npy arrays).",
            "Pass an official MLP-Mixer .npz checkpoint, not a .keras, .h5, .msgpack or TF "
            "checkpoint file.",
        )
    params = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                key = member.filename.removesuffix(".npy")
                params[key] = _read_array(archive, member, key, name)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise CheckpointError(
            f"{name!r} is corrupt ({_one_line(error)}): the download is damaged or incomplete.",
            _DOWNLOAD_AGAIN,
        ) from error
    return params


_DOWNLOAD_AGAIN = "Download it again (e.g. from gs://mixer_models/imagenet21k/Mixer-B_16.npz)."


def _one_line(error):
    """An exception as one line of text, for quoting inside a one-line message."""
    return " ".join(str(error).split()) or type(error).__name__


def _read_array(archive, member, key, name):
    """One member of an .npz: a finite float array, or a CheckpointError saying why not.

    The .npy header is read first, so a pickle is never run and a non-float array is
    refused without reading its data. zipfile checks a member's CRC only once the member
    is read to its end, so every member is read to its end before any other verdict: a
    flipped byte is reported as corruption, not as the dtype, shape or header it garbled.
    """
    with archive.open(member) as stream:
        dtype = _npy_dtype(stream)
        array = malformed = None
        if dtype is not None and np.issubdtype(dtype, np.floating):
            stream.seek(0)
            try:
                array = np.lib.format.read_array(stream, allow_pickle=False)
            except ValueError as error:
                malformed = error
        while stream.read(1 << 20):  # raises BadZipFile if the CRC fails
            pass
    if dtype is None:
        raise CheckpointError(
            f"{name!r} holds {member.filename!r}, which is not a .npy array: it is not an .npz "
            "checkpoint.",
            "Pass an official MLP-Mixer .npz checkpoint, not a .keras or other zip.",
        )
    if dtype.hasobject:
        raise CheckpointError(
            f"{name!r}: array {key!r} holds pickled Python objects, which are not loaded "
            "(allow_pickle=False, since unpickling can run arbitrary code).",
            "Official checkpoints hold plain float arrays; re-save it with numeric arrays only.",
        )
    if not np.issubdtype(dtype, np.floating):
        raise CheckpointError(
            f"{name!r}: array {key!r} has dtype {dtype}, not floating point.",
            "Official checkpoints hold float32 arrays; re-save it with float weights only.",
        )
    if malformed is not None:  # its CRC held: the file was written damaged
        raise CheckpointError(
            f"{name!r} is corrupt: array {key!r} cannot be read ({_one_line(malformed)}).",
            _DOWNLOAD_AGAIN,
        ) from malformed
    non_finite = array.size - np.count_nonzero(np.isfinite(array))
    if non_finite:
        raise CheckpointError(
            f"{name!r}: array {key!r} has {non_finite} non-finite values (NaN or inf) of "
            f"{array.size}: the file is damaged, as official checkpoints hold finite weights.",
            _DOWNLOAD_AGAIN,
        )
    return array


def _npy_dtype(stream):
    """The dtype in a .npy header, or None where the stream does not hold a valid one."""
    try:
        version = np.lib.format.read_magic(stream)
        # Format 3.0 differs from 2.0 only in its utf-8 encoding, which matters only for the
        # field names of structured dtypes: read as 2.0, a float header reads the same and a
        # structured one still shows a non-float dtype.
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)[2]
        return np.lib.format.read_array_header_2_0(stream)[2]
    except (ValueError, TypeError):  # a wrong magic string or a malformed header
        return None


