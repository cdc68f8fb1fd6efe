#!/usr/bin/env bash
# The full measurements behind docs/benchmarks.md, in priority order (about 75 minutes on the
# 2-core reference machine, 30 of them side by side with timm; B/16 training comes late, as it
# is the first thing to cut).
# Run on a quiet machine: every JSON line records the 1-minute load average and how many
# pytest processes were running. Then: python -m benchmarks.report --write docs/benchmarks.md
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "== $(date -u +%T) $*" >&2; "$@"; }
# LiteRT latency of every export format (converts into benchmarks/results/tflite first if needed).
step python -m benchmarks.tflite_latency --variants S/16 B/16
# Side by side with timm: ours and the peer (benchmarks/peer_timm.py, timm on PyTorch's
# CPU build in its own venv) alternate, two rounds in one window; the report pairs the lines of
# each --round. Batch 32 on the machine's cores against timm on 2 threads, then LiteRT at batch 1
# against timm at batch 1 on the same 1 and 2 threads, with LiteRT's repeats.
peer_venv=$(benchmarks/peer_env.sh)
peer() {
  step env PYTHONPATH="$peer_venv/torchvision-stub" \
    "$peer_venv/bin/python" -m benchmarks.peer_timm --variants S/16 B/16 "$@"
}
for round in 1 2; do
  step python -m benchmarks.train_throughput --variants S/16 B/16 --modes graph xla \
      --precisions float32 mixed_bfloat16 --batch-size 32 --round "$round"
  step python -m benchmarks.inference_throughput --variants S/16 B/16 --modes graph xla frozen \
      --precisions float32 mixed_bfloat16 --batch-sizes 32 --round "$round"
  peer --figures throughput --round "$round"
  step python -m benchmarks.tflite_latency --variants S/16 B/16 --formats fp32 dynamic_int8 int8 \
      --round "$round"
  peer --figures latency --repeats 10 --warmup 2 --round "$round"
done
# Where the LiteRT files' time goes, operator by operator (the files converted above).
step python -m benchmarks.tflite_op_profile --variants S/16 B/16
step python -m benchmarks.patch_scaling --variant S/16 --repeats 3
# Input pipeline: alone, and feeding fit, including RandAugment's before/after.
step python -m benchmarks.input_pipeline
# Image folders (training/image_folder.py): run() to the first step, and the indexing alone, on
# 20,000 small JPEGs and on 2,000 photo-size ones; then the same script against the code before
# it (dff2be2: run() lists the folder three times and checks files with PIL), back to back.
photos=(--width 500 --height 375 --train-images 1800 --test-images 200)
step python -m benchmarks.first_step
step python -m benchmarks.first_step "${photos[@]}"
before=$(mktemp -d)
git worktree add --detach "$before/code" dff2be2  # a checkout, so each line records its commit
cp benchmarks/first_step.py "$before/"
step env PYTHONPATH="$before/code" python "$before/first_step.py" --results-dir benchmarks/results
step env PYTHONPATH="$before/code" python "$before/first_step.py" --results-dir benchmarks/results \
    "${photos[@]}"
git worktree remove --force "$before/code" && rm -r "$before"
# Slow path 1: the GELU in bfloat16 (before the fix) vs float32 (the fix),
# back to back.
step python -m benchmarks.train_throughput --variants S/32 S/16 B/16 --modes graph \
    --precisions mixed_bfloat16 --gelu-dtypes compute float32 --repeats 5
step python -m benchmarks.inference_throughput --variants S/16 B/16 --modes graph \
    --precisions mixed_bfloat16 --gelu-dtypes compute float32 --batch-sizes 1 32 --repeats 5
step python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train \
    --gelu-dtype compute --repeats 2
step python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train \
    --gelu-dtype float32 --repeats 2
# Slow path 4: the MLP's Dense as Keras lowers it, then the GELU in float32 (before)
# vs keras_mixer's Dense, one oneDNN kernel with bias and GELU (as shipped), back to back.
step python -m benchmarks.train_throughput --variants S/16 --modes graph \
    --precisions float32 mixed_bfloat16 --gelu-dtypes float32 fused --batch-size 32 --repeats 3
step python -m benchmarks.inference_throughput --variants S/16 --modes graph xla \
    --precisions float32 mixed_bfloat16 --gelu-dtypes float32 fused --batch-sizes 1 32 --repeats 5
# Which oneDNN kernel runs each matmul of a bfloat16 training step and predict.
step python -m benchmarks.onednn_kernels --variant S/16 --precision mixed_bfloat16 --repeats 2
for gelu in float32 fused; do
  step python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step forward \
      --batch-size 32 --gelu-dtype "$gelu" --repeats 2
done
step python -m benchmarks.inference_throughput --variants S/32 S/16 B/16 --batch-sizes 1 32 \
    --repeats 3
step python -m benchmarks.inference_throughput --variants S/16 --modes xla \
    --precisions mixed_bfloat16 --gelu-dtypes compute --batch-sizes 1 32 --repeats 3
# Batch sweep (the paper reports each model's best batch): S/16, XLA float32.
step python -m benchmarks.inference_throughput --variants S/16 --modes xla --precisions float32 \
    --batch-sizes 8 64 --repeats 3
# A peer on the same runtime: the same graph built from tf_keras (Keras 2) layers.
step python -m benchmarks.inference_throughput --variants S/16 --frameworks tf_keras \
    --modes graph --batch-sizes 1 32 --repeats 3
step python -m benchmarks.train_throughput --variants S/32 S/16 --repeats 3
step python -m benchmarks.train_throughput --variants B/16 --repeats 2
step python -m benchmarks.train_throughput --variants S/32 B/16 --modes xla \
    --precisions mixed_bfloat16 --gelu-dtypes compute --repeats 2
# The two export formats that change only the weights' values (same graph as int8).
step python -m benchmarks.tflite_latency --variants S/16 B/16 --formats pruned_int8 clustered_int8
step python -m benchmarks.flops
