"""Holds a run directory's lease (training/lease.py) as a training run would, until killed.

    python tests/programs/hold_run_dir.py RUN_DIR

Prints "held" once it holds the lease, or the one-line refusal and exits 2.
"""

import sys
import time

from training.errors import RunDirInUseError
from training.lease import RunLease

try:
    with RunLease(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
except RunDirInUseError as error:
    print(f"refused: {error}", flush=True)
    sys.exit(2)
