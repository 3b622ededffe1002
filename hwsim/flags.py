"""Numeric values checked at the edge: argparse types for both CLIs and the checks config dataclasses share.

Place in the flow: ``hwsim`` and ``qat`` flag definitions use the argparse types
(``type=int_in(1, 64)``, ``type=positive_int``, ``type=finite_float(0, 1)``); the frozen config
dataclasses (``qat.train.TrainConfig``, ...) call :func:`check_int` and :func:`check_float` on
construction, so the API refuses what the command line refuses, with the same message. A value
outside its range names the range: ``--momentum 1.5: expected a finite number in [0, 1)``.
An argparse type's refusal becomes argparse's usage line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np

from hwsim.errors import UserError, shown
from hwsim.fixed import MULT_BITS_RANGE, WIDTH_RANGE

# Seeds feed numpy's and torch's generators; both take any integer of 32 bits.
SEED_RANGE: tuple[int, int] = (0, 2**32 - 1)
# Worker processes and batch sizes: generous bounds that still catch a typo of many digits.
MAX_WORKERS = 1024
MAX_BATCH = 1 << 20


class ValueRangeError(UserError):
    """A number outside its legal range (or not a finite number): the message states the range."""


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{'-inf' if lo is None else _num(lo)}, {'inf' if hi is None else _num(hi)}{right}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _int_range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"an integer in {lo}..{hi}"
    if lo is not None:
        return f"an integer >= {lo}"
    if hi is not None:
        return f"an integer <= {hi}"
    return "an integer"


def _int_expected(value: object, lo: int | None, hi: int | None) -> str | None:
    """None when ``value`` is an int (not a bool) in ``lo..hi``, else what was expected."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return _int_range(lo, hi)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return _int_range(lo, hi)
    return None


def _float_expected(
    value: object, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool
) -> str | None:
    """None when ``value`` is a finite real number in the interval, else what was expected."""
    expected = f"a finite number in {_interval(lo, hi, lo_open, hi_open)}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return expected
    v = float(value)
    if (
        not math.isfinite(v)
        or (lo is not None and (v < lo or (lo_open and v == lo)))
        or (hi is not None and (v > hi or (hi_open and v == hi)))
    ):
        return expected
    return None


def check_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int (not a bool, not a float) in ``lo..hi``; else :class:`ValueRangeError`."""
    expected = _int_expected(value, lo, hi)
    if expected is not None:
        raise ValueRangeError(f"{name} {shown(value, 40)}: expected {expected}")
    return int(value)  # type: ignore[call-overload]


def check_float(
    name: str,
    value: object,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite real number in the interval; else :class:`ValueRangeError`.

    ``lo_open``/``hi_open`` exclude the bound (``lo=0, lo_open=True`` is "positive").
    """
    expected = _float_expected(value, lo, hi, lo_open, hi_open)
    if expected is not None:
        raise ValueRangeError(f"{name} {shown(value, 40)}: expected {expected}")
    return float(value)  # type: ignore[arg-type]


def _argparse_type(
    parse: Callable[[str], object], expected: Callable[[object], str | None], label: str
) -> Callable[[str], object]:
    """An argparse ``type``: parse the text, then check it; a refusal is an ArgumentTypeError."""

    def convert(text: str) -> object:
        try:
            value = parse(text)
        except ValueError:
            value = text
        problem = expected(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"expected {problem}, got {shown(text, 40)}")
        return value

    convert.__name__ = label
    return convert


def int_in(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in ``lo..hi`` (either bound may be None)."""
    return _argparse_type(int, lambda v: _int_expected(v, lo, hi), "int")  # type: ignore[return-value]


def finite_float(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite float in the interval (``nan``, ``inf`` and out-of-range refused)."""
    return _argparse_type(  # type: ignore[return-value]
        float, lambda v: _float_expected(v, lo, hi, lo_open, hi_open), "float"
    )


positive_int = int_in(1)
non_negative_int = int_in(0)
seed_int = int_in(*SEED_RANGE)
workers_int = int_in(0, MAX_WORKERS)  # data-loader workers (0: in the main process)
jobs_int = int_in(1, MAX_WORKERS)  # worker processes of a command (1: in the main process)
batch_int = int_in(1, MAX_BATCH)
acc_bits_int = int_in(*WIDTH_RANGE)  # an accumulator width the emulator can run
mult_bits_int = int_in(*MULT_BITS_RANGE)
