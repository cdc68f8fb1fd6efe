"""The run directory under faults: two runs on one directory (training/lease.py), the partial
files of live writers (keras_mixer/partial_files.py) and a full disk (keras_mixer/storage.py),
in training and in export.

A full disk is met in the kernel where it matters most (the checkpoint, which h5py wrote:
RLIMIT_FSIZE fails its writes as a full disk does, tests/programs/fill_the_disk.py), and
elsewhere as the error TensorFlow's or Python's file layer raises on one.
"""

import datetime
import errno
import json
import os
import re
import subprocess
import sys
import time

import pytest
from helpers import IN_PROCESS, TINY, digits_config, program, run_bounded, start

from keras_mixer import file_system, partial_files, storage
from training import lease, loop, train
from training.errors import RunDirInUseError

CLI = [*IN_PROCESS, "--image-size", "8", "--epochs", "1", "--no-export", "--set", f"model={json.dumps(TINY)}",
       "--set", "jit_compile=false"]


def dead_pid():
    """The process id of a process that has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def holder_said(process):
    """What tests/programs/hold_run_dir.py said: "held" or "refused: <the one line>"."""
    return next((line.strip() for line in process.stdout if line.startswith(("held", "refused"))),
                "")


def a_lease(host, pid, heartbeat_age_s):
    beat = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
        seconds=heartbeat_age_s)
    beat = beat.isoformat(timespec="seconds")
    return {"host": host, "pid": pid, "since": beat, "heartbeat": beat, "token": "0" * 16}


# ---------------------------------------------------------------------------------------------
# Two runs on one directory.


def test_a_live_lease_refuses_and_a_dead_holders_lease_is_taken_over(tmp_path, caplog):
    path = tmp_path / "lease.json"
    # Another host's lease, its heartbeat fresh: its holder may be alive.
    path.write_text(json.dumps(a_lease("other-host", 1, 5)))
    holder = (r"in use by another run: pid 1 on host other-host, since "
              r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(heartbeat \d s ago\)")
    with pytest.raises(RunDirInUseError, match=holder):
        with lease.RunLease(str(tmp_path)):
            pass
    assert json.loads(path.read_text())["host"] == "other-host"
    dead = [
        (a_lease("other-host", 1, lease.STALE_AFTER_S + 60), "its last heartbeat is"),
        (a_lease(partial_files.host(), dead_pid(), 5), "its process no longer runs"),
    ]
    for stale, why in dead:
        path.write_text(json.dumps(stale))
        caplog.clear()
        with lease.RunLease(str(tmp_path)):
            held = json.loads(path.read_text())
            assert (held["host"], held["pid"]) == (partial_files.host(), os.getpid())
        taken = f"Taking over {tmp_path} from pid {stale['pid']} on host {stale['host']}"
        assert taken in caplog.text and why in caplog.text
        assert not path.exists()  # freed when the run ended


def test_the_holder_renews_its_heartbeat_and_stops_once_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.2)
    path = tmp_path / "lease.json"

    def heartbeat():
        return datetime.datetime.fromisoformat(json.loads(path.read_text())["heartbeat"])

    with lease.RunLease(str(tmp_path)) as held:
        first = heartbeat()
        time.sleep(2.5)
        assert heartbeat() > first
        # Another run found this one stalled and took the directory over.
        path.write_text(json.dumps(a_lease("other-host", 9, 0)))
        time.sleep(1)
        with pytest.raises(RunDirInUseError, match=r"was taken over by pid 9 on host other-host"):
            held.on_train_batch_end(0)
    assert json.loads(path.read_text())["host"] == "other-host"  # not this run's to remove


@pytest.mark.slow
def test_a_second_run_stops_at_once_naming_the_holder(data_dir, tmp_path, capsys, caplog):
    run_dir = tmp_path / "run"
    arguments = ["--run-dir", str(run_dir), "--data-dir", data_dir, *CLI]
    assert train.main(arguments) == 0
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    # Two holders started together: one holds the directory, the other is refused.
    holders = [start(program("hold_run_dir", run_dir)) for _ in range(2)]
    try:
        said = [holder_said(holder) for holder in holders]
        assert sorted(line.split(":")[0] for line in said) == ["held", "refused"], said
        holder = holders[said.index("held")]
        assert f"pid {holder.pid} on host {partial_files.host()}" in "".join(said)
        # The command line on the held directory: one line naming the holder; nothing changed
        # (history.csv keeps its one header).
        capsys.readouterr()
        assert train.main(arguments) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith(f"error: --run-dir {run_dir} is in "
                                                           f"use by another run: pid {holder.pid}")
        after = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
        assert {path: content for path, content in after.items()
                if path.name != "lease.json"} == before
        # The holder killed (-9): the next run takes the directory over at once, saying so.
        holder.kill()
        holder.wait()
        assert train.main(arguments) == 0
        assert f"from pid {holder.pid} on host {partial_files.host()}" in caplog.text
        assert (run_dir / "logs" / "history.csv").read_text().count("epoch,") == 1
    finally:
        for holder in holders:
            holder.kill()
            holder.communicate()


def test_a_write_removes_dead_writers_partials_and_leaves_live_ones(tmp_path):
    live = subprocess.Popen(["sleep", "60"])
    try:
        kept = {  # name: whether its writer may still be writing it
            f".partial-{partial_files.host()}-{live.pid}-aaaaaa.checkpoint.weights.h5": True,
            f".partial-{live.pid}-eeeeee.checkpoint.weights.h5": True,  # named by bb403f4
            f".partial-{partial_files.host()}-{dead_pid()}-bbbbbb.checkpoint.weights.h5": False,
            ".partial-other-host-7-cccccc.checkpoint.weights.h5": True,  # changed just now
            ".partial-other-host-7-dddddd.checkpoint.weights.h5": False,  # unchanged for long
        }
        for name in kept:
            (tmp_path / name).write_bytes(b"partial")
        long_ago = time.time() - partial_files.ABANDONED_AFTER_S - 60
        os.utime(tmp_path / ".partial-other-host-7-dddddd.checkpoint.weights.h5",
                 (long_ago, long_ago))
        storage.write_atomically(tmp_path / "checkpoint.weights.h5", b"new")
        assert {name: (tmp_path / name).exists() for name in kept} == kept
    finally:
        live.kill()
        live.wait()


# ---------------------------------------------------------------------------------------------
# A full disk.


def test_a_full_disk_keeps_the_previous_file_and_names_it(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous")
    message = rf"^cannot write '{re.escape(str(target))}': no space left on the device\. Free"
    with pytest.raises(storage.StorageError, match=message):
        with storage.staged_file(target) as partial:  # a library writing the partial file
            with open(partial, "wb") as file:
                file.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["model.keras"]


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    # The tiny run's checkpoint is ~150 KB; its other files before it are under 2 KB.
    code, output = run_bounded(program("fill_the_disk", 60_000, data_dir, run_dir))
    checkpoint = run_dir / "backup" / "checkpoint.weights.h5"
    assert code == 2, output[-3000:]  # bb403f4: h5py's tracebacks, then SIGSEGV
    assert "Traceback" not in output and output.count("error: cannot") == 1, output[-3000:]
    assert f"error: cannot write '{checkpoint}': file too large. Choose" in output
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2
    assert not list(run_dir.rglob(".partial-*")) and not (run_dir / "lease.json").exists()
    code, output = run_bounded(program("fill_the_disk", 0, data_dir, run_dir))  # space again
    assert code == 0 and "test_accuracy=" in output, output[-3000:]


@pytest.mark.slow
def test_an_export_that_cannot_finish_names_what_it_wrote_and_leaves_no_report(
    data_dir, tmp_path, monkeypatch
):
    from export import pipeline

    run_dir = loop.run(digits_config(data_dir, epochs=1, validate_every_epoch=False),
                       str(tmp_path / "run"), verbose=0)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"formats": {"int8": {}}}')  # an earlier export's
    open_file = file_system._LocalFiles.GFile

    def export_on_a_disk_full_at(name):  # as the file system fails on a full disk
        def full_at(path, mode="r"):
            if "w" in mode and path.endswith(name):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            return open_file(path, mode)

        monkeypatch.setattr(file_system._LocalFiles, "GFile", staticmethod(full_at))
        with pytest.raises(storage.StorageError) as error:
            pipeline.convert(run_dir, str(out), ["fp32", "fp16"], eval_samples=32)
        assert str(error.value).startswith(
            f"cannot write '{out / name}': no space left on the device.")
        return str(error.value)

    # Full at the first format: nothing replaced, the earlier export is as it was.
    message = export_on_a_disk_full_at("fp32.tflite")
    assert message.endswith(f"This export wrote nothing to {out}: what was there is as it was.")
    assert os.listdir(out) == ["report.json"]
    # Full at the chart: the formats it wrote, and no report (the earlier one's nor its own).
    message = export_on_a_disk_full_at("report.png")
    assert message.endswith(f"This export wrote fp32.tflite, fp16.tflite to {out}, and no report.")
    assert sorted(os.listdir(out)) == [
        "fp16.tflite", "fp32.tflite", "labels.txt", "preprocessing.json"]
