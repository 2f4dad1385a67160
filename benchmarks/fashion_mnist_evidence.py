"""Fashion-MNIST evidence: plain vs deep supervision vs self-distillation.

The demo's CNN (`examples/fashion_mnist_demo.py`, heads after stages 1 and 2)
through the evidence harness (`benchmarks/harness.py`): arms `plain`,
`heads_ce` (`alpha=0`, `feature_weight=0`) and `sd` (the library's
defaults, with its heads' ensemble), paired seeds, Adam with cosine decay to
0, final weights, on the official 10,000 test images.

    python benchmarks/fashion_mnist_evidence.py                      # 10k images, 5 seeds
    python benchmarks/fashion_mnist_evidence.py --train-samples 0    # all 60,000
    python benchmarks/fashion_mnist_evidence.py --smoke              # seconds

Offline: Fashion-MNIST comes from Debian's `dataset-fashion-mnist`.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# This checkout's library, not whichever one is installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import fashion_mnist_demo as demo  # noqa: E402
import harness  # noqa: E402
from headfree_arms import headfree_arms  # noqa: E402


def arms(width: int, num_samples: int = 0, epochs: int = 0, batch_size: int = 128) -> dict:
    """The arms' builders: `plain`, `heads_ce` (deep supervision), `sd`,
    `sd_doubling` (`sd` with `head_width="doubling"`, the paper's narrower
    heads), `sd_gradient_0.3` etc. (`sd` with `head_gradient_scale`), and
    the head-free arms `label_smoothing`, `tf_kd`, `cs_kd`, `ps_kd` and `dlb`
    (`headfree_arms`)."""
    return dict(
        plain=lambda: demo.build_cnn(width),
        heads_ce=lambda: demo.build_self_distilled(width, alpha=0.0, feature_weight=0.0),
        sd=lambda: demo.build_self_distilled(width),
        sd_doubling=lambda: demo.build_self_distilled(width, head_width="doubling"),
        **{f"sd_gradient_{scale}": (
            lambda scale=scale: demo.build_self_distilled(width, head_gradient_scale=scale))
           for scale in harness.HEAD_GRADIENT_SCALES},
        **headfree_arms(lambda: demo.build_cnn(width), num_samples=num_samples,
                        epochs=epochs, batch_size=batch_size),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-samples", type=int, default=10000,
                        help="first N training images; 0 = all 60,000")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--output", default="benchmarks/results/fashion_mnist_evidence.json")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--arms", default="plain,heads_ce,sd",
                        help="comma-separated; also label_smoothing, tf_kd, cs_kd, ps_kd, dlb")
    parser.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                        help="constant: the common Keras recipe, a no-harm check only")
    args = parser.parse_args(argv)
    data = demo.load_data(args.train_samples)
    if args.smoke:
        (x_train, y_train), (x_test, y_test) = data
        data = (x_train[:64], y_train[:64]), (x_test[:32], y_test[:32])
        args.seeds, args.epochs, args.width, args.batch_size = min(args.seeds, 2), 1, 4, 16
    recipe = harness.Recipe(epochs=args.epochs, batch_size=args.batch_size, optimizer="adam",
                            learning_rate=args.learning_rate, weight_decay=0.0,
                            train_eval_samples=2000, run_eagerly=args.smoke,
                            schedule=args.schedule)
    settings = dict(
        data=f"Fashion-MNIST, first {len(data[0][0])} training images, "
             f"official test split ({len(data[1][0])} images)",
        model=f"demo CNN, width {args.width}, heads at stage1_pool/stage2_pool",
        smoke=args.smoke)
    if os.path.dirname(args.output):
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
    command = harness.command_line(__file__, sys.argv[1:] if argv is None else argv)
    every_arm = arms(args.width, num_samples=len(data[0][0]), epochs=args.epochs,
                     batch_size=args.batch_size)
    builders = {name: build for name, build in every_arm.items()
                if name in args.arms.split(",")}
    results = harness.run_arms(builders, recipe, data, range(args.seeds), settings,
                               save_to=args.output, command=command)
    page = harness.render_markdown(results)
    print("\n" + page, flush=True)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(page)
    return results


if __name__ == "__main__":
    main()
