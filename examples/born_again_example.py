"""Born-again networks: ResNet18 generations on CIFAR-100.

`BornAgain` trains generation 0 of a CIFAR ResNet18 on the labels, then
each next generation, a fresh ResNet18 of the same size, with the previous
generation as a frozen teacher:

    L_k = (1 - alpha) * CE(y, s_k)
          + alpha * T^2 * KL(softmax(s_{k-1}/T) || softmax(s_k/T))

with the package's defaults alpha = 0.5, T = 1. The paper's finding is that
the students often beat their teacher of the same size, and that averaging
the generations' predictions helps further; this script prints every
generation's test accuracy and the ensembles of generations 0..k.

Each generation uses the same recipe as the other examples (SGD 0.1,
momentum 0.9, weight decay 5e-4, batch 128, the learning rate divided by 10
at a third, two thirds and 10 epochs before the end, crop and flip) and is
saved in `--checkpoint-dir` when it finishes: run the script again after an
interrupted Colab session and it resumes at the first unfinished
generation.

Differences from the paper: it trains DenseNets and wide ResNets with its
own schedules, and its main variant learns from the teacher only (no label
term); here the model is a ResNet18 and the label term stays (alpha 0.5).
No accuracy was measured for this script here: this repository's machines
have no GPU and no network, so only `--smoke` runs (on mocked data) were
made.

Run in Colab (Runtime > Change runtime type > GPU), in a cell:

    !git clone <URL of this repository> keras-selfdistill
    %cd keras-selfdistill
    !pip install -q -e ".[examples]"
    !python examples/born_again_example.py --generations 3 --epochs 200

The train steps are compiled with XLA on a GPU (`jit_compile=True`). Check
first that everything runs with `--smoke`.

References:
    Furlanello, Lipton, Tschannen, Itti, Anandkumar. "Born Again Neural
    Networks", ICML 2018. https://arxiv.org/abs/1805.04770
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import example_utils as utils  # noqa: E402

from keras_selfdistill import BornAgain  # noqa: E402


def parse_arguments(argv=None):
    parser = utils.argument_parser(__doc__.splitlines()[0], epochs=200)
    parser.add_argument("--generations", type=int, default=3,
                        help="generations, the label-trained one included")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--checkpoint-dir", default="born_again_checkpoints",
                        help="finished generations are saved (and resumed) here")
    return utils.resolve_arguments(parser.parse_args(argv))


def main(argv=None):
    """Trains the generations and prints their test accuracy."""
    args = parse_arguments(argv)
    compile_options, data = utils.start_run(args, "cifar100")

    def build_model():
        # A fresh, uncompiled ResNet18 per generation.
        model = utils.resnet(18, data.num_classes, args)
        utils.add_weight_decay(model, args.weight_decay)
        return model

    born_again = BornAgain(
        build_model,
        generations=args.generations,
        alpha=args.alpha,
        temperature=args.temperature,
    )
    born_again.compile(
        optimizer=lambda: utils.sgd(args),  # A new optimizer per generation.
        metrics=["accuracy"],
        **compile_options,
    )
    timer = utils.Timer()
    born_again.fit(
        data.train,
        epochs=args.epochs,
        validation_data=data.test,
        callbacks=[utils.learning_rate_schedule(args)],
        checkpoint_dir=args.checkpoint_dir,
        verbose=args.verbose,
    )
    print(f"trained in {timer.seconds:.0f} s", flush=True)

    generation_accuracy, ensemble_accuracy, rows = [], [], []
    for index in range(args.generations):
        logits = born_again.generation(index).predict(data.test_images, verbose=0)
        generation_accuracy.append(utils.accuracy(logits, data.test_labels))
        ensemble = born_again.ensemble(list(range(index + 1)))
        ensemble_logits = ensemble.predict(data.test_images, verbose=0)
        ensemble_accuracy.append(utils.accuracy(ensemble_logits, data.test_labels))
        rows.append((
            index,
            "labels" if index == 0 else f"generation {index - 1}",
            utils.percent(generation_accuracy[-1]),
            utils.percent(ensemble_accuracy[-1]),
        ))
    utils.print_table(
        f"CIFAR-100 test accuracy (%), ResNet18 generations, "
        f"{len(data.test_labels)} images",
        ("generation", "taught by", "accuracy", "ensemble of generations 0..k"),
        rows,
    )
    return {
        "generation_accuracy": generation_accuracy,
        "ensemble_accuracy": ensemble_accuracy,
    }


if __name__ == "__main__":
    main()
