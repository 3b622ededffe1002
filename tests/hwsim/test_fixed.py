"""hwsim.fixed against Python big integers: formats, wrap, saturate, round_shift, multipliers, requantize.

Case count (each array element is one case checked against Python ints):
wrap 150 examples x 400 values = 60,000; saturate 150 x 400 = 60,000; round_shift 150 x 300 = 45,000;
requantize 100 x 200 = 20,000; IntFormat min/max 64 x 2; bits_for_range 1,000; quantize_multiplier 1,000:
about 187,000 in total, across widths 1..64.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.fixed import (
    FormatError,
    IntFormat,
    bits_for_range,
    quantize_multiplier,
    requantize,
    requantize_sum,
    round_shift,
    saturate,
    sign,
    wrap,
)

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def ref_min(bits: int, signed: bool) -> int:
    return -(2 ** (bits - 1)) if signed else 0


def ref_max(bits: int, signed: bool) -> int:
    return 2 ** (bits - 1) - 1 if signed else 2**bits - 1


def random_int64(rng: np.random.Generator, n: int, lo: int = I64_MIN, hi: int = I64_MAX) -> list[int]:
    """Python ints in [lo, hi]: uniform over magnitudes (random bit length) plus the edges."""
    out = [lo, hi, 0, 1, -1]
    out = [v for v in out if lo <= v <= hi]
    while len(out) < n:
        width = int(rng.integers(0, 64))
        v = int(rng.integers(0, 1 << 62)) >> (62 - min(width, 62)) if width else 0
        v = v if rng.random() < 0.5 else -v
        v += int(rng.integers(-3, 4))
        if lo <= v <= hi:
            out.append(v)
    return out[:n]


@pytest.mark.parametrize("bits", range(1, 65))
def test_int_format_min_max(bits: int) -> None:
    for signed in (False, True):
        fmt = IntFormat(bits, signed)
        assert (fmt.min, fmt.max) == (ref_min(bits, signed), ref_max(bits, signed))


def test_int_format_rejects_bad_widths() -> None:
    for bad in (0, 65, -1):
        with pytest.raises(FormatError, match="1..64"):
            IntFormat(bad, True)


@settings(max_examples=150)
@given(bits=st.integers(1, 64), signed=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_wrap_matches_modular_arithmetic(bits: int, signed: bool, seed: int) -> None:
    values = random_int64(np.random.default_rng(seed), 400)
    got, count = wrap(np.array(values, dtype=np.int64), IntFormat(bits, signed))
    lo, span = ref_min(bits, signed), 2**bits
    expected = [(v - lo) % span + lo for v in values]
    if bits == 64 and not signed:  # int64 holds uint64 codes >= 2**63 as their two's-complement bit pattern
        expected = [v - 2**64 if v > I64_MAX else v for v in expected]
    assert got.tolist() == expected
    assert count == sum(1 for v in values if not ref_min(bits, signed) <= v <= ref_max(bits, signed))


@settings(max_examples=150)
@given(bits=st.integers(1, 64), signed=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_saturate_matches_clamp(bits: int, signed: bool, seed: int) -> None:
    values = random_int64(np.random.default_rng(seed), 400)
    got, count = saturate(np.array(values, dtype=np.int64), IntFormat(bits, signed))
    lo, hi = ref_min(bits, signed), min(ref_max(bits, signed), I64_MAX)
    assert got.tolist() == [min(max(v, lo), hi) for v in values]
    assert count == sum(1 for v in values if not lo <= v <= hi)


def ref_round_shift(v: int, n: int) -> int:
    """Round half up (towards +inf) of v / 2^n, by exact rational arithmetic."""
    return math.floor(Fraction(v, 2**n) + Fraction(1, 2)) if n else v


@settings(max_examples=150)
@given(n=st.integers(0, 62), seed=st.integers(0, 2**32 - 1))
def test_round_shift_is_round_half_up(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    half = (1 << (n - 1)) if n else 0
    values = random_int64(rng, 200, I64_MIN, I64_MAX - half)
    # exact ties (odd multiples of 2^(n-1)), positive and negative
    if n:
        for k in rng.integers(-(1 << 20), 1 << 20, size=100):
            v = (2 * int(k) + 1) * half
            if I64_MIN <= v <= I64_MAX - half:
                values.append(v)
    got = round_shift(np.array(values, dtype=np.int64), n)
    assert got.tolist() == [ref_round_shift(v, n) for v in values]


def test_round_shift_negative_ties_round_up() -> None:
    # -2.5 -> -2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2 (half up, not half to even or away from zero)
    assert round_shift(np.array([-5, -3, -1, 1, 3]), 1).tolist() == [-2, -1, 0, 1, 2]
    with pytest.raises(FormatError, match="0..62"):
        round_shift(np.array([1]), 63)


@settings(max_examples=1000)
@given(a=st.integers(-(2**70), 2**70), b=st.integers(-(2**70), 2**70), signed=st.booleans())
def test_bits_for_range_is_the_narrowest(a: int, b: int, signed: bool) -> None:
    lo, hi = min(a, b), max(a, b)
    if not signed and lo < 0:
        with pytest.raises(FormatError):
            bits_for_range(lo, hi, signed)
        return
    bits = bits_for_range(lo, hi, signed)
    assert ref_min(bits, signed) <= lo and hi <= ref_max(bits, signed)
    if bits > 1:
        assert not (ref_min(bits - 1, signed) <= lo and hi <= ref_max(bits - 1, signed))


@settings(max_examples=1000)
@given(real=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), bits=st.integers(2, 63))
def test_quantize_multiplier_rounds_half_up_at_full_precision(real: float, bits: int) -> None:
    limit = 2 ** (bits - 1) - 1
    try:
        m = quantize_multiplier(real, bits)
    except FormatError:
        assert abs(real) > limit  # only a real that needs more than `bits` bits at shift 0 may fail
        return
    assert abs(m.mantissa) <= limit and 0 <= m.shift <= 62
    exact = Fraction(abs(real)) * 2**m.shift
    assert abs(m.mantissa) == math.floor(exact + Fraction(1, 2))
    assert (m.mantissa < 0) == (real < 0) or m.mantissa == 0
    # full precision: one more bit of shift would overflow the mantissa, or the shift is at its limit
    if m.shift < 62 and real != 0:
        assert math.floor(exact * 2 + Fraction(1, 2)) > limit


@settings(max_examples=100)
@given(
    inputs=st.integers(1, 3),
    out_bits=st.integers(1, 32),
    signed=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_requantize_matches_python_ints(inputs: int, out_bits: int, signed: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    channels, per = 4, 50
    xs = [rng.integers(-(2**31), 2**31, size=(per, channels)) for _ in range(inputs)]
    ms = [rng.integers(-(2**29), 2**29, size=channels) for _ in range(inputs)]
    bs = [rng.integers(-(2**20), 2**20, size=channels) for _ in range(inputs)]
    shift = rng.integers(0, 62, size=channels)
    offset = rng.integers(-(2**60), 2**60, size=channels)  # |sum| + |o| + 2^61 stays below 2^63
    out = IntFormat(out_bits, signed)
    rounded = requantize_sum(xs, ms, shift, channel_axis=1, biases=bs, offset=offset)
    codes, clamped = requantize(
        [x + b for x, b in zip(xs, bs, strict=True)], ms, shift, out, channel_axis=1, offset=offset
    )
    codes_b, _ = requantize(xs, ms, shift, out, channel_axis=1, biases=bs, offset=offset)
    assert np.array_equal(codes, codes_b)
    expected_rounded, expected_codes = [], []
    for r in range(per):
        for c in range(channels):
            total = sum((int(x[r, c]) + int(b[c])) * int(m[c]) for x, m, b in zip(xs, ms, bs, strict=True))
            total += int(offset[c])
            v = ref_round_shift(total, int(shift[c]))
            expected_rounded.append(v)
            expected_codes.append(min(max(v, out.min), out.max))
    assert rounded.reshape(-1).tolist() == expected_rounded
    assert codes.reshape(-1).tolist() == expected_codes
    assert clamped == sum(1 for a, b in zip(expected_rounded, expected_codes, strict=True) if a != b)
    assert sign(rounded).reshape(-1).tolist() == [1 if v >= 0 else -1 for v in expected_rounded]
