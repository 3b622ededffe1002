"""Lowering: real-valued affine forms to integer multipliers, shifts and offsets; accumulator bounds.

Place in the flow: a producer of bundles (``qat export``, or any importer) describes each
requantizer in real numbers, per output channel ``c``: ``z[c] = sum_i (unit_i[c] * x_i + offset_i[c])``
over integer inputs ``x_i`` (accumulators or codes), and an output scale. :func:`requant_constants`
is the one function that turns that into the integers of a ``requant`` node (docs/export-format.md,
"How the constants are computed"), proving that the int64 sum cannot overflow; :func:`mac_range`
and :func:`worst_case_acc_bits` bound the accumulators those bounds start from (the loader checks
``acc_bits`` with the same function). numpy and fractions only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hwsim.fixed import I64_MAX, MAX_SHIFT, CodeFormat, FormatError, bits_for_range, quantize_multiplier

DEFAULT_MULT_BITS = 32
INT32_MAX = (1 << 31) - 1


@dataclass(frozen=True)
class RequantTerm:
    """One input of a requantizer in real numbers: ``unit[c] * x + offset[c]`` (float64, per channel).

    ``bound[c]`` is the largest ``|x|`` any legal input can produce (worst case, from the weights
    and the input format). ``has_bias``: the input is an accumulator and may carry an int32 bias;
    a codes input has none (its offset must be 0).
    """

    tensor: str
    unit: np.ndarray
    offset: np.ndarray
    bound: tuple[int, ...]
    has_bias: bool


@dataclass(frozen=True)
class CodesValue:
    """A tensor of codes during a lowering walk: its name, scale, format and shape (no batch axis)."""

    tensor: str
    scale: float
    fmt: CodeFormat
    shape: tuple[int, ...]

    def as_terms(self) -> tuple[RequantTerm, ...]:
        """The codes as one requantizer input: ``unit = scale``, no offset, bounded by the format."""
        c = self.shape[0]
        bound = max(abs(self.fmt.min), abs(self.fmt.max))
        return (RequantTerm(self.tensor, np.full(c, self.scale), np.zeros(c), (bound,) * c, False),)


@dataclass(frozen=True)
class RequantConstants:
    """The integers of one requant node: ``M_i[c]``, ``b_i[c]`` (``None``: no bias), ``o[c]``, ``n[c]``.

    ``offset``: int64 per channel, added after the multiplications (``clamp``); ``None`` for
    ``sign``, whose constant is an exact threshold bias on one accumulator.
    ``max_error``: worst case, over channels and legal inputs, of ``|integer sum / 2^n - real value|``
    before rounding; in output LSBs for ``clamp``; for ``sign`` in steps of the accumulator that
    carries the threshold (the decision is exact while that stays below the distance to zero).
    ``saturated``: ``sign`` channels whose BN scale is ~0 (a constant decision; see :func:`_sign_channel`).
    ``sum_bound``: the proven bound on ``|sum_i (x_i + b_i) M_i + o| + 2^(n-1)`` (``<= 2^63 - 1``).
    """

    multipliers: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray | None, ...]
    shift: np.ndarray
    max_error: float
    saturated: tuple[int, ...]
    sum_bound: int
    offset: np.ndarray | None = None


@dataclass
class _Channel:
    mults: list[int]
    biases: list[int | None]
    shift: int
    error: float
    saturated: bool
    sum_bound: int
    offset: int = 0


def _float_up(x: Fraction) -> float:
    """The float nearest ``x`` from above (an error bound must not be rounded down)."""
    f = float(x)
    return f if Fraction(f) >= x else math.nextafter(f, math.inf)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _sum_bound(
    mults: Sequence[int], biases: Sequence[int | None], bounds: Sequence[int], shift: int, offset: int = 0
) -> int:
    total = sum(abs(m) * (b + abs(bias or 0)) for m, bias, b in zip(mults, biases, bounds, strict=True))
    return total + abs(offset) + ((1 << (shift - 1)) if shift > 0 else 0)


def _offset_at(const: Fraction, shift: int) -> int:
    """``round_half_up(const * 2^shift)``, exactly."""
    return math.floor(const * (1 << shift) + Fraction(1, 2))


def _fit_shift(
    reals: Sequence[float], bounds: Sequence[int], bits: int, const: Fraction
) -> tuple[list[int], int, int]:
    """The largest shared shift such that every ``|M_i| <= 2^(bits-1) - 1`` and the int64 sum is safe.

    ``const`` is the node's constant in output LSBs (exact); returns the multipliers, the shift and
    the offset ``round_half_up(const * 2^shift)``.
    """
    shift = MAX_SHIFT
    for m in reals:
        if m != 0.0:
            shift = min(shift, quantize_multiplier(m, bits).shift)
    if all(m == 0.0 for m in reals) and const == 0:
        shift = 0
    biases = [None] * len(reals)
    while True:
        quantized = [quantize_multiplier(m, bits, max_shift=shift) for m in reals]
        lowest = min((q.shift for q, m in zip(quantized, reals, strict=True) if m != 0.0), default=shift)
        if lowest < shift:  # a mantissa rounded up past the limit: retry one shift lower
            shift = lowest
            continue
        mults = [q.mantissa for q in quantized]
        offset = _offset_at(const, shift)
        if _sum_bound(mults, biases, bounds, shift, offset) <= I64_MAX:
            return mults, shift, offset
        if shift == 0:
            raise FormatError(
                f"requant: even with shift 0 the int64 sum can overflow (multipliers {mults}, offset "
                f"{offset}, input bounds {list(bounds)}); lower --mult-bits"
            )
        shift -= 1


def _clamp_channel(terms: Sequence[RequantTerm], c: int, out_scale: float, bits: int) -> _Channel:
    """Requantize to codes of scale ``out_scale``: ``M_i/2^n ~ unit_i/s``, ``o/2^n ~ sum_i offset_i/s``.

    The constant is carried by the offset at the ``2^-n`` scale (not in accumulator units), so it is
    as exact as the multipliers. The error is computed exactly (rationals), then rounded up to a float.
    """
    scale = Fraction(out_scale)
    reals = [float(t.unit[c]) / out_scale for t in terms]
    const = sum((Fraction(float(t.offset[c])) for t in terms), Fraction(0)) / scale
    bounds = [t.bound[c] for t in terms]
    mults, shift, offset = _fit_shift(reals, bounds, bits, const)
    step = Fraction(1, 2**shift)
    error = abs(offset * step - const)  # exact: |o/2^n - sum offset/s| + |M/2^n - unit/s| * bound per input
    for t, m, bound in zip(terms, mults, bounds, strict=True):
        error += bound * abs(m * step - Fraction(float(t.unit[c])) / scale)
    total = _sum_bound(mults, [None] * len(terms), bounds, shift, offset)
    return _Channel(mults, [None] * len(terms), shift, _float_up(error), False, total, offset)


def _sign_channel(terms: Sequence[RequantTerm], c: int, bits: int) -> _Channel:
    """``+1`` where ``sum_i unit_i x_i + offset_i >= 0``; only the sign of the sum matters.

    The constant (every offset) is carried by one accumulator, the *anchor*: with ``b`` the integer
    just below (gamma > 0) or above (gamma < 0) ``C / unit`` and ``f in (0, 1]`` the rest, the
    anchor's multiplier is ``2^(n-1) / f``, so the rounding addend ``2^(n-1)`` of ``round_shift``
    supplies the fraction: ``(x + b) M + 2^(n-1) >= 0`` is exactly ``x + C/unit >= 0``.
    """
    limit = (1 << (bits - 1)) - 1
    k = len(terms)
    bounds = [t.bound[c] for t in terms]
    units = [float(t.unit[c]) for t in terms]
    total = sum(float(t.offset[c]) for t in terms)
    anchor = next((i for i, t in enumerate(terms) if t.has_bias and units[i] != 0.0), None)
    biases: list[int | None] = [0 if t.has_bias else None for t in terms]
    if anchor is None:
        if total != 0.0:  # only accumulators with unit 0 carry the constant: a constant decision
            i = next(i for i, t in enumerate(terms) if t.has_bias)
            mults = [0] * k
            mults[i] = 1
            biases[i] = INT32_MAX if total > 0 else -INT32_MAX
            return _Channel(mults, biases, 0, 0.0, True, _sum_bound(mults, biases, bounds, 0))
        biggest = max((abs(u) for u in units), default=0.0)
        scale = limit / biggest if biggest else 0.0
        mults = [_round_half_up(u * scale) for u in units]  # shift 0: no rounding addend at all
        error = (
            sum(b * abs(m / scale - u) / biggest for m, u, b in zip(mults, units, bounds, strict=True))
            if biggest
            else 0.0
        )
        return _Channel(mults, biases, 0, error, False, _sum_bound(mults, biases, bounds, 0))
    a = units[anchor]
    b_real = total / a
    others = sum(abs(u) * b for i, (u, b) in enumerate(zip(units, bounds, strict=True)) if i != anchor)
    if abs(b_real) >= INT32_MAX - 1:
        if abs(total) <= abs(a) * bounds[anchor] + others:
            raise FormatError(
                f"sign requant, channel {c}: the threshold {b_real:.6g} (accumulator units) does not fit "
                "int32 but the decision is not constant; the BN scale of this channel is too small"
            )
        mults = [0] * k
        mults[anchor] = 1 if a > 0 else -1
        biases[anchor] = INT32_MAX if (total > 0) == (a > 0) else -INT32_MAX
        return _Channel(mults, biases, 0, 0.0, True, _sum_bound(mults, biases, bounds, 0))
    threshold = Fraction(total) / Fraction(a)  # exact, so a tiny fraction is not lost to float64
    if a > 0:
        b = math.ceil(threshold) - 1
        frac = threshold - b
    else:
        b = math.floor(threshold) + 1
        frac = b - threshold
    biases[anchor] = b
    sign_a = 1 if a > 0 else -1
    # The largest shift whose anchor multiplier M = ceil(2^(n-1)/f) stays <= cap. Rounding M up
    # keeps f' = 2^(n-1)/M in (0, f]: no integer lies between f' and f, so with the anchor alone
    # the decision is exact however small f is; the rest is counted in the error.
    cap = int(limit * abs(a) / max(abs(u) for u in units))  # every other |M_i| stays <= limit
    if cap < 1:
        raise FormatError(f"sign requant, channel {c}: input units {units} span more than {bits} bits")
    room = cap * frac  # n - 1 <= log2(cap * f)
    shift = 1 if room < 1 else min(MAX_SHIFT, (room.numerator // room.denominator).bit_length())
    while shift >= 1:
        m_anchor = max(1, min(cap, math.ceil(Fraction(2 ** (shift - 1)) / frac)))
        per_unit = m_anchor / abs(a)
        mults = [_round_half_up(u * per_unit) for u in units]
        mults[anchor] = sign_a * m_anchor
        if max(abs(m) for m in mults) <= limit and _sum_bound(mults, biases, bounds, shift) <= I64_MAX:
            exact = abs(Fraction(2 ** (shift - 1), m_anchor) - frac)
            per = Fraction(m_anchor) / abs(Fraction(a))
            exact += sum(
                bd * abs(Fraction(m) / per - Fraction(u)) / abs(Fraction(a))
                for i, (m, u, bd) in enumerate(zip(mults, units, bounds, strict=True))
                if i != anchor
            )
            error = _float_up(exact)
            return _Channel(mults, biases, shift, error, False, _sum_bound(mults, biases, bounds, shift))
        shift -= 1
    raise FormatError(
        f"sign requant, channel {c}: no shift keeps the multipliers within {bits} bits; raise --mult-bits"
    )


def requant_constants(
    terms: Sequence[RequantTerm], out_scale: float, function: str, mult_bits: int = DEFAULT_MULT_BITS
) -> RequantConstants:
    """The integer constants of one requant node, computed once, in float64 (docs/export-format.md).

    ``clamp``: real multiplier ``m_i[c] = unit_i[c] / out_scale``; no bias; offset ``o[c] =
    round_half_up(sum_i offset_i[c] / out_scale * 2^n[c])`` (int64, added after the
    multiplications); one shift ``n[c]`` for all inputs (one rounding), the largest for which every
    ``|M_i| <= 2^(mult_bits-1) - 1`` and ``sum_i |M_i| bound_i + |o| + 2^(n-1) <= 2^63 - 1``. A
    channel with BN gamma ~ 0 simply gets multipliers ~ 0 and its constant in ``o``.
    ``sign``: see :func:`_sign_channel` (an exact int32 threshold bias, no offset).
    """
    if function not in ("clamp", "sign"):
        raise ValueError(f"requant function {function!r}")
    if not terms:
        raise ValueError("requant_constants: no inputs")
    channels = len(terms[0].unit)
    for t in terms:
        if not t.has_bias and np.any(t.offset != 0):
            raise ValueError(f"requant input {t.tensor}: a codes input cannot carry an offset")
    per_channel = [
        _clamp_channel(terms, c, out_scale, mult_bits)
        if function == "clamp"
        else _sign_channel(terms, c, mult_bits)
        for c in range(channels)
    ]
    mults = tuple(np.array([ch.mults[i] for ch in per_channel], dtype=np.int64) for i in range(len(terms)))
    biases = tuple(
        np.array([ch.biases[i] or 0 for ch in per_channel], dtype=np.int32)
        if t.has_bias and function == "sign"
        else None
        for i, t in enumerate(terms)
    )
    return RequantConstants(
        multipliers=mults,
        biases=biases,
        shift=np.array([ch.shift for ch in per_channel], dtype=np.int64),
        max_error=max(ch.error for ch in per_channel),
        saturated=tuple(c for c, ch in enumerate(per_channel) if ch.saturated),
        sum_bound=max(ch.sum_bound for ch in per_channel),
        offset=np.array([ch.offset for ch in per_channel], dtype=np.int64) if function == "clamp" else None,
    )


def mac_range(weight: np.ndarray, fmt: CodeFormat) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the smallest and largest accumulator any input in ``fmt`` can produce.

    For ``x`` in ``[lo, hi]`` the extremes of ``w*x`` are at ``x = lo`` or ``x = hi``: the sum of
    positive weights times ``hi`` plus the negative ones times ``lo``, and the mirror (exact ints).
    """
    w = np.asarray(weight).reshape(weight.shape[0], -1)
    if w.size:
        wmax = max(abs(int(w.min())), abs(int(w.max())))
        exact = wmax * w.shape[1] * max(abs(fmt.min), abs(fmt.max), 1) <= I64_MAX
        w = w.astype(np.int64) if exact else w.astype(object)
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    return pos * fmt.min + neg * fmt.max, pos * fmt.max + neg * fmt.min


def worst_case_acc_bits(weight: np.ndarray, fmt: CodeFormat) -> int:
    """The accumulator width (signed, 0 included) that holds every sum of :func:`mac_range`."""
    if weight.size == 0:
        return 1
    lo, hi = mac_range(weight, fmt)
    return bits_for_range(min(int(lo.min()), 0), max(int(hi.max()), 0), True)
