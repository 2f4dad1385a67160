"""CIFAR-10 evidence on a CPU: co-distillation vs independent peers vs DML.

Two small CIFAR ResNets (the model of `cifar10_evidence.py`) trained as K = 2
peers through the evidence harness (`benchmarks/harness.py`), three paired
arms per seed, all with the same initialisation and batches per seed:

- `independent`: `MutualLearning(alpha=0)`: each peer on the labels alone,
  so two independently trained models (and their ensemble);
- `co_distillation`: `CoDistillation` with stale teachers, refreshed every
  `--refresh-epochs` epochs after `--burn-in-epochs` epochs on the labels;
- `mutual_learning`: `MutualLearning` (fresh teachers every step).

Each arm serves the ensemble of its two peers (the mean of their logits,
what `predict` returns) and also reports each peer (`peer_a`, `peer_b`),
paired against `independent`. Both peers of an arm see the same batches
here (one process); in the paper each group reads its own shard.

Then the communication picture, from the parameter count: bytes a group
sends per exchange and over the run, against a data-parallel ring
all-reduce of the gradients every step.

    KSD_CIFAR10=../shared/data/cifar10_train_jpeg.npz python benchmarks/co_distillation_evidence.py
    python benchmarks/co_distillation_evidence.py --cifar10 PATH --smoke    # seconds
"""

import argparse
import math
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from cifar10_evidence import AUGMENTATIONS  # noqa: E402
from cifar10_evidence import NUM_CLASSES  # noqa: E402
from cifar10_evidence import cifar_resnet  # noqa: E402
from cifar10_evidence import load_cifar10  # noqa: E402

from keras_selfdistill import CoDistillation  # noqa: E402
from keras_selfdistill import MutualLearning  # noqa: E402

ARMS = ("independent", "co_distillation", "mutual_learning")
COMPARISONS = (
    ("co_distillation peer_a", "independent peer_a"),
    ("mutual_learning peer_a", "independent peer_a"),
    ("co_distillation peer_a", "mutual_learning peer_a"),
    ("independent", "independent peer_a"),
)


def peers(width, blocks_per_stage):
    first = cifar_resnet(width, blocks_per_stage)
    first.name = "peer_a"
    second = cifar_resnet(width, blocks_per_stage)
    second.name = "peer_b"
    return [first, second]


def arms(width, blocks_per_stage, refresh_steps, burn_in_steps):
    """Builders of the three arms."""
    return dict(
        independent=lambda: MutualLearning(peers(width, blocks_per_stage), alpha=0.0),
        co_distillation=lambda: CoDistillation(
            peers(width, blocks_per_stage), refresh_steps=refresh_steps,
            burn_in_steps=burn_in_steps,
        ),
        mutual_learning=lambda: MutualLearning(peers(width, blocks_per_stage)),
    )


def communication(parameters, total_steps, refresh_steps, burn_in_steps, groups=2,
                  workers_per_group=1):
    """Bytes moved per worker: co-distillation's exchanges vs a ring
    all-reduce of float32 gradients every step over all the workers."""
    weights_bytes = 4 * parameters
    exchanges = math.ceil(total_steps / refresh_steps)
    workers = groups * workers_per_group
    ring = 2 * (workers - 1) / workers * weights_bytes
    return dict(
        parameters=parameters,
        bytes_per_exchange_written=weights_bytes,
        bytes_per_exchange_read=(groups - 1) * weights_bytes,
        exchanges=exchanges,
        co_distillation_total_bytes=exchanges * groups * weights_bytes,
        all_reduce_bytes_per_worker_per_step=ring,
        all_reduce_total_bytes=total_steps * workers * ring,
        ratio=(total_steps * workers * ring) / (exchanges * groups * weights_bytes),
        total_steps=total_steps,
        refresh_steps=refresh_steps,
        burn_in_steps=burn_in_steps,
    )


def communication_markdown(picture):
    mb = 1e6
    return "\n".join([
        "Communication (float32 weights, per run of one arm, K = 2 groups of one "
        "worker each):",
        "",
        "| | co-distillation | data-parallel all-reduce (2 workers) |",
        "| --- | ---: | ---: |",
        f"| how often | every {picture['refresh_steps']} steps "
        f"({picture['exchanges']} exchanges) | every step ({picture['total_steps']}) |",
        f"| bytes per event, per group/worker | {picture['bytes_per_exchange_written'] / mb:.3f}"
        f" MB written, {picture['bytes_per_exchange_read'] / mb:.3f} MB read | "
        f"{picture['all_reduce_bytes_per_worker_per_step'] / mb:.3f} MB (ring: "
        "2·(N−1)/N·4P) |",
        f"| total over the run | {picture['co_distillation_total_bytes'] / mb:.2f} MB | "
        f"{picture['all_reduce_total_bytes'] / mb:.2f} MB |",
        "",
        f"P = {picture['parameters']:,} parameters per model; all-reduce moves "
        f"{picture['ratio']:.1f}x the bytes of co-distillation (in the paper the "
        "exchanges are hundreds to thousands of steps apart and the groups are "
        "data-parallel jobs themselves).",
        "",
    ])


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cifar10", default=os.environ.get("KSD_CIFAR10"),
                        help="cifar10_train_jpeg.npz (default: $KSD_CIFAR10)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-images", type=int, default=1000,
                        help="first N/10 images of every class")
    parser.add_argument("--test-per-class", type=int, default=500)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--blocks-per-stage", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--refresh-epochs", type=float, default=1.0,
                        help="epochs between snapshot refreshes")
    parser.add_argument("--burn-in-epochs", type=float, default=4.0)
    parser.add_argument("--train-eval-images", type=int, default=1000)
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default="crop_flip")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--output", default="benchmarks/results/co_distillation_cifar10.json")
    parser.add_argument("--markdown", default=None, help="also write the tables here")
    parser.add_argument("--smoke", action="store_true",
                        help="1 seed, 1 epoch (3 steps), 40 images, width 4: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.epochs, args.train_images = min(args.seeds, 1), 1, 40
        args.test_per_class, args.width, args.batch_size = 2, 4, 16
        # One step of burn-in, then a refresh every step.
        args.refresh_epochs, args.burn_in_epochs = 0.34, 0.34
    if not args.cifar10:
        parser.error("give --cifar10 PATH or set KSD_CIFAR10")
    unknown = sorted(set(args.arms.split(",")) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; the arms are {list(ARMS)}")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    data = load_cifar10(args.cifar10, args.train_images, args.test_per_class)
    steps_per_epoch = math.ceil(len(data[0][0]) / args.batch_size)
    refresh_steps = max(1, round(args.refresh_epochs * steps_per_epoch))
    burn_in_steps = round(args.burn_in_epochs * steps_per_epoch)
    recipe = harness.Recipe(
        epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd",
        learning_rate=args.learning_rate, momentum=0.9, weight_decay=args.weight_decay,
        augment=AUGMENTATIONS[args.augment], train_eval_samples=args.train_eval_images,
        run_eagerly=args.smoke)
    settings = dict(
        data=f"CIFAR-10 from {os.path.basename(args.cifar10)}; train: first "
             f"{args.train_images // NUM_CLASSES} images of every class "
             f"({len(data[0][0])}); test: last {args.test_per_class} images of every "
             f"class ({len(data[1][0])}), held out of the 50,000 training images",
        model=f"2 peers, each ResNet-{6 * args.blocks_per_stage + 2}, widths "
              f"{args.width}/{2 * args.width}/{4 * args.width}",
        refresh_steps=refresh_steps, burn_in_steps=burn_in_steps, smoke=args.smoke)
    builders = {name: build for name, build in arms(
        args.width, args.blocks_per_stage, refresh_steps, burn_in_steps).items()
        if name in args.arms.split(",")}
    if os.path.dirname(args.output):
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
    command = harness.command_line(__file__, sys.argv[1:] if argv is None else argv)
    results = harness.run_arms(builders, recipe, data, range(args.seeds), settings,
                               save_to=args.output, command=command)
    parameters = cifar_resnet(args.width, args.blocks_per_stage).count_params()
    picture = communication(parameters, steps_per_epoch * args.epochs, refresh_steps,
                            burn_in_steps)
    results["communication"] = picture
    harness.save_results(results, args.output)
    page = (harness.render_markdown(results, baseline="independent",
                                    comparisons=COMPARISONS)
            + "\n" + communication_markdown(picture))
    print("\n" + page, flush=True)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(page)
    return results


if __name__ == "__main__":
    main()
