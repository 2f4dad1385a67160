"""benchmarks/gpu_step.py, the GPU benchmark: its `--smoke` mode runs every
code path on a CPU, so the first run on a lent GPU cannot fail on a typo."""

import keras
import pytest

import gpu_step


def test_unknown_setting_names_the_value_and_the_choices():
    with pytest.raises(SystemExit, match=r"--settings: unknown .*'fp8'.*mixed_float16\+jit"):
        gpu_step.parse_arguments(["--settings", "float32,fp8"])


def test_settings_and_networks_are_comma_separated_names():
    args = gpu_step.parse_arguments(["--networks", "resnet18", "--settings",
                                     "float32+jit,mixed_float16"])
    assert (args.networks, args.settings) == (["resnet18"], ["float32+jit", "mixed_float16"])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the GPU target is TensorFlow; one backend is enough")
def test_smoke_times_every_arm_on_both_networks_with_jit_and_mixed_precision(capsys):
    rows = gpu_step.main(["--smoke"])
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert {(network, setting) for network, setting, *_ in cells} == {
        ("resnet18", "float32"), ("resnet18", "mixed_float16+jit"), ("resnet50v2", "float32")}
    assert [arm for _, _, arm, *_ in cells[:4]] == list(gpu_step.ARMS)
    # Each setting's plain row is its own reference.
    assert all(row[6] == "1.00x" for row in cells if row[2] == "plain")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert "| network | setting | model |" in capsys.readouterr().out


def test_step_overhead_spread_is_the_range_of_per_repeat_ratios():
    import step_overhead

    # Repeat 2 ran under load for both models: its ratio is still 1.1.
    assert step_overhead.ratio_spread([1.1, 2.2, 1.5], [1.0, 2.0, 1.0]) == pytest.approx((1.1, 1.5))


def test_step_overhead_counts_the_heads_activations_by_hand():
    import step_overhead

    # Width 16 on 32x32 images. Backbone outputs per sample: the stem and
    # 14 layer outputs of stage 1 at 32x32x16, 15 of stage 2 at 16x16x32
    # (with the shortcut), 15 of stage 3 at 8x8x64, then 64 pooled + 100.
    backbone = 16384 * 15 + 8192 * 15 + 4096 * 15 + 64 + 100
    # Head 1 (stage1_out, 32x32x16): depthwise 16x16x16, then convolution,
    # batch norm and activation at 16x16x64; depthwise 8x8x64, three 8x8x64.
    # Head 2 (stage2_out, 16x16x32): depthwise 8x8x32, three 8x8x64.
    heads = 4096 + 3 * 16384 + 4096 + 3 * 4096 + 2048 + 3 * 4096

    assert step_overhead.activation_share_of_heads(16) == pytest.approx(heads / backbone)
    # head_width="doubling": head 1's blocks are 32 then 64 wide (16x16x32
    # and 8x8x32 depthwise), head 2's 64 as before.
    doubling = 4096 + 3 * 8192 + 2048 + 3 * 4096 + 2048 + 3 * 4096
    assert step_overhead.activation_share_of_heads(16, "doubling") == pytest.approx(
        doubling / backbone)
