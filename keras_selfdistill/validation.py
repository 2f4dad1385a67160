"""Argument checks shared by every class: errors that name the bad value.

Each check raises `ValueError` with the argument's name, what is allowed and
what was received, in the Keras style ("... Received: alpha=1.5").
"""

import difflib
import math


def check_number(name, value, low, high, low_inclusive, allowed) -> None:
    """Raises unless `value` is a real number in the given range.

    Args:
        name: str. The argument's name, for the message.
        value: the received value.
        low: float. Lower bound.
        high: float. Upper bound (inclusive).
        low_inclusive: bool. Whether `low` itself is allowed.
        allowed: str. The allowed range in words, e.g. `"in [0, 1]"`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"`{name}` must be a number {allowed}. Received: {name}={value!r}"
        )
    above_low = value >= low if low_inclusive else value > low
    if math.isnan(value) or not above_low or value > high:
        raise ValueError(
            f"`{name}` must be {allowed}. Received: {name}={value!r}"
        )


def check_unit_interval(name, value) -> None:
    """`value` must be a number in [0, 1] (alpha, momentum, thresholds)."""
    check_number(name, value, 0.0, 1.0, True, "in [0, 1]")


def check_positive(name, value) -> None:
    """`value` must be a finite number > 0 (temperature)."""
    check_number(name, value, 0.0, float("inf"), False, "> 0")
    if math.isinf(value):
        raise ValueError(f"`{name}` must be finite. Received: {name}={value!r}")


def check_non_negative(name, value) -> None:
    """`value` must be a finite number >= 0 (feature_weight)."""
    check_number(name, value, 0.0, float("inf"), True, ">= 0")
    if math.isinf(value):
        raise ValueError(f"`{name}` must be finite. Received: {name}={value!r}")


def check_integer(name, value, minimum) -> None:
    """`value` must be an integer >= `minimum` (counts, sizes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )


def check_choice(name, value, choices) -> None:
    """`value` must be one of `choices` (a tuple of allowed values)."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}"
        )


def close_matches_hint(name, names, limit: int = 40) -> str:
    """The end of an "unknown name" message: close matches, else the names.

    Args:
        name: the name that was not found (any value; read as a string).
        names: list of str. The names that exist, in their usual order.
        limit: int. How many names to list when none is close. Defaults to
            `40`.

    Returns:
        A str starting with a space, e.g. `" Close matches: ['stage1']."` or
        `" Its layers are: ['input', 'dense']."`.
    """
    close = difflib.get_close_matches(str(name), list(names), n=5)
    if close:
        return f" Close matches: {close}."
    more = " ..." if len(names) > limit else "."
    return f" Its layers are: {list(names)[:limit]}{more}"
