"""A tiny digits run whose files may not grow past a size, as on a full disk.

    python tests/programs/fill_the_disk.py MAX_FILE_BYTES DATA_DIR RUN_DIR

RLIMIT_FSIZE makes every write past MAX_FILE_BYTES fail in the kernel (EFBIG), for h5py,
TensorFlow and Python alike, as ENOSPC does on a full disk; SIGXFSZ, which would kill the
process first, is ignored. MAX_FILE_BYTES 0: no limit (the disk has space again). Runs the
command line (`training.train.main`); exits with its code.
"""

import json
import resource
import signal
import sys

from helpers import TINY

from training import train

limit, data_dir, run_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(train.main([
    "--run-dir", run_dir, "--data-dir", data_dir, "--image-size", "8", "--epochs", "2",
    "--no-export", "--set", f"model={json.dumps(TINY)}", "--set", "jit_compile=false",
    "--set", "checkpoint_every_steps=5",
]))
