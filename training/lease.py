"""One run at a time in a run directory: `RUN/lease.json` names the run that holds it.

A second run on a held directory, on this machine or another, stops before it reads the data
or writes anything, with one line naming the holder (host, process id, since when). `gs://`
has no file locks, so the lease is a file written atomically through keras_mixer.storage:

    {"host": ..., "pid": ..., "since": ISO time, "heartbeat": ISO time, "token": random}

The holder rewrites `heartbeat` every HEARTBEAT_S seconds from a thread (a long compilation
or evaluation keeps it fresh) and removes the file when the run ends, however it ends. A
holder that died without removing it (kill -9, a lost VM) leaves a lease that the next run
takes over, with a line that says so: at once when the holder's host is this machine and its
process is gone, otherwise once its heartbeat is STALE_AFTER_S old (the hosts' clocks must
agree to well within that, as NTP keeps them).

Two runs that start together both find no lease: each writes its own, waits SETTLE_S and
reads the file back; the one whose token is there holds the directory, the other stops as
for any held lease. The holder reads the file at every heartbeat too: a run that finds
another's token there (it was stalled past STALE_AFTER_S and taken over) stops at its next
step, with one line that says so.
"""

import datetime
import logging
import os
import secrets
import threading
import time

import keras

from keras_mixer import storage
from keras_mixer.partial_files import host, pid_alive
from training import run_dir as run_dir_lib
from training.errors import RunDirInUseError

log = logging.getLogger(__name__)

HEARTBEAT_S = 30
# Ten missed heartbeats: a holder this silent is dead (or stalled; then it stops itself).
STALE_AFTER_S = 300
# Longer than a lease write takes on gs:// (~0.1 s), so that of two runs that both found no
# lease, the first to write reads the second's lease back.
SETTLE_S = 1.0


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment):
    return moment.isoformat(timespec="seconds")


def read(run_dir):
    """The lease of `run_dir` as a dict, or None when there is none (or it is unreadable)."""
    path = run_dir_lib.path(run_dir, run_dir_lib.LEASE)
    if not storage.exists(path):
        return None
    try:
        lease = storage.read_json(path)
        for key in ("since", "heartbeat"):
            datetime.datetime.fromisoformat(lease[key])
        return {**lease, "host": str(lease["host"]), "pid": int(lease["pid"]),
                "token": str(lease["token"])}
    except (ValueError, KeyError, TypeError):  # not a lease, or edited by hand: nobody's
        return None


def _holder(lease):
    since = datetime.datetime.fromisoformat(lease["since"])
    return f"pid {lease['pid']} on host {lease['host']}, since {since:%Y-%m-%d %H:%M:%S} UTC"


def _heartbeat_age_s(lease):
    return (_now() - datetime.datetime.fromisoformat(lease["heartbeat"])).total_seconds()


def _dead_because(lease):
    """Why the lease's holder is known to be dead, or None while it may be alive."""
    if lease["host"] == host():
        if lease["pid"] == os.getpid():
            return "it was this process's own (an earlier run in it ended without freeing it)"
        if not pid_alive(lease["pid"]):
            return "its process no longer runs"
    age = _heartbeat_age_s(lease)
    return f"its last heartbeat is {age:.0f} s old" if age > STALE_AFTER_S else None


def _in_use(run_dir, lease):
    age = _heartbeat_age_s(lease)
    return RunDirInUseError(
        f"--run-dir {run_dir} is in use by another run: {_holder(lease)} (heartbeat {age:.0f} s "
        f"ago). Wait for it to end or stop it, or choose another --run-dir; a run that died "
        f"frees it after {STALE_AFTER_S} s without a heartbeat (at once on its own host)."
    )


def check(run_dir):
    """Raises RunDirInUseError when a live run holds `run_dir`; returns the lease a dead
    holder left (to take over), or None when there is none."""
    lease = read(run_dir)
    if lease is not None and _dead_because(lease) is None:
        raise _in_use(run_dir, lease)
    return lease


class RunLease(keras.callbacks.Callback):
    """Holds `run_dir` while the `with` block runs (see the module docstring); as a `fit`
    callback, stops the run at its next step if another run took the lease over."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir, self.path = run_dir, run_dir_lib.path(run_dir, run_dir_lib.LEASE)
        self.lease, self.lost, self.created = None, None, False
        self._stop, self._thread = threading.Event(), None

    def __enter__(self):
        dead = check(self.run_dir)
        self.created = not storage.exists(self.run_dir)
        try:
            self._take(dead)
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._beat, name="run-lease", daemon=True)
        self._thread.start()
        return self

    def _take(self, dead):
        storage.check_writable(self.run_dir, "--run-dir")
        if dead is not None:
            log.warning("Taking over %s from %s: %s.", self.run_dir, _holder(dead),
                        _dead_because(dead))
        now = _iso(_now())
        self.lease = {"host": host(), "pid": os.getpid(), "since": now,
                      "heartbeat": now, "token": secrets.token_hex(8)}
        storage.write_json(self.path, self.lease)
        time.sleep(SETTLE_S)
        holder = read(self.run_dir)
        if holder is None:  # the run that wrote over this one's lease has ended already
            storage.write_json(self.path, self.lease)
        elif holder["token"] != self.lease["token"]:
            raise _in_use(self.run_dir, holder)

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_S)  # a heartbeat stuck on the network: go on
        self._release()

    def _beat(self):
        failed = False
        while not self._stop.wait(HEARTBEAT_S):
            try:
                holder = read(self.run_dir)
                if holder is not None and holder["token"] != self.lease["token"]:
                    self.lost = holder
                    return
                self.lease["heartbeat"] = _iso(_now())
                storage.write_json(self.path, self.lease)
                failed = False
            except Exception as error:  # a full disk, a network error: the next beat retries
                if not failed:
                    log.warning("Could not renew the lease %s: %s", self.path, error)
                failed = True

    def _release(self):
        """Removes the lease if it is still this run's, and the run directory if this run
        made it and left nothing else in it."""
        try:
            holder = read(self.run_dir)
            if self.lease and holder is not None and holder["token"] == self.lease["token"]:
                storage.remove(self.path)
            if self.created:
                storage.remove_empty_dir(self.run_dir)
        except Exception as error:  # must not hide the run's own error; the lease times out
            log.warning("Could not remove the lease %s: %s", self.path, error)

    def on_train_batch_end(self, batch, logs=None):
        if self.lost is not None:
            raise RunDirInUseError(
                f"--run-dir {self.run_dir} was taken over by {_holder(self.lost)}, after this "
                f"run sent no heartbeat for {STALE_AFTER_S} s: this run stops. Its checkpoint "
                "is in the directory; the other run resumes from it."
            )
