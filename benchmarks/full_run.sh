#!/usr/bin/env bash
# The full measurements behind docs/benchmarks.md, in priority order (about 25 minutes on the
# 2-core reference machine; B/16 training last, as it is the first thing to cut).
# Run on a quiet machine: every JSON line records the 1-minute load average and how many
# pytest processes were running. Then: python -m benchmarks.report --write docs/benchmarks.md
set -euo pipefail
cd "$(dirname "$0")/.."
python -m benchmarks.flops
python -m benchmarks.tflite_latency --variants S/16 B/16          # converts into the cache first if needed
python -m benchmarks.patch_scaling --variant S/16 --repeats 3
python -m benchmarks.inference_throughput --variants S/32 S/16 B/16 --batch-sizes 1 32 --repeats 3
# A peer on the same runtime: the same graph built from tf_keras (Keras 2) layers.
python -m benchmarks.inference_throughput --variants S/16 --frameworks tf_keras --modes graph \
    --batch-sizes 1 32 --repeats 3
# Slow path (issue 5, item 4): GELU in bfloat16 vs float32, training and inference, S/16.
python -m benchmarks.train_throughput --variants S/16 --modes graph --precisions mixed_bfloat16 \
    --gelu-dtypes auto float32 --repeats 3
python -m benchmarks.inference_throughput --variants S/16 --modes graph --precisions mixed_bfloat16 \
    --gelu-dtypes float32 --batch-sizes 32 --repeats 3
python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train --gelu-dtype auto --repeats 2
python -m benchmarks.op_profile --variant S/16 --precision mixed_bfloat16 --step train --gelu-dtype float32 --repeats 2
python -m benchmarks.train_throughput --variants S/32 S/16 --repeats 3
python -m benchmarks.train_throughput --variants B/16 --repeats 2
