"""training/preemption.py and the step checkpoints: a run killed (SIGKILL) or stopped (SIGTERM)
mid-epoch, on one process, a TensorFlow cluster or JAX hosts, resumes with the same command to
the weights and per-epoch history of a run that was never interrupted (tests/helpers.py
`interrupt_mid_epoch_and_resume`). Each test runs real processes, bounded by a timeout.
"""

import signal

import pytest
from helpers import interrupt_mid_epoch_and_resume, jax_hosts, tf_cluster

# Real training processes, killed and rerun: each takes tens of seconds. One worker runs them
# one after another (tests/conftest.py): each runs up to six processes against a clock.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("preemption")]

JAX = {"KERAS_BACKEND": "jax"}
# JAX's runtime looks for SIGTERM once a second (kListenInterval in XLA's
# xla/tsl/distributed_runtime/preemption/preemption_notifier.cc): its hosts may run on for the
# calls of that second before they agree on a step.
JAX_SIGTERM_POLL_S = 1.0


# Each signal once, with one step and with several steps per call of the train function
# (the cluster's case below has 2): a kill mid-call, and a stop at the next step boundary.
@pytest.mark.parametrize("how, steps_per_execution", [(signal.SIGKILL, 3), (signal.SIGTERM, 1)],
                         ids=["SIGKILL-3", "SIGTERM-1"])
def test_interrupted_mid_epoch_resumes_to_the_same_weights_and_history(
    data_dir, tmp_path, steps_per_execution, how
):
    interrupt_mid_epoch_and_resume(data_dir, tmp_path, steps_per_execution, how)


def test_sigterm_to_one_worker_stops_the_cluster_at_one_step_and_resumes(data_dir, tmp_path):
    # Worker 1 gets the signal; worker 0, the chief, saves at the step they agree on.
    interrupt_mid_epoch_and_resume(data_dir, tmp_path, 2, signal.SIGTERM, tf_cluster)


# SIGTERM under JAX is the two hosts' case below.
def test_killed_mid_epoch_resumes_under_jax_to_the_same_weights(data_dir, tmp_path):
    interrupt_mid_epoch_and_resume(data_dir, tmp_path, 3, signal.SIGKILL, cluster=lambda: [JAX])


def test_sigterm_to_one_jax_host_stops_every_host_at_one_step_and_resumes(data_dir, tmp_path):
    # Host 1 gets the signal; JAX's preemption sync manager stops both at one step.
    interrupt_mid_epoch_and_resume(data_dir, tmp_path, 3, signal.SIGTERM, jax_hosts,
                                   notice_s=JAX_SIGTERM_POLL_S)
