"""timm's MLP-Mixer (PyTorch on the CPU), measured the way our benchmarks measure keras-mixer.

    VENV=$(benchmarks/peer_env.sh)                 # timm and PyTorch's CPU build, no TensorFlow
    PYTHONPATH="$VENV/torchvision-stub" "$VENV/bin/python" -m benchmarks.peer_timm
    ... -m benchmarks.peer_timm --figures latency --variants S/16
    ... -m benchmarks.peer_timm --quick

keras-mixer's peer on the same CPU. It runs in its own environment (benchmarks/requirements-peer.txt) without
TensorFlow or Keras, and shares only benchmarks/common.py's standard-library parts (the command
line, timing, the JSON lines and the machine record). Models: `timm.create_model(NAME,
pretrained=False)` for `mixer_s16_224` and `mixer_b16_224` (random weights: speed does not depend
on them), 1000 classes, eager PyTorch (timm's own way to run; torch.compile is not measured).

Figures (FIGURES), each with `torch.set_num_threads`:
- "throughput": training and inference at batch 32, in float32 and in bfloat16 autocast
  (`torch.autocast("cpu", dtype=torch.bfloat16)`: bfloat16 matmuls over float32 weights and a
  float32 optimizer, as Keras's mixed_bfloat16), on 2 threads: ours run on the machine's 2 cores.
- "latency": inference at batch 1 in float32 and in dynamic-range int8
  (`torch.ao.quantization.quantize_dynamic` of every `nn.Linear`, int8 weights and activations
  quantized per call, as LiteRT's dynamic_int8), on 1 and 2 threads (LiteRT's num_threads).

Method of benchmarks/train_throughput.py and inference_throughput.py: a training step is Adam
(1e-4) on the cross-entropy of one synthetic batch held in memory; `warmup` untimed steps or
calls, then the median, min and max of `repeats` timed ones, as images/s. One JSON line per
figure, table "peer_timm", with torch's, timm's and torchvision's versions (the stub reads
"0.0.0-stub") in the machine record.
"""

import contextlib
import itertools
import warnings

from benchmarks import common

TIMM_MODELS = {"S/16": "mixer_s16_224", "B/16": "mixer_b16_224"}
# (what, precision, batch size) of each group; the threads come from the command line.
# "autocast_bfloat16" is the peer's mixed_bfloat16, "dynamic_int8" its LiteRT dynamic_int8.
PRECISIONS = ("float32", "autocast_bfloat16")
FIGURES = {
    "throughput": [
        (what, precision, 32) for what in ("training", "inference") for precision in PRECISIONS
    ],
    "latency": [("inference", precision, 1) for precision in ("float32", "dynamic_int8")],
}


def peer_versions():
    """What the peer's figures depend on, for the machine record."""
    import timm
    import torch
    import torchvision

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "quantized_engine": torch.backends.quantized.engine,
    }


def timm_mixer(variant, *, image_size, num_classes):
    """timm's Mixer for a variant of ours, or the --quick config (common.TINY) from its class."""
    import timm
    import torch
    from timm.models.mlp_mixer import MlpMixer

    torch.manual_seed(0)
    if variant != "tiny":
        return timm.create_model(
            TIMM_MODELS[variant], pretrained=False, num_classes=num_classes, img_size=image_size
        )
    tiny = common.TINY
    return MlpMixer(
        num_classes=num_classes,
        img_size=image_size,
        patch_size=tiny["patch_size"],
        num_blocks=tiny["num_blocks"],
        embed_dim=tiny["hidden_dim"],
        # timm sizes both MLPs relative to the hidden dimension.
        mlp_ratio=(
            tiny["tokens_mlp_dim"] / tiny["hidden_dim"],
            tiny["channels_mlp_dim"] / tiny["hidden_dim"],
        ),
    )


def autocast(precision):
    import torch

    if precision == "autocast_bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def dynamic_int8(model):
    """The model with every nn.Linear in dynamic-range int8 (the stem is a Conv2d: float32)."""
    import torch

    # torch.ao.quantization is deprecated in favour of torchao, which is not in this stack;
    # torch 2.13 still ships it and warns at each call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def training_step(model, images, labels, precision):
    """One Adam step on the batch: the function `common.measure` times."""
    import torch

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_function = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision):
            loss = loss_function(model(images), labels)
        loss.backward()
        optimizer.step()

    return step


def inference_call(model, images, precision):
    import torch

    model = dynamic_int8(model.eval()) if precision == "dynamic_int8" else model.eval()

    def call():
        with torch.inference_mode(), autocast(precision):
            model(images)

    return call


def measure_figure(model, what, precision, batch_size, threads, *, image_size, num_classes, args):
    """The time summary of one figure, on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    # The pixels our model sees after its rescaling to [-1, 1]; NCHW, PyTorch's layout.
    images = 2 * torch.rand(batch_size, 3, image_size, image_size, generator=generator) - 1
    if what == "training":
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
        run = training_step(model, images, labels, precision)
    else:
        run = inference_call(model, images, precision)
    return common.measure(run, repeats=args.repeats, warmup=args.warmup)


def main(argv=None):
    arguments = common.parser(__doc__.splitlines()[0])
    arguments.add_argument(
        "--variants", nargs="+", choices=list(TIMM_MODELS), default=list(TIMM_MODELS)
    )
    arguments.add_argument("--figures", nargs="+", choices=list(FIGURES), default=list(FIGURES))
    arguments.add_argument(
        "--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
        help="of the throughput figures (bfloat16 autocast crawls on a CPU without AVX-512)",
    )
    arguments.add_argument(
        "--threads", type=int, default=2, help="torch threads of the throughput figures"
    )
    arguments.add_argument(
        "--latency-threads", nargs="+", type=int, default=[1, 2], help="of the batch-1 figures"
    )
    arguments.add_argument("--image-size", type=int, default=224)
    args = arguments.parse_args(argv)
    import torch

    variants, image_size, num_classes = common.sizes(args)
    for variant in variants:
        model = timm_mixer(variant, image_size=image_size, num_classes=num_classes)
        parameters = sum(parameter.numel() for parameter in model.parameters())
        for group in args.figures:
            counts = [args.threads] if group == "throughput" else args.latency_threads
            for (what, precision, batch_size), threads in itertools.product(FIGURES[group], counts):
                if group == "throughput" and precision not in args.precisions:
                    continue
                seconds = measure_figure(
                    model, what, precision, batch_size, threads,
                    image_size=image_size, num_classes=num_classes, args=args,
                )
                common.emit(
                    "peer_timm",
                    {
                        "variant": variant,
                        "timm_model": TIMM_MODELS.get(variant, "MlpMixer"),
                        "what": what,
                        "mode": "eager",
                        "precision": precision,
                        "batch_size": batch_size,
                        "threads": torch.get_num_threads(),
                        "image_size": image_size,
                        "parameters": parameters,
                        "step" if what == "training" else "batch": seconds,
                        "images_per_s": common.rate(batch_size, seconds),
                        **(
                            {"latency_ms": 1e3 * seconds["median_s"]} if what == "inference" else {}
                        ),
                    },
                    args,
                    software=peer_versions,
                )


if __name__ == "__main__":
    main()
