"""One task of the TF_CONFIG cluster in the environment: `get_strategy` as the train CLI calls it.

    python tests/programs/cluster_task.py CONNECT_TIMEOUT_S

Prints "replicas N" or "StrategyError SECONDS MESSAGE" (SECONDS spent in get_strategy), then
exits as the CLI does on that error: code 2 through sys.exit.
"""

import sys
import time

from training import strategy

start = time.monotonic()
try:
    distribution = strategy.get_strategy(connect_timeout_s=float(sys.argv[1]))
except strategy.StrategyError as error:
    print("StrategyError", round(time.monotonic() - start), error, flush=True)
    sys.exit(2)
print("replicas", distribution.num_replicas_in_sync, flush=True)
