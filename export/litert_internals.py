"""The one place export reaches into LiteRT's private API.

`Interpreter._get_ops_details()` is the only way ai-edge-litert's Python API lists a model's
ops, their tensors and, once the model is delegated, the DELEGATE nodes that stand for
XNNPACK's partitions. The public API has tensors (`get_tensor_details`) but no ops; the
flatbuffer schema would give the ops, but not what the delegate took. A change to this
method fails loudly (a KeyError or AttributeError), so another version is a warning.
"""

import importlib.metadata

from keras_mixer.upstream import check_version

# ai-edge-litert versions on which `ops_details` was checked (tests/test_export.py runs it).
CHECKED = ("2.3",)

check_version("ai-edge-litert", importlib.metadata.version("ai-edge-litert"), CHECKED,
              "export/litert_internals.py (Interpreter._get_ops_details)")


def ops_details(interpreter):
    """The ops of `interpreter`'s graph in execution order: dicts with `index`, `op_name`,
    `inputs` and `outputs` (tensor indices, -1 for an absent optional input)."""
    return interpreter._get_ops_details()
