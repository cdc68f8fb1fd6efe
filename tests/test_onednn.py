"""training/onednn.py: the commands run TensorFlow on oneDNN's kernels on every x86 CPU."""

import os
import platform
import re
import sys

import pytest
from helpers import run_bounded

from training import onednn


def test_a_choice_the_user_made_is_kept(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    onednn.prefer_onednn()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    onednn.prefer_onednn()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # TensorFlow's default there
    onednn.prefer_onednn()
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ


# Each command, stopped by bad input once TensorFlow has loaded; then TensorFlow says which
# kernels it runs. TensorFlow reads the setting as it loads: a command that set it after
# any import of TensorFlow would run TensorFlow's default, Eigen's on an AVX2-only CPU.
COMMANDS = {
    "training.train": "['--set', 'epochs=abc']",
    "export.convert": "['{missing}', '--out', '{missing}-export']",
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.slow
def test_each_command_chooses_the_kernels_before_tensorflow_loads(command, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)  # as in a user's shell
    argv = COMMANDS[command].format(missing=tmp_path / "missing")
    code = (f"import {command} as command; code = command.main({argv}); "
            "from training.tensorflow_internals import onednn_enabled; "
            "print(f'exit={code},onednn={onednn_enabled()}', flush=True)")
    status, output = run_bounded([sys.executable, "-c", code], timeout=120)
    result = re.search(r"exit=(\d+),onednn=(True|False)", output)
    assert status == 0 and result and result[1] == "2", output[-2000:]
    if platform.machine().lower() in onednn.X86_MACHINES:
        assert result[2] == "True", output[-2000:]
    assert not (tmp_path / "missing-export").exists()
