"""oneDNN's kernels for TensorFlow on every x86 CPU, chosen before TensorFlow loads.

TensorFlow's x86 build runs oneDNN's kernels by default only on a CPU with AVX-512 VNNI or
bfloat16, AVX-VNNI or AMX; on the others (AMD Zen 2 and 3, Intel Skylake and older, all of
which cloud VMs still rent) it runs Eigen's, and on the one measured, an AMD Zen 3, oneDNN's
are the faster ones for the Mixer: they train S/16 faster in graph mode, in float32 and in
mixed_bfloat16, run the README's digits training in three quarters of the time, and infer at
about the same speed (docs/benchmarks.md, "oneDNN on an AVX2-only CPU"). TensorFlow reads
`TF_ENABLE_ONEDNN_OPTS` once, as it loads, so the commands (training, export, the
benchmarks) and the tests set it first; a value the user set is kept (`0`: Eigen's). A
program that imports TensorFlow itself sets the variable itself, before that import.
Standard library only, so that it can run before TensorFlow is imported.
"""

import os
import platform

# oneDNN's x86 kernels; on other machines (Arm) TensorFlow's default stands.
X86_MACHINES = ("x86_64", "amd64")


def prefer_onednn():
    """Asks TensorFlow for oneDNN's kernels on this x86 CPU, unless the user chose (idempotent)."""
    if platform.machine().lower() in X86_MACHINES:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
