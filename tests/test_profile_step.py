"""benchmarks/profile_step.py: its `--smoke` run profiles the three models
and groups their ops, and `classify` names each backend's ops."""

import keras
import pytest

import profile_step

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a benchmark's smoke run: one backend is enough",
)


@pytest.mark.parametrize(
    "op, group",
    [
        # TensorFlow op events, JAX HLO op names, torch aten ops with scope.
        ("model/stage1_conv1/convolution:Conv2D", "backbone conv"),
        ("gradient_tape/m/head_1_bottleneck/conv_0/depthwise/"
         "DepthwiseConv2dNativeBackpropFilter:X", "head conv"),
        ("ynn_fusion.3 [jit(train_step)/jvp(head_2)/head_2_classifier/dot_general]",
         "head conv"),
        ("m/stage1_bn1/moments/SquaredDifference:SquaredDifference", "batch norm"),
        ("StatefulPartitionedCall/LogSoftmax:LogSoftmax", "loss terms"),
        ("StatefulPartitionedCall/sgd/AssignSubVariableOp_3:AssignSubVariableOp",
         "optimizer update"),
        ("StatefulPartitionedCall/compile_metrics/accuracy/Cast:Cast",
         "metrics/trackers"),
        ("aten::relu [model/stage1_out]", "other ops"),
    ],
)
def test_classify_groups_ops_of_every_backend(op, group):
    assert profile_step.classify(op) == group


def test_smoke_profiles_heads_and_loss_only_where_they_are(capsys):
    results = profile_step.main(["--smoke"])
    assert list(results) == ["plain", "heads, CE only", "SelfDistillModel"]
    assert results["plain"]["groups"]["head conv"] == 0
    assert results["SelfDistillModel"]["groups"]["head conv"] > 0
    assert results["SelfDistillModel"]["groups"]["loss terms"] > 0
    assert results["plain"]["groups"]["backbone conv"] > 0
    assert "| python/dispatch |" in capsys.readouterr().out
