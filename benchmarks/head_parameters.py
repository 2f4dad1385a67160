"""How big is each head block, next to the stage it is attached to?

Builds the Fashion-MNIST demo CNN (`examples/fashion_mnist_demo.py`, width
16: stages of 16, 32, 64 channels at 28x28, 14x14, 7x7) with heads on
`stage1_pool` and `stage2_pool`, and prints, per head, the parameter count
of the backbone stage beneath the tap and of the head (bottleneck and
classifier) built four ways:

- `single`: `AuxiliaryHead`'s default block, with the width and number of
  downsampling steps `SelfDistillModel.from_backbone` picks (the deepest
  feature width, 64, at every step);
- `double`: the authors' block (two separable convolutions per step), same
  width and steps;
- `double + attention`: and the authors' sigmoid gate;
- `double + attention, width=None`: channels doubling at each step, the
  official code's schedule (a projection then maps the features to the
  deepest width in `SelfDistillModel`; not counted).

Parameter counts include batch norm's moving statistics (Keras's
`count_params`). No training, a few seconds:

    python benchmarks/head_parameters.py
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "examples"))

from fashion_mnist_demo import build_cnn  # noqa: E402

from keras_selfdistill import AuxiliaryHead  # noqa: E402
from keras_selfdistill import SelfDistillModel  # noqa: E402

TAPS = ["stage1_pool", "stage2_pool"]
#: column -> AuxiliaryHead arguments changed from from_backbone's head.
VARIANTS = {
    "single": {},
    "double": {"block": "double"},
    "double + attention": {"block": "double", "attention": True},
    "double + attention, width=None": {
        "block": "double", "attention": True, "width": None,
    },
}


def stage_parameters(backbone, tap):
    """Parameters of the backbone's layers named `stageN_*` for `tap`."""
    stage = tap.split("_")[0] + "_"
    return sum(
        layer.count_params()
        for layer in backbone.layers
        if layer.name.startswith(stage)
    )


def main():
    backbone = build_cnn(16)
    heads = SelfDistillModel.from_backbone(backbone, taps=TAPS).export_heads()
    header = ["head", "tap shape", "stage"] + list(VARIANTS)
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for index, tap in enumerate(TAPS):
        head = heads.get_layer(f"head_{index + 1}")
        tap_shape = tuple(backbone.get_layer(tap).output.shape)
        counts = []
        for changes in VARIANTS.values():
            config = {**head.get_config(), **changes}
            variant = AuxiliaryHead.from_config(config)
            variant.build(tap_shape)
            counts.append(f"{variant.count_params():,}")
        print(
            f"| {head.name} (num_downsampling={head.num_downsampling}) "
            f"| {tap_shape[1:]} | {stage_parameters(backbone, tap):,} | "
            + " | ".join(counts) + " |"
        )


if __name__ == "__main__":
    main()
