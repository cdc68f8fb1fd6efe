"""Per-operator times of a `.tflite` file on LiteRT's CPU path, from LiteRT's own profiler.

ai-edge-litert's Python API has no profiler: `Interpreter` takes none, and `CompiledModel`
takes a fixed set of options and hides its C handle. The wheel's `libLiteRt.so` exports the C
API that has one (litert/c/litert_profiler.h, `LiteRtCompiledModelGetProfiler`), switched on by
the runtime options' `enable_profiling`, so this module calls that C API through ctypes. With
a profiler attached, XNNPACK times each of its own operators and reports them as events named
by XNNPACK ("Fully Connected (NC, QD8, F32, QC8W) GEMM"); an op XNNPACK does not take is
reported under its TFLite name ("RSQRT"). The ctypes declarations mirror the C headers of the
version in `CHECKED`, and a struct read with another layout is garbage, so another version is
refused (keras_mixer.upstream.check_version).

The options are the TOML strings that LiteRT's own option builders write (the builders
themselves are not exported): "xnnpack" for the thread count, "runtime_options_string" for the
profiler. LiteRT takes ownership of each string and frees it with libc's `free`.
"""

import ctypes
import functools
import importlib.metadata
import importlib.util
import os

from benchmarks import common
from keras_mixer.upstream import check_version

# ai-edge-litert versions whose C headers the declarations below were checked against.
CHECKED = ("2.3",)

CPU = 1  # kLiteRtHwAcceleratorCpu
LOCK_WRITE = 1  # kLiteRtTensorBufferLockModeWrite
# LiteRtProfiledEventType: an op the interpreter ran, and an op a delegate timed itself.
OPERATOR_EVENT, DELEGATE_OPERATOR_EVENT = 2, 8
# The profiler's ring buffer (events); older events are dropped once it is full.
MAX_EVENTS = 512 * 1024
# LiteRtRankedTensorType is only passed through: a buffer larger than its 72 bytes will do.
RANKED_TENSOR_TYPE = ctypes.c_uint8 * 256

_pointer = ctypes.c_void_p


class _MemoryUsage(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("total", "in_use", "private_footprint")]


class _Event(ctypes.Structure):  # ProfiledEventData, litert/c/litert_profiler_event.h
    _fields_ = [
        ("tag", ctypes.c_char_p),
        ("event_type", ctypes.c_int),
        ("start_timestamp_us", ctypes.c_uint64),
        ("elapsed_time_us", ctypes.c_uint64),
        ("begin_memory", _MemoryUsage),
        ("end_memory", _MemoryUsage),
        ("event_metadata1", ctypes.c_uint64),
        ("event_metadata2", ctypes.c_uint64),
        ("event_source", ctypes.c_int),
    ]


def _out(kind=_pointer):
    return ctypes.POINTER(kind)


# name: argument types; every one returns a LiteRtStatus (0 is OK) unless listed in _VOID.
_SIGNATURES = {
    "LiteRtCreateEnvironment": [ctypes.c_int, _pointer, _out()],
    "LiteRtCreateModelFromFile": [_pointer, ctypes.c_char_p, _out()],
    "LiteRtCreateOptions": [_out()],
    "LiteRtSetOptionsHardwareAccelerators": [_pointer, ctypes.c_int],
    "LiteRtCreateOpaqueOptions": [ctypes.c_char_p, _pointer, _pointer, _out()],
    "LiteRtAddOpaqueOptions": [_pointer, _pointer],
    "LiteRtCreateCompiledModel": [_pointer, _pointer, _pointer, _out()],
    "LiteRtCompiledModelGetProfiler": [_pointer, _out()],
    "LiteRtGetModelSignature": [_pointer, ctypes.c_size_t, _out()],
    "LiteRtGetNumSignatureInputs": [_pointer, _out(ctypes.c_size_t)],
    "LiteRtGetNumSignatureOutputs": [_pointer, _out(ctypes.c_size_t)],
    "LiteRtGetSignatureInputTensorByIndex": [_pointer, ctypes.c_size_t, _out()],
    "LiteRtGetSignatureOutputTensorByIndex": [_pointer, ctypes.c_size_t, _out()],
    "LiteRtGetRankedTensorType": [_pointer, _pointer],
    "LiteRtGetCompiledModelInputBufferRequirements": [
        _pointer, ctypes.c_size_t, ctypes.c_size_t, _out()],
    "LiteRtGetCompiledModelOutputBufferRequirements": [
        _pointer, ctypes.c_size_t, ctypes.c_size_t, _out()],
    "LiteRtCreateManagedTensorBufferFromRequirements": [_pointer, _pointer, _pointer, _out()],
    "LiteRtGetTensorBufferSize": [_pointer, _out(ctypes.c_size_t)],
    "LiteRtLockTensorBuffer": [_pointer, _out(), ctypes.c_int],
    "LiteRtUnlockTensorBuffer": [_pointer],
    "LiteRtRunCompiledModel": [
        _pointer, ctypes.c_size_t, ctypes.c_size_t, _out(), ctypes.c_size_t, _out()],
    "LiteRtStartProfiler": [_pointer],
    "LiteRtStopProfiler": [_pointer],
    "LiteRtGetNumProfilerEvents": [_pointer, _out(ctypes.c_int)],
    "LiteRtGetProfilerEvents": [_pointer, ctypes.c_int, _out(_Event)],
    "LiteRtDestroyTensorBuffer": [_pointer],
    "LiteRtDestroyCompiledModel": [_pointer],
    "LiteRtDestroyOptions": [_pointer],
    "LiteRtDestroyModel": [_pointer],
    "LiteRtDestroyEnvironment": [_pointer],
}
_VOID = {name for name in _SIGNATURES if name.startswith("LiteRtDestroy")}


@functools.cache
def _library():
    check_version("ai-edge-litert", importlib.metadata.version("ai-edge-litert"), CHECKED,
                  "benchmarks/litert_profiler.py (LiteRT's C API through ctypes)",
                  wrong_result_possible=True)
    package = os.path.dirname(importlib.util.find_spec("ai_edge_litert").origin)
    library = ctypes.CDLL(os.path.join(package, "libLiteRt.so"))
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = None if name in _VOID else ctypes.c_int
    libc = ctypes.CDLL(None)
    libc.strdup.restype, libc.strdup.argtypes = _pointer, [ctypes.c_char_p]
    return library, libc


def _call(name, *arguments):
    status = getattr(_library()[0], name)(*arguments)
    if status:
        raise RuntimeError(f"LiteRT's {name} failed with LiteRtStatus {status}")


def _options(threads):
    """CPU options with `threads` XNNPACK threads and the profiler on."""
    libc = _library()[1]
    options = _pointer()
    _call("LiteRtCreateOptions", ctypes.byref(options))
    _call("LiteRtSetOptionsHardwareAccelerators", options, CPU)
    free = ctypes.cast(libc.free, _pointer)
    for identifier, toml in (("xnnpack", f"num_threads = {threads}\n"),
                             ("runtime_options_string", "enable_profiling = true\n")):
        opaque = _pointer()
        _call("LiteRtCreateOpaqueOptions", identifier.encode(), libc.strdup(toml.encode()), free,
              ctypes.byref(opaque))
        _call("LiteRtAddOpaqueOptions", options, opaque)  # options own it from here
    return options


def _buffers(environment, compiled, signature, count, tensor_call, requirements_call):
    buffers = (_pointer * count)()
    for index in range(count):
        tensor, requirements, buffer = _pointer(), _pointer(), _pointer()
        tensor_type = RANKED_TENSOR_TYPE()
        _call(tensor_call, signature, index, ctypes.byref(tensor))
        _call("LiteRtGetRankedTensorType", tensor, ctypes.byref(tensor_type))
        _call(requirements_call, compiled, 0, index, ctypes.byref(requirements))
        _call("LiteRtCreateManagedTensorBufferFromRequirements", environment,
              ctypes.byref(tensor_type), requirements, ctypes.byref(buffer))
        buffers[index] = buffer.value
    return buffers


def _write(buffer, array):
    size, host = ctypes.c_size_t(), _pointer()
    _call("LiteRtGetTensorBufferSize", buffer, ctypes.byref(size))
    if size.value != array.nbytes:
        raise ValueError(f"an input of {array.nbytes} bytes for a buffer of {size.value}")
    _call("LiteRtLockTensorBuffer", buffer, ctypes.byref(host), LOCK_WRITE)
    ctypes.memmove(host, array.ctypes.data, array.nbytes)
    _call("LiteRtUnlockTensorBuffer", buffer)


def profile(path, inputs, *, threads, runs, warmup):
    """Runs the `.tflite` at `path` (its first signature) on `inputs` (arrays, one per input,
    as the input tensors hold them) `warmup` times, then `runs` times timed by the wall clock
    with the profiler stopped, then `runs` times profiled.

    Returns `(operators, wall)`: one dict per operator event of the profiled runs, in the
    order they ran, with `name` (XNNPACK's operator name, or the TFLite op's), `delegated`
    (timed by XNNPACK) and `us` (whole microseconds, rounded down by the profiler), and the
    unprofiled runs' `common.measure` summary.
    """
    environment, model, compiled, profiler = _pointer(), _pointer(), _pointer(), _pointer()
    signature, counts = _pointer(), (ctypes.c_size_t(), ctypes.c_size_t())
    options, buffers = None, []
    _call("LiteRtCreateEnvironment", 0, None, ctypes.byref(environment))
    try:
        _call("LiteRtCreateModelFromFile", environment, os.fspath(path).encode(),
              ctypes.byref(model))
        options = _options(threads)
        _call("LiteRtCreateCompiledModel", environment, model, options, ctypes.byref(compiled))
        _call("LiteRtCompiledModelGetProfiler", compiled, ctypes.byref(profiler))
        if not profiler:  # LiteRT only logs an option it could not parse
            raise RuntimeError("LiteRT attached no profiler: runtime options not understood")
        _call("LiteRtGetModelSignature", model, 0, ctypes.byref(signature))
        _call("LiteRtGetNumSignatureInputs", signature, ctypes.byref(counts[0]))
        _call("LiteRtGetNumSignatureOutputs", signature, ctypes.byref(counts[1]))
        if counts[0].value != len(inputs):
            raise ValueError(f"{path} has {counts[0].value} inputs, {len(inputs)} given")
        ins = _buffers(environment, compiled, signature, counts[0].value,
                       "LiteRtGetSignatureInputTensorByIndex",
                       "LiteRtGetCompiledModelInputBufferRequirements")
        buffers.extend(ins)  # destroyed below even if the outputs' buffers fail
        outs = _buffers(environment, compiled, signature, counts[1].value,
                        "LiteRtGetSignatureOutputTensorByIndex",
                        "LiteRtGetCompiledModelOutputBufferRequirements")
        buffers.extend(outs)
        for buffer, array in zip(ins, inputs):
            _write(buffer, array)

        def run():
            _call("LiteRtRunCompiledModel", compiled, 0, len(ins), ins, len(outs), outs)

        wall = common.measure(run, repeats=runs, warmup=warmup)
        _call("LiteRtStartProfiler", profiler)  # starts from an empty buffer
        for _ in range(runs):
            run()
        _call("LiteRtStopProfiler", profiler)
        return _operator_events(profiler), wall
    finally:
        for buffer in buffers:
            _library()[0].LiteRtDestroyTensorBuffer(buffer)
        for name, handle in (("LiteRtDestroyCompiledModel", compiled),  # owns the profiler
                             ("LiteRtDestroyOptions", options), ("LiteRtDestroyModel", model),
                             ("LiteRtDestroyEnvironment", environment)):
            if handle:
                getattr(_library()[0], name)(handle)


def _operator_events(profiler):
    count = ctypes.c_int()
    _call("LiteRtGetNumProfilerEvents", profiler, ctypes.byref(count))
    if count.value >= MAX_EVENTS:
        raise RuntimeError(f"the profiler's {MAX_EVENTS} events overflowed: profile fewer runs")
    events = (_Event * max(count.value, 1))()
    _call("LiteRtGetProfilerEvents", profiler, count.value, events)
    # The other event types are LiteRT's own spans (whose times include the profiler's
    # reading of /proc/self/status) and telemetry, whose elapsed field holds a status.
    return [
        {"name": event.tag.decode(), "delegated": event.event_type == DELEGATE_OPERATOR_EVENT,
         "us": event.elapsed_time_us}
        for event in events[:count.value]
        if event.event_type in (OPERATOR_EVENT, DELEGATE_OPERATOR_EVENT)
    ]
