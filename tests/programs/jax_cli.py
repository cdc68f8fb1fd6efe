"""Runs `python -m training.train` in-process for each case, under KERAS_BACKEND=jax.

    python tests/programs/jax_cli.py CASES.json

CASES.json: a list of {"argv": [...], "env": {name: value}}. Prints one JSON line per case:
{"code": exit code, "stderr": what it printed on stderr}.
"""

import contextlib
import io
import json
import os
import sys

from training import train

with open(sys.argv[1]) as file:
    cases = json.load(file)
for case in cases:
    os.environ.update(case.get("env", {}))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = train.main(case["argv"])
    for name in case.get("env", {}):
        del os.environ[name]
    print(json.dumps({"code": code, "stderr": stderr.getvalue()}), flush=True)
