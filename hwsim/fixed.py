"""Fixed-point arithmetic: the one arithmetic contract that every part of the flow obeys.

Place in the flow: everything integer goes through here. The export (``qat.export``) calls
:func:`quantize_multiplier` to turn float64 scales into integer multipliers once; the emulator,
the MAC-array model and the RTL scoreboards use :class:`IntFormat`, :func:`round_shift`,
:func:`wrap`, :func:`saturate`, :func:`requantize` (:func:`requantize_sum` and :func:`sign` for the
``sign`` output function). Nothing here imports torch.

Conventions (see docs/export-format.md):

* Bit widths are values: ``IntFormat(bits, signed)`` knows its range and says how to fix a
  value that does not fit.
* Every narrowing is named: :func:`wrap` (two's complement, as most hardware),
  :func:`saturate` (clamp), :func:`round_shift` (round half up: ``(v + 2**(n-1)) >> n`` with an
  arithmetic shift).
* All array functions take and return ``np.int64`` arrays; widths up to 64 bits are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwsim.errors import UserError

OverflowMode = Literal["wrap", "saturate"]
OVERFLOW_MODES: tuple[str, ...] = ("wrap", "saturate")


class FormatError(UserError, ValueError):
    """A value or a width that does not fit an integer format; the message names the fix."""


@dataclass(frozen=True)
class IntFormat:
    """A two's-complement (``signed``) or unsigned integer of ``bits`` bits."""

    bits: int
    signed: bool

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or isinstance(self.bits, bool):
            raise FormatError(f"IntFormat.bits must be an int, got {self.bits!r}")
        if not 1 <= int(self.bits) <= 64:
            raise FormatError(
                f"IntFormat.bits={self.bits} is outside the legal range 1..64; "
                "use a width between 1 and 64 bits"
            )
        if not isinstance(self.signed, (bool, np.bool_)):
            raise FormatError(f"IntFormat.signed must be a bool, got {self.signed!r}")

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    def __str__(self) -> str:
        return f"{self.name} [{self.min}, {self.max}]"

    def contains(self, values: np.ndarray | int) -> bool:
        """True when every value lies in ``[min, max]``."""
        arr = np.asarray(values)
        if arr.size == 0:
            return True
        return bool(arr.min() >= self.min and arr.max() <= self.max)

    def check(self, values: np.ndarray | int, where: str = "value") -> None:
        """Raise :class:`FormatError` naming the offending value, the range and the fix."""
        arr = np.asarray(values)
        if arr.size == 0 or self.contains(arr):
            return
        lo, hi = int(arr.min()), int(arr.max())
        bad = lo if lo < self.min else hi
        need = bits_for_range(lo, hi, self.signed)
        raise FormatError(
            f"{where}: {bad} does not fit {self} (values span [{lo}, {hi}]); "
            f"widen to {need} bits, or narrow explicitly with wrap() or saturate()"
        )

    @staticmethod
    def for_range(lo: int, hi: int, signed: bool | None = None) -> IntFormat:
        """The narrowest format holding every integer in ``[lo, hi]``."""
        if signed is None:
            signed = lo < 0
        return IntFormat(bits_for_range(lo, hi, signed), signed)


def bits_for_range(lo: int, hi: int, signed: bool) -> int:
    """Smallest width whose range covers ``[lo, hi]`` (at least 1)."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise FormatError(f"bits_for_range: empty range [{lo}, {hi}]; pass lo <= hi")
    if not signed:
        if lo < 0:
            raise FormatError(f"bits_for_range: {lo} is negative but signed=False; use signed=True")
        return max(1, hi.bit_length())
    # signed: need -2^(b-1) <= lo and hi <= 2^(b-1)-1
    need_lo = (-lo - 1).bit_length() + 1 if lo < 0 else 1
    need_hi = hi.bit_length() + 1 if hi > 0 else 1
    return max(need_lo, need_hi)


def _as_int64(values: np.ndarray | int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iub":
        raise FormatError(f"expected integer values, got dtype {arr.dtype}; convert codes to np.int64")
    return arr.astype(np.int64, copy=False)


def wrap(values: np.ndarray | int, fmt: IntFormat) -> tuple[np.ndarray, int]:
    """Two's-complement wrap into ``fmt``; returns ``(wrapped, how_many_were_out_of_range)``.

    (For ``uint64`` the int64 result holds codes ``>= 2**63`` as their bit pattern, i.e. negative.)
    """
    v = _as_int64(values)
    out_of_range = int(np.count_nonzero((v < fmt.min) | (v > fmt.max)))
    if fmt.bits == 64 and fmt.signed:
        return v.copy(), out_of_range
    width = np.uint64(fmt.bits)
    mask = np.uint64((1 << fmt.bits) - 1) if fmt.bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    u = v.astype(np.uint64) & mask
    if fmt.signed:
        sign_bit = np.uint64(1) << (width - np.uint64(1))
        wrapped = (u ^ sign_bit).astype(np.int64) - np.int64(1 << (fmt.bits - 1))
    else:
        wrapped = u.astype(np.int64)
    return wrapped, out_of_range


def saturate(values: np.ndarray | int, fmt: IntFormat) -> tuple[np.ndarray, int]:
    """Clamp into ``fmt``; returns ``(clamped, how_many_were_clamped)``."""
    v = _as_int64(values)
    lo, hi = max(fmt.min, -(1 << 63)), min(fmt.max, (1 << 63) - 1)
    out_of_range = int(np.count_nonzero((v < lo) | (v > hi)))
    return np.clip(v, lo, hi), out_of_range


def narrow(values: np.ndarray | int, fmt: IntFormat, mode: OverflowMode) -> tuple[np.ndarray, int]:
    """:func:`wrap` or :func:`saturate` by name."""
    if mode == "wrap":
        return wrap(values, fmt)
    if mode == "saturate":
        return saturate(values, fmt)
    raise FormatError(f"overflow mode {mode!r} is not one of {OVERFLOW_MODES}")


def round_shift(values: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """Round half up, then arithmetic right shift: ``(v + 2**(n-1)) >> n``; ``n == 0`` is identity.

    ``shift`` broadcasts against ``values`` (per-channel shifts). The caller guarantees that
    ``v + 2**(n-1)`` fits in int64 (the export proves it for every requantizer).
    """
    v = _as_int64(values)
    n = _as_int64(shift)
    if n.size and (n.min() < 0 or n.max() > 62):
        raise FormatError(f"round_shift: shift {int(n.min())}..{int(n.max())} outside 0..62")
    half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), np.int64(0))
    return np.right_shift(v + half, n)


def round_half_up(x: np.ndarray | float) -> np.ndarray:
    """``floor(x + 0.5)`` on floats: the rounding rule of the fake-quant (not half-to-even)."""
    return np.floor(np.asarray(x) + 0.5)


@dataclass(frozen=True)
class Multiplier:
    """A real multiplier ``m`` as ``mantissa / 2**shift`` with ``|mantissa| < 2**(bits-1)``."""

    mantissa: int
    shift: int

    def value(self) -> float:
        return self.mantissa / float(2**self.shift)


def quantize_multiplier(real: float, bits: int = 32, max_shift: int = 62) -> Multiplier:
    """Approximate a float64 ``real`` by ``mantissa / 2**shift`` with the most precision.

    ``mantissa`` is a signed integer with ``|mantissa| <= 2**(bits-1) - 1``; ``shift`` is in
    ``0..max_shift``. This is the single place where scales become integers (called by the
    export, once per channel). Zero maps to ``(0, 0)``.
    """
    if not math.isfinite(real):
        raise FormatError(f"quantize_multiplier: {real!r} is not finite; check the scales that produced it")
    if not 2 <= bits <= 63:
        raise FormatError(f"quantize_multiplier: bits={bits} outside 2..63")
    if real == 0.0:
        return Multiplier(0, 0)
    limit = (1 << (bits - 1)) - 1
    frac, exp = math.frexp(abs(real))  # abs(real) = frac * 2**exp, frac in [0.5, 1)
    shift = (bits - 1) - exp
    shift = min(shift, max_shift)
    if shift < 0:
        raise FormatError(
            f"quantize_multiplier: {real!r} needs more than {bits} bits even with shift 0; "
            "raise mult_bits or rescale the layer"
        )
    num, den = abs(real).as_integer_ratio()  # exact: den is a power of two

    def rounded(s: int) -> int:  # floor(|real| * 2**s + 1/2) in exact integer arithmetic
        return (num * (1 << (s + 1)) + den) // (2 * den)

    mant = rounded(shift)
    while mant > limit and shift > 0:
        shift -= 1
        mant = rounded(shift)
    if mant > limit:
        raise FormatError(f"quantize_multiplier: {real!r} does not fit {bits} bits")
    return Multiplier(-mant if real < 0 else mant, shift)


def requantize_sum(
    inputs: list[np.ndarray],
    multipliers: list[np.ndarray],
    shift: np.ndarray,
    channel_axis: int = 1,
    biases: list[np.ndarray | None] | None = None,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """The requantizer without its output function: ``round_shift(sum_i (x_i + b_i) M_i + o, n)``.

    ``inputs`` are integer arrays of equal shape; ``multipliers``, ``shift``, the optional
    ``biases`` (one per input, ``None`` for no bias, in the units of ``x_i``) and the optional
    ``offset`` (added after the multiplications, at the ``2^-n`` scale) are per output channel
    along ``channel_axis``. The sum is taken in int64; the export guarantees that it cannot overflow.
    """
    if len(inputs) != len(multipliers) or not inputs:
        raise FormatError("requantize: need one multiplier per input and at least one input")
    if biases is None:
        biases = [None] * len(inputs)
    if len(biases) != len(inputs):
        raise FormatError("requantize: need one bias (or None) per input")
    ndim = np.asarray(inputs[0]).ndim
    shape = [1] * ndim
    shape[channel_axis] = -1
    total = np.zeros(np.shape(inputs[0]), dtype=np.int64)
    for x, m, b in zip(inputs, multipliers, biases, strict=True):
        term = _as_int64(x)
        if b is not None:
            term = term + _as_int64(b).reshape(shape)
        total += term * _as_int64(m).reshape(shape)
    if offset is not None:
        total += _as_int64(offset).reshape(shape)
    return round_shift(total, _as_int64(shift).reshape(shape))


def sign(values: np.ndarray | int) -> np.ndarray:
    """The binary (XNOR) activation: ``+1`` where the value is ``>= 0``, else ``-1``."""
    v = _as_int64(values)
    return np.where(v >= 0, np.int64(1), np.int64(-1))


def requantize(
    inputs: list[np.ndarray],
    multipliers: list[np.ndarray],
    shift: np.ndarray,
    out: IntFormat,
    channel_axis: int = 1,
    biases: list[np.ndarray | None] | None = None,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The DESIGN.md requantizer: ``clamp(round_shift(sum_i (x_i + b_i[c]) * M_i[c] + o[c], n[c]), out)``.

    ``inputs`` are int64 arrays of equal shape (an accumulator, a residual branch's codes);
    ``multipliers``, ``shift`` and the optional ``biases`` and ``offset`` are per output channel
    along ``channel_axis`` (see :func:`requantize_sum`). Returns ``(codes, how_many_were_clamped)``.
    """
    return saturate(requantize_sum(inputs, multipliers, shift, channel_axis, biases, offset), out)
