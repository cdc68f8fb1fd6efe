"""A TPU at a gRPC address where nothing answers: prints "StrategyError SECONDS MESSAGE"."""

import time

from training import strategy

start = time.monotonic()
try:
    strategy.tpu_strategy("grpc://127.0.0.1:9", timeout_s=10)
except strategy.StrategyError as error:
    print("StrategyError", round(time.monotonic() - start), error)
else:
    print("no error")
