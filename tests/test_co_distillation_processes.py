"""Co-distillation across processes: 2 and 3 groups, each its own Python
process running plain `fit` (tests/co_distillation_worker.py), exchanging
weights through one directory with `CheckpointExchange`; one group is
killed (SIGKILL) mid-run and restarted, resumes from its own backup, while
the others keep going and report it missing.

Backend-independent (files and processes), so it runs once, in the
TensorFlow pass; the workers use JAX, the backend that starts fastest.
Every worker start costs about 5 s of CPU (imports), so CI runs the one
test that covers both sizes (3 groups, then 2 after the kill, then the
restart); the 2-group run on its own is
`KSD_ALL_PROCESS_TESTS=1 pytest tests/test_co_distillation_processes.py`.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
from backend_utils import tensorflow_pass_only

WORKER = os.path.join(os.path.dirname(__file__), "co_distillation_worker.py")
TIMEOUT = 120

pytestmark = tensorflow_pass_only("processes exchanging files")


def start(directory, group, num_groups, steps, kill_at=None, lockstep=()):
    environment = dict(
        os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=false",
    )
    arguments = [str(directory), str(group), str(num_groups), str(steps)]
    if kill_at is not None:
        arguments += ["--kill-at", str(kill_at)]
    if lockstep:
        arguments += ["--lockstep", ",".join(map(str, lockstep))]
    return subprocess.Popen(
        [sys.executable, WORKER, *arguments],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def finish(process):
    """`(returncode, result or None, stderr)`; kills a process that hangs."""
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    result = None
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    return process.returncode, result, stderr


def run_all(processes):
    try:
        outcomes = [finish(process) for process in processes]
        for returncode, result, _ in outcomes:  # Shown with `pytest -s`.
            print(f"exit {returncode}: {json.dumps(result)}")
        return outcomes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def loaded(result, group):
    return [record["loaded"][str(group)] for record in result["exchanges"]]


def check_lockstep_exchanges(result, other, steps):
    # At step s the other group's newest complete checkpoint is of step s
    # (it got there first) or s - 5 (lockstep keeps them one apart).
    for step, seen in zip(steps, loaded(result, other)[1:]):
        assert seen in (step - 5, step) or (step == 5 and seen is None), (
            result["exchanges"]
        )


@pytest.mark.skipif(
    not os.environ.get("KSD_ALL_PROCESS_TESTS"),
    reason="covered by the 3-group test; set KSD_ALL_PROCESS_TESTS=1",
)
def test_two_groups_exchange_every_refresh_steps(tmp_path):
    outcomes = run_all([start(tmp_path, g, 2, 20, lockstep=(0, 1)) for g in (0, 1)])

    for returncode, result, stderr in outcomes:
        assert returncode == 0 and result is not None, stderr[-3000:]
    for (_, result, _), other in zip(outcomes, (1, 0)):
        # Exchanges at train begin and at steps 5, 10, 15, 20.
        assert [r["step"] for r in result["exchanges"]] == [0, 5, 10, 15, 20]
        check_lockstep_exchanges(result, other, [5, 10, 15, 20])
        assert result["distillation_loss"][-1] > 0.0
        assert result["missing_peers"][-1] == 0
    exchange = tmp_path / "exchange"
    assert not [name for name in os.listdir(exchange) if name.startswith(".")]


def test_three_groups_survive_a_killed_and_restarted_group(tmp_path):
    processes = [start(tmp_path, 0, 3, 30, lockstep=(0, 1)),
                 start(tmp_path, 1, 3, 30, lockstep=(0, 1)),
                 start(tmp_path, 2, 3, 30, kill_at=10)]
    outcomes = run_all(processes)

    killed_code, killed_result, _ = outcomes[2]
    assert killed_code == -signal.SIGKILL and killed_result is None
    for (returncode, result, stderr), other in zip(outcomes[:2], (1, 0)):
        # The two others exchanged with each other every refresh_steps steps
        # and kept going to the end; at their end, group 2's newest
        # checkpoint (step 10) is 20 steps old: reported missing.
        assert returncode == 0 and result is not None, stderr[-3000:]
        check_lockstep_exchanges(result, other, [5, 10, 15, 20, 25, 30])
        assert result["final_step"] == 30
        assert result["missing_peers"][-1] == 1
        assert max(s for s in loaded(result, 2) if s is not None) <= 10
        assert "group 2 last wrote a checkpoint at its step" in stderr

    [(returncode, result, stderr)] = run_all([start(tmp_path, 2, 3, 30)])

    assert returncode == 0 and result is not None, stderr[-3000:]
    # Resumed from its own backup at step 10, not from scratch.
    assert result["started_at_step"] == 10
    assert result["final_step"] == 30
    # Its first exchange after the restart loads the others' final
    # checkpoints (step 30).
    assert result["exchanges"][0]["loaded"] == {"0": 30, "1": 30}
    assert result["missing_peers"][-1] == 0
