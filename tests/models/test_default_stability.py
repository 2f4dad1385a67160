"""The defaults keep self-distillation stable, seed after seed.

A throwaway prototype of the BYOT loss once collapsed on one seed of five
(98 % -> 88 %) on a small 1-D task. This test runs the `defaults` row of
`benchmarks/default_stability.py`: a small MLP on the flattened 8x8 digits,
trained plainly and as a `SelfDistillModel` with the library's defaults, for
five seeds; self-distillation must never cost the served (deepest) classifier
more than 1.5 points on any seed.

With `temperature=3` and the `T^2` factor on (`scale_by_temperature_squared=
True`, 9x the paper's teacher gradient) this test failed: two seeds at 93 %
against 98 %. The defaults follow the paper's equation and official code (no
`T^2`); see `docs/self_distillation.md`, "Choosing the defaults".
"""

import pytest
from backend_utils import tensorflow_pass_only
from default_stability import served_accuracy


@pytest.mark.large
@tensorflow_pass_only(
    "a statistical check of the default hyper-parameters over five seeds; "
    "the same weights give the same training trajectory on every backend"
)
def test_defaults_never_collapse_on_any_seed():
    gaps = [
        served_accuracy({}, seed) - served_accuracy(None, seed) for seed in range(5)
    ]
    assert min(gaps) > -0.015, f"accuracy gaps (self-distilled - plain): {gaps}"
