"""benchmarks/headfree_step_cost.py times every head-free method: its
`--smoke` mode runs each one's `fit` with that method's inputs."""

import keras
import pytest

import headfree_step_cost


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="a benchmark's smoke run: one backend is enough")
def test_smoke_times_every_method_on_its_own_inputs(capsys):
    steps = headfree_step_cost.main(["--smoke"])
    assert list(steps) == ["plain", "label smoothing", "TeacherFreeLoss",
                           "ClassWiseSelfDistillation", "ProgressiveSelfDistillation",
                           "LastBatchSelfDistillation"]
    assert all(len(values) == 1 and values[0] > 0 for values in steps.values())
    assert "| plain |" in capsys.readouterr().out


def test_dlb_epoch_repeats_half_of_each_batch():
    import numpy as np

    images, labels = np.zeros((8, 32, 32, 3), "float32"), np.arange(8)
    x, y, batch_size = headfree_step_cost.fit_inputs("LastBatchSelfDistillation",
                                                     images, labels, batch_size=2)
    assert batch_size == 4
    batches = x["sample_index"].reshape(-1, 4)
    assert batches[1][:2].tolist() == batches[0][2:].tolist()
