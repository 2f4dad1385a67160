"""A momentum (EMA) teacher: ResNet18 taught by its own average on CIFAR-100.

`EMATeacher` keeps a copy of the student whose weights follow the
student's with momentum `m` (the mean teacher of Tarvainen & Valpola, the
momentum teacher of DINO), and the student learns from the labels and from
that teacher's predictions:

    xi_t = m_t * xi_{t-1} + (1 - m_t) * theta_t
    L = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))

`MomentumScheduler` raises `m` from 0.996 to 1 along a half cosine over
training, per step (DINO's schedule), so the teacher follows the student
closely at first and settles at the end. alpha = 0.5, T = 1 (the package's
defaults). It prints the test accuracy of the student (what `predict`
serves) and of the teacher (`model.teacher`, a plain `keras.Model` that is
often the better one to deploy).

Same recipe as the other examples (SGD 0.1, momentum 0.9, weight decay 5e-4,
batch 128, the learning rate divided by 10 at a third, two thirds and 10
epochs before the end, crop and flip). No accuracy was measured for this
script here: this repository's machines have no GPU and no network, so only
`--smoke` runs (on mocked data) were made.

Run in Colab (Runtime > Change runtime type > GPU), in a cell:

    !git clone <URL of this repository> keras-selfdistill
    %cd keras-selfdistill
    !pip install -q -e ".[examples]"
    !python examples/ema_teacher_example.py

The train steps are compiled with XLA on a GPU (`jit_compile=True`). Check
first that everything runs with `--smoke`.

References:
    Tarvainen, Valpola. "Mean teachers are better role models", NeurIPS
    2017. https://arxiv.org/abs/1703.01780

    Caron et al. "Emerging Properties in Self-Supervised Vision
    Transformers" (DINO), ICCV 2021, section 3.1.
    https://arxiv.org/abs/2104.14294
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import example_utils as utils  # noqa: E402
import keras  # noqa: E402

from keras_selfdistill import EMATeacher  # noqa: E402
from keras_selfdistill.callbacks import MomentumScheduler  # noqa: E402


def parse_arguments(argv=None):
    parser = utils.argument_parser(__doc__.splitlines()[0], epochs=200)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--teacher-momentum", type=float, default=0.996,
                        help="EMA momentum at the first step")
    parser.add_argument("--final-teacher-momentum", type=float, default=1.0,
                        help="EMA momentum at the last step (cosine in between)")
    return utils.resolve_arguments(parser.parse_args(argv))


def main(argv=None):
    """Trains the student and prints the student's and teacher's accuracy."""
    args = parse_arguments(argv)
    compile_options, data = utils.start_run(args, "cifar100")

    student = utils.resnet(18, data.num_classes, args, name="student")
    model = EMATeacher(
        student,
        momentum=args.teacher_momentum,
        alpha=args.alpha,
        temperature=args.temperature,
    )
    # Only the student is trainable; the teacher follows it by averaging.
    utils.add_weight_decay(model, args.weight_decay)
    model.compile(optimizer=utils.sgd(args), metrics=["accuracy"], **compile_options)
    timer = utils.Timer()
    history = model.fit(
        data.train,
        epochs=args.epochs,
        validation_data=data.test,
        callbacks=[
            utils.learning_rate_schedule(args),
            MomentumScheduler(args.teacher_momentum, args.final_teacher_momentum),
        ],
        verbose=args.verbose,
    )
    print(f"trained in {timer.seconds:.0f} s", flush=True)

    results = {
        "student": utils.accuracy(
            model.student.predict(data.test_images, verbose=0), data.test_labels
        ),
        "teacher": utils.accuracy(
            model.teacher.predict(data.test_images, verbose=0), data.test_labels
        ),
        "final_momentum": float(keras.ops.convert_to_numpy(model.momentum)),
        "history": history.history,
    }
    utils.print_table(
        f"CIFAR-100 test accuracy (%), ResNet18 with an EMA teacher, "
        f"{len(data.test_labels)} images",
        ("model", "accuracy"),
        [("student (model.predict)", utils.percent(results["student"])),
         ("EMA teacher (model.teacher)", utils.percent(results["teacher"]))],
    )
    return results


if __name__ == "__main__":
    main()
