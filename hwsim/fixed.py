"""Fixed-point arithmetic: the one arithmetic contract that every part of the flow obeys.

Place in the flow: everything integer goes through here. The bundle's lowering
(``hwsim.bundle.lowering``) calls :func:`quantize_multiplier` to turn float64 scales into integer
multipliers once; the emulator, the MAC-array model and the RTL scoreboards use
:class:`IntFormat`, :class:`CodeFormat`, :func:`round_shift`, :func:`wrap`, :func:`saturate`,
:func:`requantize` (:func:`requantize_sum` and :func:`sign` for the ``sign`` output function).
Nothing here imports torch; ``qat`` uses the same :class:`CodeFormat`.

Conventions (see docs/export-format.md):

* Bit widths are values: ``IntFormat(bits, signed)`` knows its range and says how to fix a
  value that does not fit; ``CodeFormat`` adds the lattice of a tensor of codes.
* Every narrowing is named: :func:`wrap` (two's complement, as most hardware),
  :func:`saturate` (clamp), :func:`round_shift` (an arithmetic right shift by ``n`` with one of
  :data:`ROUNDING_MODES`, ``half_up`` by default: ``(v + 2**(n-1)) >> n``).
* All array functions take and return ``np.int64`` arrays; widths up to 64 bits are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hwsim.errors import UserError

OverflowMode = Literal["wrap", "saturate"]
OVERFLOW_MODES: tuple[str, ...] = ("wrap", "saturate")

# How round_shift rounds v / 2^n (n >= 1) to an integer; the index of a mode is its code in the RTL
# (rtl_models/requant.v's ROUNDING parameter). docs/export-format.md defines each on both ties.
ROUNDING_MODES: tuple[str, ...] = ("half_up", "half_even", "half_away", "floor", "ceil", "toward_zero")
DEFAULT_ROUNDING = "half_up"
ROUNDING_HELP: dict[str, str] = {
    "half_up": "nearest, ties toward +inf: floor(v/2^n + 1/2) (-2.5 -> -2, 2.5 -> 3)",
    "half_even": "nearest, ties to the even integer (-2.5 -> -2, 2.5 -> 2, 3.5 -> 4; numpy's round)",
    "half_away": "nearest, ties away from zero: sign(v) floor(|v|/2^n + 1/2) (-2.5 -> -3, 2.5 -> 3)",
    "floor": "toward -inf: floor(v/2^n), the plain arithmetic shift (-2.5 -> -3, 2.5 -> 2)",
    "ceil": "toward +inf: ceil(v/2^n) (-2.5 -> -2, 2.5 -> 3)",
    "toward_zero": "truncation: trunc(v/2^n) (-2.5 -> -2, 2.5 -> 2)",
}
WIDTH_RANGE: tuple[int, int] = (1, 64)  # every integer format's width, accumulators included
MULT_BITS_RANGE: tuple[int, int] = (2, 63)  # a requantizer multiplier's width (signed, in int64)
MAX_SHIFT = 62  # the largest right shift of a requantizer (2^(n-1) and the sum stay within int64)

# Exactness limits: every integer of magnitude <= F32_EXACT (F64_EXACT) is a float32 (float64).
F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
I64_MAX = (1 << 63) - 1


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
        lo, hi = WIDTH_RANGE
        if not lo <= int(self.bits) <= hi:
            raise FormatError(
                f"IntFormat.bits={self.bits} is outside the legal range {lo}..{hi}; "
                f"use a width between {lo} and {hi} bits"
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


LATTICES: tuple[str, ...] = ("full", "narrow", "odd", "binary", "ternary")
# Lattices whose storage width is fixed by the lattice: odd needs nominal_bits + 1, binary/ternary 2.
_LATTICE_STORAGE = {"binary": 2, "ternary": 2}


@dataclass(frozen=True)
class CodeFormat:
    """The format of a tensor of codes: storage ``bits``/``signed``, the method's ``nominal_bits``, a lattice.

    The one definition of code formats, for the bundle (graph.yaml's ``format`` mappings) and for
    ``qat``'s quantizers. Lattices: ``full`` (every integer of the storage format), ``narrow``
    (signed, symmetric ``[-(2^(b-1)-1), 2^(b-1)-1]``), ``odd`` (odd integers in
    ``[-(2^k-1), 2^k-1]``, ``k = nominal_bits``, stored in exactly ``k + 1`` bits), ``binary``
    (``{-1, +1}``) and ``ternary`` (``{-1, 0, +1}``), both stored in exactly 2 signed bits. Codes
    are held in int64, so an unsigned format has at most 63 bits.
    """

    bits: int
    signed: bool
    nominal_bits: int | None = None
    lattice: str = "full"

    def __post_init__(self) -> None:
        IntFormat(self.bits, self.signed)  # validates bits (1..64) and signed (bool)
        if self.nominal_bits is None:
            object.__setattr__(self, "nominal_bits", int(self.bits))
        nominal = self.nominal_bits
        if not isinstance(nominal, (int, np.integer)) or isinstance(nominal, bool) or not 1 <= nominal <= 64:
            raise FormatError(f"nominal_bits={nominal!r} is not an int in 1..64")
        if self.lattice not in LATTICES:
            raise FormatError(f"lattice {self.lattice!r} is not one of {', '.join(LATTICES)}")
        if not self.signed and self.bits > 63:
            raise FormatError("unsigned 64-bit codes do not fit int64; use at most 63 unsigned bits")
        if self.lattice != "full" and not self.signed:
            raise FormatError(f"lattice '{self.lattice}' needs a signed format; set signed: true")
        if self.lattice == "odd":
            if self.bits != nominal + 1:
                raise FormatError(
                    f"lattice 'odd' with nominal_bits={nominal} spans ±{(1 << nominal) - 1} and is stored in "
                    f"{nominal + 1} bits, but bits={self.bits}; set bits to {nominal + 1}"
                )
        elif nominal > self.bits:
            raise FormatError(f"nominal_bits={nominal} exceeds bits={self.bits}; nominal_bits <= bits")
        if self.lattice in _LATTICE_STORAGE and self.bits != _LATTICE_STORAGE[self.lattice]:
            raise FormatError(
                f"lattice '{self.lattice}' is stored in 2 bits (signed), but bits={self.bits}; set bits to 2"
            )
        if self.lattice == "narrow" and self.bits < 2:
            raise FormatError("lattice 'narrow' needs at least 2 signed bits; set bits to 2 or more")

    @property
    def int_format(self) -> IntFormat:
        """The storage format (what a register of ``bits`` bits holds)."""
        return IntFormat(self.bits, self.signed)

    @property
    def min(self) -> int:
        """The smallest legal code (lattice-aware)."""
        if self.lattice == "full":
            return self.int_format.min
        return -self.max

    @property
    def max(self) -> int:
        """The largest legal code (lattice-aware)."""
        if self.lattice == "full":
            return self.int_format.max
        if self.lattice == "narrow":
            return (1 << (self.bits - 1)) - 1
        if self.lattice == "odd":
            return (1 << int(self.nominal_bits)) - 1  # type: ignore[arg-type]
        return 1  # binary, ternary

    @property
    def max_abs(self) -> int:
        return max(abs(self.min), abs(self.max))

    @property
    def label(self) -> str:
        """``int4``, ``int4 narrow``, ``int3 (nominal 2 bits) odd``, ..."""
        parts = [self.int_format.name]
        if self.nominal_bits != self.bits:
            parts.append(f"(nominal {self.nominal_bits} bits)")
        if self.lattice != "full":
            parts.append(self.lattice)
        return " ".join(parts)

    def __str__(self) -> str:
        if self.lattice == "binary":
            return f"{self.label} {{-1, +1}}"
        if self.lattice == "ternary":
            return f"{self.label} {{-1, 0, +1}}"
        if self.lattice == "odd":
            return f"{self.label}: odd integers in [{self.min}, {self.max}]"
        return f"{self.label} [{self.min}, {self.max}]"

    def violation(self, codes: Any) -> str | None:
        """Why ``codes`` are not legal codes of this format (dtype, range, lattice), or ``None``.

        Integer arrays are checked as they are; float arrays (a quantizer's codes) must hold
        finite integers. Anything with ``detach()`` (a torch tensor) is read through numpy.
        """
        if hasattr(codes, "detach"):
            codes = codes.detach().cpu().numpy()
        arr = np.asarray(codes)
        if arr.dtype.kind == "f":
            if arr.size and not bool(np.all(np.isfinite(arr))):
                return "a code is not finite"
            if arr.size and not bool(np.all(arr == np.floor(arr))):
                return "a code is not an integer"
        elif arr.dtype.kind not in "iu":
            return f"dtype {arr.dtype} is not an integer dtype"
        if arr.size == 0:
            return None
        lo, hi = arr.min(), arr.max()
        if lo < self.min or hi > self.max:
            return f"codes span [{int(lo)}, {int(hi)}] but {self.label} allows [{self.min}, {self.max}]"
        if self.lattice == "odd" and bool(np.any(arr % 2 == 0)):
            bad = int(arr[arr % 2 == 0].flat[0])
            return f"code {bad} is even but {self} holds odd codes only"
        if self.lattice == "binary" and bool(np.any(arr == 0)):
            return f"code 0 is not in {self}"
        return None

    def contains(self, codes: Any) -> bool:
        """True when every code is an integer inside ``[min, max]`` and on the lattice."""
        return self.violation(codes) is None

    def check(self, codes: Any, where: str = "codes") -> None:
        """Raise :class:`FormatError` when ``codes`` break this format (range and lattice)."""
        problem = self.violation(codes)
        if problem is not None:
            raise FormatError(f"{where}: {problem}; bring the codes into {self} (quantize or clamp them)")

    def to_yaml(self) -> dict[str, Any]:
        """The ``format`` mapping of graph.yaml (``nominal_bits`` and ``lattice`` only where they differ)."""
        out: dict[str, Any] = {"bits": int(self.bits), "signed": bool(self.signed)}
        if self.nominal_bits != self.bits:
            out["nominal_bits"] = int(self.nominal_bits)  # type: ignore[arg-type]
        if self.lattice != "full":
            out["lattice"] = self.lattice
        return out


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


def rounding_code(mode: str) -> int:
    """The RTL's code of a rounding mode (its index in :data:`ROUNDING_MODES`)."""
    check_rounding(mode)
    return ROUNDING_MODES.index(mode)


def check_rounding(mode: Any, where: str = "rounding") -> str:
    """``mode`` if it is one of :data:`ROUNDING_MODES`, else :class:`FormatError` naming them."""
    if not isinstance(mode, str) or mode not in ROUNDING_MODES:
        raise FormatError(f"{where}: {mode!r} is not a rounding mode; use one of {', '.join(ROUNDING_MODES)}")
    return mode


def round_shift(
    values: np.ndarray | int, shift: np.ndarray | int, rounding: str = DEFAULT_ROUNDING
) -> np.ndarray:
    """``v / 2**n`` rounded to an integer by ``rounding`` (:data:`ROUNDING_MODES`); ``n == 0`` is identity.

    ``shift`` broadcasts against ``values`` (per-channel shifts). With ``q = v >> n`` (floor) and
    the remainder ``r = v - q * 2**n`` in ``[0, 2**n)``, every mode adds 0 or 1 to ``q``, so no
    intermediate leaves int64 for any int64 ``v`` (``half_up`` equals ``(v + 2**(n-1)) >> n``):

    * ``half_up``: ``r >= 2^(n-1)``; ``half_even``: ``r > 2^(n-1)``, or ``r == 2^(n-1)`` and ``q`` odd;
    * ``half_away``: ``r > 2^(n-1)``, or ``r == 2^(n-1)`` and ``v >= 0``;
    * ``floor``: never; ``ceil``: ``r > 0``; ``toward_zero``: ``r > 0`` and ``v < 0``.
    """
    check_rounding(rounding)
    v = _as_int64(values)
    n = _as_int64(shift)
    if n.size and (n.min() < 0 or n.max() > MAX_SHIFT):
        raise FormatError(f"round_shift: shift {int(n.min())}..{int(n.max())} outside 0..{MAX_SHIFT}")
    q = np.right_shift(v, n)
    if rounding == "floor":
        return q
    r = np.bitwise_and(v, np.left_shift(np.int64(1), n) - 1)  # v mod 2^n, in [0, 2^n)
    if rounding == "ceil":
        up = r > 0
    elif rounding == "toward_zero":
        up = (r > 0) & (v < 0)
    else:
        half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), np.int64(1))
        if rounding == "half_up":
            up = r >= half
        elif rounding == "half_even":
            up = (r > half) | ((r == half) & (np.bitwise_and(q, 1) == 1))
        else:  # half_away
            up = (r > half) | ((r == half) & (v >= 0))
        up = up & (n > 0)
    return q + up.astype(np.int64)


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


def quantize_multiplier(real: float, bits: int = 32, max_shift: int = MAX_SHIFT) -> Multiplier:
    """Approximate a float64 ``real`` by ``mantissa / 2**shift`` with the most precision.

    ``mantissa`` is a signed integer with ``|mantissa| <= 2**(bits-1) - 1``; ``shift`` is in
    ``0..max_shift``. This is the single place where scales become integers (called by the
    export, once per channel). Zero maps to ``(0, 0)``.
    """
    if not math.isfinite(real):
        raise FormatError(f"quantize_multiplier: {real!r} is not finite; check the scales that produced it")
    if not MULT_BITS_RANGE[0] <= bits <= MULT_BITS_RANGE[1]:
        raise FormatError(
            f"quantize_multiplier: bits={bits} outside {MULT_BITS_RANGE[0]}..{MULT_BITS_RANGE[1]}"
        )
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
    rounding: str = DEFAULT_ROUNDING,
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
    return round_shift(total, _as_int64(shift).reshape(shape), rounding)


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
    rounding: str = DEFAULT_ROUNDING,
) -> tuple[np.ndarray, int]:
    """The requantizer: ``clamp(round_shift(sum_i (x_i + b_i[c]) * M_i[c] + o[c], n[c]), out)``.

    ``inputs`` are int64 arrays of equal shape (an accumulator, a residual branch's codes);
    ``multipliers``, ``shift`` and the optional ``biases`` and ``offset`` are per output channel
    along ``channel_axis`` (see :func:`requantize_sum`); ``rounding`` is the node's mode
    (:func:`round_shift`). Returns ``(codes, how_many_were_clamped)``.
    """
    return saturate(requantize_sum(inputs, multipliers, shift, channel_axis, biases, offset, rounding), out)
