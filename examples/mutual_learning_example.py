"""Deep mutual learning: two ResNet18 peers teach each other on CIFAR-100.

`MutualLearning` trains both peers at once, from scratch, with no
pre-trained teacher; each learns from the labels and from the other's
softened predictions:

    L_i = (1 - alpha) * CE(y, z_i)
          + alpha * T^2 * KL(stop_gradient(softmax(z_j/T)) || softmax(z_i/T))

with the package's defaults alpha = 0.5, T = 1 (the paper's loss is
`CE + KL`, twice this one at these values). `predict` serves the peers'
ensemble (mean logits); each peer is a plain `keras.Model` (`peer(i)`).
With `--baseline` it also trains one ResNet18 on the labels alone, for
comparison. It prints each peer's and the ensemble's test accuracy.

Same recipe as the other examples (SGD 0.1, momentum 0.9, weight decay 5e-4
on each peer, batch 128, the learning rate divided by 10 at a third, two
thirds and 10 epochs before the end, crop and flip). The paper trains
ResNet-32, MobileNet, InceptionV1 and WRN-28-10 peers on CIFAR-100 with SGD
(Nesterov) and its own schedule. No accuracy was measured for this script
here: this repository's machines have no GPU and no network, so only
`--smoke` runs (on mocked data) were made.

Run in Colab (Runtime > Change runtime type > GPU), in a cell:

    !git clone <URL of this repository> keras-selfdistill
    %cd keras-selfdistill
    !pip install -q -e ".[examples]"
    !python examples/mutual_learning_example.py --baseline

The train steps are compiled with XLA on a GPU (`jit_compile=True`). Check
first that everything runs with `--smoke`.

References:
    Zhang, Xiang, Hospedales, Lu. "Deep Mutual Learning", CVPR 2018.
    https://arxiv.org/abs/1706.00384
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import example_utils as utils  # noqa: E402

from keras_selfdistill import MutualLearning  # noqa: E402
from keras_selfdistill.callbacks import PlotWriter  # noqa: E402


def parse_arguments(argv=None):
    parser = utils.argument_parser(__doc__.splitlines()[0], epochs=200)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--baseline", action="store_true",
                        help="also train one ResNet18 on the labels alone")
    parser.add_argument("--plots-dir", default="mutual_learning_plots",
                        help="where the per-peer accuracy curves go ('' for none)")
    return utils.resolve_arguments(parser.parse_args(argv))


def main(argv=None):
    """Trains the peers (and the baseline) and prints their test accuracy."""
    args = parse_arguments(argv)
    compile_options, data = utils.start_run(args, "cifar100")
    results, rows = {}, []

    peers = [
        utils.resnet(18, data.num_classes, args, name=name)
        for name in ("resnet18_a", "resnet18_b")
    ]
    model = MutualLearning(peers, alpha=args.alpha, temperature=args.temperature)
    utils.add_weight_decay(model, args.weight_decay)
    model.compile(optimizer=utils.sgd(args), metrics=["accuracy"], **compile_options)
    callbacks = [utils.learning_rate_schedule(args)]
    if args.plots_dir:
        callbacks.append(PlotWriter(args.plots_dir))
    model.fit(
        data.train, epochs=args.epochs, validation_data=data.test,
        callbacks=callbacks, verbose=args.verbose,
    )
    for peer in model.peers:
        logits = peer.predict(data.test_images, verbose=0)
        results[peer.name] = utils.accuracy(logits, data.test_labels)
        rows.append((f"peer {peer.name}", utils.percent(results[peer.name])))
    results["ensemble"] = utils.accuracy(
        model.predict(data.test_images, verbose=0), data.test_labels
    )
    rows.append(("ensemble of the peers (mean logits)", utils.percent(results["ensemble"])))

    if args.baseline:
        baseline = utils.resnet(18, data.num_classes, args, name="baseline")
        utils.add_weight_decay(baseline, args.weight_decay)
        utils.plain_compile(baseline, args, compile_options)
        baseline.fit(
            data.train, epochs=args.epochs, validation_data=data.test,
            callbacks=[utils.learning_rate_schedule(args)], verbose=args.verbose,
        )
        results["baseline"] = utils.accuracy(
            baseline.predict(data.test_images, verbose=0), data.test_labels
        )
        rows.append(("ResNet18 on the labels alone", utils.percent(results["baseline"])))

    utils.print_table(
        f"CIFAR-100 test accuracy (%), deep mutual learning, {len(data.test_labels)} images",
        ("model", "accuracy"),
        rows,
    )
    return results


if __name__ == "__main__":
    main()
