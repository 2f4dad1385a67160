"""Knowledge distillation vs self-distillation on CIFAR-10, ResNet18.

Two ways to get a better ResNet18 than training it on the labels:

- **knowledge distillation** (Hinton et al. 2015): first train a big
  teacher (a CIFAR ResNet50) on the labels, then the ResNet18 student with
  `Distiller(teacher, student)`:
  `L = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))`
  with the package's defaults alpha = 0.9, T = 4;
- **self-distillation** (Zhang et al. 2019): no teacher; the ResNet18 gets
  three extra heads and its deepest classifier teaches them
  (`SelfDistillModel`, the recipe of `cifar100_byot.py`: alpha 0.3, T 3,
  feature weight 0.03, no T^2 factor). The deployed model is the plain
  ResNet18 (`export_backbone()`), heads dropped.

It trains, with the same recipe (SGD 0.1, momentum 0.9, weight decay 5e-4,
batch 128, the learning rate divided by 10 at a third, two thirds and 10
epochs before the end, crop and flip), the ResNet18 on the labels
(baseline), the ResNet50 teacher, the KD student and the self-distilled
ResNet18, then prints their test accuracies and what each cost to train.
`--runs` picks a subset; the teacher is saved in `--output-dir` and loaded
from there on the next run, so an interrupted session does not train it
twice.

Reported figures for this comparison are 94.2 % (KD) and 94.4 % (SD) test
accuracy after 200 epochs on one L4 GPU. **They were not reproduced here**:
this repository's machines have no GPU and no network, so only `--smoke`
runs (on mocked data) were made.

Run in Colab (Runtime > Change runtime type > GPU), in a cell:

    !git clone <URL of this repository> keras-selfdistill
    %cd keras-selfdistill
    !pip install -q -e ".[examples]"
    !python examples/cifar10_kd_vs_sd.py --epochs 200

The train steps are compiled with XLA on a GPU (`jit_compile=True`). Check
first that everything runs with `--smoke`.

References:
    Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network",
    2015. https://arxiv.org/abs/1503.02531

    Zhang, Song, Gao, Chen, Bao, Ma. "Be Your Own Teacher: Improve the
    Performance of Convolutional Neural Networks via Self Distillation",
    ICCV 2019. https://arxiv.org/abs/1905.08094
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import example_utils as utils  # noqa: E402
import keras  # noqa: E402
from cifar100_byot import build_model as build_self_distilled  # noqa: E402

from keras_selfdistill import Distiller  # noqa: E402

RUNS = ("baseline", "teacher", "kd", "sd")
TEACHER_FILENAME = "resnet50_teacher.keras"


def parse_arguments(argv=None):
    parser = utils.argument_parser(__doc__.splitlines()[0], epochs=200)
    parser.add_argument("--runs", default=",".join(RUNS),
                        help=f"comma-separated subset of {','.join(RUNS)}")
    parser.add_argument("--kd-alpha", type=float, default=0.9)
    parser.add_argument("--kd-temperature", type=float, default=4.0)
    # Self-distillation: the BYOT recipe (see cifar100_byot.py).
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--temperature", type=float, default=3.0)
    parser.add_argument("--feature-weight", type=float, default=0.03)
    parser.add_argument("--temperature-squared", action="store_true")
    parser.add_argument("--output-dir", default="cifar10_kd_vs_sd",
                        help="where the trained teacher is saved and looked for")
    args = utils.resolve_arguments(parser.parse_args(argv))
    args.runs = [run for run in args.runs.split(",") if run]
    unknown = sorted(set(args.runs) - set(RUNS))
    if unknown:
        parser.error(f"unknown --runs {unknown}; choose from {list(RUNS)}")
    return args


def train_plain(model, data, args, compile_options):
    utils.add_weight_decay(model, args.weight_decay)
    utils.plain_compile(model, args, compile_options)
    model.fit(
        data.train, epochs=args.epochs, validation_data=data.test,
        callbacks=[utils.learning_rate_schedule(args)], verbose=args.verbose,
    )
    return model


def get_teacher(data, args, compile_options):
    """The ResNet50 teacher: loaded from `--output-dir`, else trained there."""
    path = os.path.join(args.output_dir, TEACHER_FILENAME)
    if os.path.exists(path):
        print(f"teacher: loading {path}", flush=True)
        return keras.saving.load_model(path, compile=False), 0.0
    print("teacher: ResNet50 on the labels", flush=True)
    timer = utils.Timer()
    teacher = train_plain(
        utils.resnet(50, data.num_classes, args), data, args, compile_options
    )
    os.makedirs(args.output_dir, exist_ok=True)
    teacher.save(path)
    return teacher, timer.seconds


def main(argv=None):
    """Trains the selected runs and prints their test accuracy."""
    args = parse_arguments(argv)
    compile_options, data = utils.start_run(args, "cifar10")
    labels = data.test_labels
    results = {}
    rows = []

    def report(run, model_name, model, logits, seconds):
        results[run] = utils.accuracy(logits, labels)
        rows.append((run, model_name, f"{model.count_params():,}",
                     utils.percent(results[run]), f"{seconds:.0f}"))

    if "baseline" in args.runs:
        print("baseline: ResNet18 on the labels", flush=True)
        timer = utils.Timer()
        student = train_plain(
            utils.resnet(18, data.num_classes, args), data, args, compile_options
        )
        report("baseline", "ResNet18", student,
               student.predict(data.test_images, verbose=0), timer.seconds)

    if "teacher" in args.runs or "kd" in args.runs:
        teacher, seconds = get_teacher(data, args, compile_options)
        report("teacher", "ResNet50", teacher,
               teacher.predict(data.test_images, verbose=0), seconds)

    if "kd" in args.runs:
        print(f"kd: ResNet18 taught by the ResNet50 (alpha={args.kd_alpha}, "
              f"T={args.kd_temperature})", flush=True)
        timer = utils.Timer()
        distiller = Distiller(
            teacher,
            utils.resnet(18, data.num_classes, args, name="student"),
            alpha=args.kd_alpha,
            temperature=args.kd_temperature,
        )
        # The teacher is frozen: only the student's weights are decayed.
        utils.add_weight_decay(distiller, args.weight_decay)
        distiller.compile(optimizer=utils.sgd(args), metrics=["accuracy"],
                          **compile_options)
        distiller.fit(
            data.train, epochs=args.epochs, validation_data=data.test,
            callbacks=[utils.learning_rate_schedule(args)], verbose=args.verbose,
        )
        report("kd", "ResNet18 (student)", distiller.student,
               distiller.student.predict(data.test_images, verbose=0), timer.seconds)

    if "sd" in args.runs:
        print(f"sd: ResNet18 + 3 heads, BYOT (alpha={args.alpha}, "
              f"T={args.temperature}, feature weight={args.feature_weight})", flush=True)
        timer = utils.Timer()
        model = build_self_distilled(data.num_classes, args)
        utils.add_weight_decay(model, args.weight_decay)
        model.compile(optimizer=utils.sgd(args), metrics=["accuracy"],
                      **compile_options)
        model.fit(
            data.train, epochs=args.epochs, validation_data=data.test,
            callbacks=[utils.learning_rate_schedule(args)], verbose=args.verbose,
        )
        seconds = timer.seconds
        backbone = model.export_backbone()
        report("sd", "ResNet18 (heads dropped)", backbone,
               backbone.predict(data.test_images, verbose=0), seconds)
        head_logits = model.predict_heads(data.test_images, verbose=0)
        results["sd_ensemble"] = utils.accuracy(sum(head_logits), labels)
        rows.append(("sd", "ensemble of its 4 heads", f"{model.count_params():,}",
                     utils.percent(results["sd_ensemble"]), "-"))

    utils.print_table(
        f"CIFAR-10 test accuracy (%), {len(labels)} images, {args.epochs} epochs",
        ("run", "model", "parameters", "accuracy", "training time (s)"),
        rows,
    )
    return results


if __name__ == "__main__":
    main()
