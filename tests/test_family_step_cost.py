"""benchmarks/family_step_cost.py: its `--smoke` run times every small arm
with that model's own inputs (cached logits for the Distiller) and measures
memory."""

import keras
import pytest

import family_step_cost


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="a benchmark's smoke run: one backend is enough")
def test_smoke_times_every_arm_and_measures_memory(capsys):
    timings, memories = family_step_cost.main(["--smoke"])
    steps = timings[0]["step"]
    assert list(steps) == ["plain", "Distiller (cached)", "MutualLearning K=2",
                           "EMATeacher"]
    assert all(len(values) == 1 and values[0] > 0 for values in steps.values())
    (memory,) = memories["tensorflow"]
    assert memory["arm"] == "plain" and memory["growth_mib"] >= 0
    output = capsys.readouterr().out
    assert "| tensorflow | MutualLearning K=2 |" in output and "2 x plain" in output
