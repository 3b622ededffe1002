"""The bit-accurate emulator: runs a bundle's integer graph on input codes, exactly as the contract says.

Place in the flow: bundle/ (hwsim.ir) -> this module -> codes of every tensor, logits, predictions
and per-layer accumulator statistics -> hwsim.compare (against the PyTorch reference) and the
MAC-array model (which must produce the same values). Every MAC goes through hwsim.gemm (exact
GEMM, ``wrap``/``saturate`` accumulator), every requantizer through hwsim.fixed
(``requantize_sum``, then ``clamp`` or ``sign``). Results do not depend on the batch size.

Internally feature maps are held channels-last (NHWC); :class:`Emulation` returns them in the
bundle's layout (``[N, C, H, W]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from hwsim.errors import UserError
from hwsim.fixed import OVERFLOW_MODES, IntFormat, bits_for_range, requantize_sum, sign
from hwsim.gemm import (
    GemmResult,
    _patches,
    abs_bound,
    gemm_exact,
    gemm_prepared,
    im2col,
    operand_dtype,
    output_hw,
    weight_matrix,
)
from hwsim.ir import AvgPoolSumNode, Bundle, Conv2dNode, LinearNode, MacNode, RequantNode, node_macs

_I64_MAX = (1 << 63) - 1
_F64_EXACT = 1 << 53
_F32_EXACT = 1 << 24


@dataclass(frozen=True)
class EmulatorConfig:
    """Run-time choices: the accumulator width (``None``: the bundle's ``acc_bits``) and the overflow mode."""

    acc_bits: int | None = None
    overflow: str = "wrap"

    def __post_init__(self) -> None:
        bits = self.acc_bits
        if bits is not None and (
            not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= 64
        ):
            raise UserError(f"acc_bits={bits!r} is outside 1..64; pick an accumulator width of 1 to 64 bits")
        if self.overflow not in OVERFLOW_MODES:
            raise UserError(f"overflow={self.overflow!r} is not one of {', '.join(OVERFLOW_MODES)}")

    def acc_format(self, bundle: Bundle) -> IntFormat:
        return IntFormat(int(self.acc_bits) if self.acc_bits is not None else bundle.meta.acc_bits, True)


@dataclass
class LayerStats:
    """Accumulator statistics of one MAC node (``conv2d``/``linear``) over every image emulated.

    ``elements``: accumulator outputs seen; ``overflow_count``: those changed by narrowing;
    ``peak_acc_abs``/``min_acc``/``max_acc``: over the exact sums; ``min_safe_acc_bits_observed``:
    the narrowest signed width holding every exact sum seen (``None`` before any);
    ``min_safe_acc_bits_worst``: the narrowest width holding any sum the weights and the input
    format allow (per output channel, ``sum_k max(W*x)`` over ``x`` in the input format's range).
    """

    name: str
    op: str
    macs: int
    acc_bits: int
    min_safe_acc_bits_worst: int
    overflow_count: int = 0
    peak_acc_abs: int = 0
    elements: int = 0
    min_acc: int = 0
    max_acc: int = 0

    @property
    def min_safe_acc_bits_observed(self) -> int | None:
        if self.elements == 0:
            return None
        return bits_for_range(min(self.min_acc, 0), max(self.max_acc, 0), True)

    def add(self, result: GemmResult) -> None:
        if result.acc.size == 0:
            return
        if self.elements == 0:
            self.min_acc, self.max_acc = result.min_sum, result.max_sum
        else:
            self.min_acc, self.max_acc = min(self.min_acc, result.min_sum), max(self.max_acc, result.max_sum)
        self.elements += int(result.acc.size)
        self.overflow_count += result.overflow_count
        self.peak_acc_abs = max(self.peak_acc_abs, result.peak_abs)


@dataclass
class Emulation:
    """What :func:`emulate` produced: every tensor (when ``keep``), the logits codes and predictions."""

    tensors: dict[str, np.ndarray]
    logits: np.ndarray
    predictions: np.ndarray
    layers: dict[str, LayerStats]
    config: EmulatorConfig = field(default_factory=EmulatorConfig)
    acc_bits: int = 0


def worst_case_acc_bits(node: MacNode, bundle: Bundle) -> int:
    """The accumulator width that holds every sum the weights allow for any input of the input format."""
    fmt = bundle.tensors[node.input].fmt
    assert fmt is not None
    w = node.weight.reshape(node.weight.shape[0], -1)
    if w.size == 0:
        return 1
    wmax = max(abs(int(w.min())), abs(int(w.max())))
    exact_int64 = wmax * w.shape[1] * max(abs(fmt.min), abs(fmt.max)) <= _I64_MAX
    wv = w if exact_int64 else w.astype(object)
    pos = np.where(wv > 0, wv, 0).sum(axis=1)
    neg = np.where(wv < 0, wv, 0).sum(axis=1)
    # For x in [lo, hi]: max of w*x is w*hi for w > 0 and w*lo for w < 0; the min mirrors it.
    hi = max(int(v) for v in pos * fmt.max + neg * fmt.min)
    lo = min(int(v) for v in pos * fmt.min + neg * fmt.max)
    return bits_for_range(min(lo, 0), max(hi, 0), True)


class _Runner:
    """Executes the nodes of one bundle batch by batch, with per-node constants prepared once.

    Two ways to run, with identical results (tested): ``fast`` holds feature maps channels-last in
    float32/float64 wherever the operand bounds prove every intermediate an exactly represented
    integer (BLAS GEMMs, float64 requantizers), and falls back to int64 elsewhere; the reference
    way runs everything in int64 through the public hwsim.gemm and hwsim.fixed functions.
    """

    def __init__(self, bundle: Bundle, config: EmulatorConfig, fast: bool = True) -> None:
        self.bundle = bundle
        self.acc = config.acc_format(bundle)
        self.mode = config.overflow
        self.fast = fast
        self.prepared: dict[str, _Prepared] = {}
        self.stats: dict[str, LayerStats] = {}
        for node in bundle.mac_nodes:
            fmt = bundle.tensors[node.input].fmt
            assert fmt is not None
            self.prepared[node.name] = _Prepared.of(node, fmt.max_abs)
            self.stats[node.name] = LayerStats(
                node.name, node.op, node_macs(node, bundle), self.acc.bits, worst_case_acc_bits(node, bundle)
            )

    def run(self, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """One batch: input codes ``[N, C, H, W]`` -> every tensor (fast: channels-last, maybe float)."""
        x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if self.fast else x_nchw
        values: dict[str, np.ndarray] = {self.bundle.meta.input_tensor: x}
        # |value| bound of every tensor, for choosing exact float paths
        bounds: dict[str, int] = {self.bundle.meta.input_tensor: self.bundle.input_spec.fmt.max_abs}  # type: ignore
        for node in self.bundle.nodes:
            if isinstance(node, (Conv2dNode, LinearNode)):
                values[node.output], bounds[node.output] = self._mac(node, values[node.input])
            elif isinstance(node, RequantNode):
                values[node.output] = self._requant(node, values, bounds)
                bounds[node.output] = self.bundle.tensors[node.output].fmt.max_abs  # type: ignore[union-attr]
            elif isinstance(node, AvgPoolSumNode):
                x_in = values[node.input]
                area = math.prod(self.bundle.tensors[node.input].shape[1:])
                bound = bounds[node.input] * area
                axes = (1, 2) if self.fast else (2, 3)
                if x_in.dtype.kind == "f" and bound <= _F64_EXACT:
                    values[node.output] = x_in.sum(axis=axes, dtype=np.float64)
                else:
                    values[node.output] = x_in.astype(np.int64).sum(axis=axes)
                bounds[node.output] = bound
        return values

    def _mac(self, node: MacNode, x: np.ndarray) -> tuple[np.ndarray, int]:
        prep = self.prepared[node.name]
        stats = self.stats[node.name]
        if not self.fast:
            result = gemm_exact(im2col(x, node), prep.w_spec, self.acc, self.mode, a_max_abs=prep.a_max_abs)
            stats.add(result)
            acc = result.acc.transpose(1, 0, 2).reshape(result.acc.shape[1], -1)  # [M, C_out]
            if isinstance(node, LinearNode):
                return acc, self.acc.max + 1
            n = x.shape[0]
            ho, wo = output_hw(node, x.shape[2], x.shape[3])
            return acc.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2), self.acc.max + 1
        n = x.shape[0]
        dtype = prep.dtype
        xd = x.astype(dtype, copy=False)
        spec_order = self.mode == "saturate" and prep.bound > self.acc.max
        if isinstance(node, LinearNode):
            a = xd.reshape(1, n, -1)
            out_shape: tuple[int, ...] = (n, node.out_channels)
        else:
            a, (ho, wo) = _im2col_nhwc(xd, node, spec_order)
            out_shape = (n, ho, wo, node.out_channels)
        w = prep.w_spec_typed if spec_order or isinstance(node, LinearNode) else prep.w_fast
        acc_values: np.ndarray
        if dtype is np.float32 or dtype is np.float64:
            product = np.matmul(a, w)  # exact: every partial sum is an integer the dtype represents
            lo, hi = (int(product.min()), int(product.max())) if product.size else (0, 0)
            no_overflow = self.acc.min <= lo and hi <= self.acc.max
            if no_overflow and (self.mode == "wrap" or prep.bound <= self.acc.max):
                stats.add(GemmResult(product, 0, max(-lo, hi), lo, hi))
                acc_values, bound = product, min(prep.bound, self.acc.max + 1)
            else:
                result = gemm_prepared(a, w, self.acc, self.mode, prep.a_max_abs, prep.bound)
                stats.add(result)
                acc_values, bound = result.acc, self.acc.max + 1
        else:
            result = gemm_prepared(a, w, self.acc, self.mode, prep.a_max_abs, prep.bound)
            stats.add(result)
            acc_values, bound = result.acc, min(prep.bound, self.acc.max + 1)
        # [G, M, N/G] -> [M, N] with output channel = g * N/G + n
        acc_values = (
            acc_values.transpose(1, 0, 2).reshape(a.shape[1], -1) if a.shape[0] > 1 else acc_values[0]
        )
        return acc_values.reshape(out_shape), bound

    def _requant(
        self, node: RequantNode, values: dict[str, np.ndarray], bounds: dict[str, int]
    ) -> np.ndarray:
        inputs = [values[i.tensor] for i in node.inputs]
        axis = -1 if self.fast or inputs[0].ndim == 2 else 1
        worst = _requant_bound(node, [bounds[i.tensor] for i in node.inputs])
        if self.fast and worst <= _F64_EXACT:
            rounded = _requantize_sum_f64(node, inputs)
        else:
            if worst > _I64_MAX:
                self._check_int64(node, inputs, axis)
            rounded = requantize_sum(
                [x.astype(np.int64, copy=False) for x in inputs],
                [i.multiplier for i in node.inputs],
                node.shift,
                channel_axis=axis,
                biases=[i.bias for i in node.inputs],
            )
        if node.function == "sign":
            return (
                np.where(rounded >= 0, rounded.dtype.type(1), rounded.dtype.type(-1))
                if self.fast
                else sign(rounded)
            )
        fmt = self.bundle.tensors[node.output].fmt
        assert fmt is not None
        if rounded.dtype.kind == "f" and fmt.max_abs <= _F32_EXACT:
            # the codes feed the next GEMM: clamp straight into float32 (exact for these codes)
            return np.clip(rounded, fmt.min, fmt.max, out=np.empty(rounded.shape, np.float32))
        return np.clip(rounded, fmt.min, fmt.max)

    def _check_int64(self, node: RequantNode, inputs: list[np.ndarray], axis: int) -> None:
        """Refuse to round a sum that int64 cannot hold (the export must pick widths that prevent it)."""
        channels = inputs[0].shape[axis]
        total = np.zeros(channels, dtype=object)
        for item, x in zip(node.inputs, inputs, strict=True):
            flat = np.moveaxis(x.astype(np.int64, copy=False), axis, -1).reshape(-1, channels)
            if flat.shape[0] == 0:
                return
            hi = flat.max(axis=0).astype(object)
            lo = flat.min(axis=0).astype(object)
            bias = item.bias.astype(object) if item.bias is not None else 0
            biggest = np.maximum(abs(hi + bias), abs(lo + bias))
            total = total + biggest * np.abs(item.multiplier.astype(object))
        half = np.array([(1 << (int(n) - 1)) if n > 0 else 0 for n in node.shift], dtype=object)
        worst = max(int(v) for v in total + half)
        if worst > _I64_MAX:
            raise UserError(
                f"requant node '{node.name}': the sum of (x + bias) * multiplier can reach {worst} "
                f"(> 2^63 - 1) for the accumulators seen with acc_bits={self.acc.bits}; the bundle's "
                "multipliers are too wide for these inputs; re-export with a smaller mult_bits, "
                "or run with the bundle's acc_bits"
            )


@dataclass(frozen=True, eq=False)
class _Prepared:
    """Per MAC node: weights as GEMM matrices (spec K order and the fast order) and the exactness bound."""

    w_spec: np.ndarray  # int64 [G, K, N/G], K order of the spec
    w_spec_typed: np.ndarray  # w_spec in dtype
    w_fast: np.ndarray  # dtype [G, K, N/G], K order (i, j, c) of _im2col_nhwc(spec_order=False)
    a_max_abs: int
    bound: int
    dtype: type[np.generic]

    @staticmethod
    def of(node: MacNode, a_max_abs: int) -> _Prepared:
        w_spec = weight_matrix(node)
        bound = abs_bound(a_max_abs, w_spec)
        dtype = operand_dtype(bound)
        if dtype is np.object_:
            dtype = np.int64  # gemm_prepared widens to Python ints itself
        if isinstance(node, Conv2dNode):
            w = np.asarray(node.weight, dtype=np.int64)  # [C_out, C_in/g, kh, kw]
            g = node.groups
            w_fast = np.ascontiguousarray(
                w.transpose(0, 2, 3, 1).reshape(g, w.shape[0] // g, -1).transpose(0, 2, 1)
            )
        else:
            w_fast = w_spec
        return _Prepared(w_spec, w_spec.astype(dtype), w_fast.astype(dtype), a_max_abs, bound, dtype)


def _requant_bound(node: RequantNode, input_bounds: list[int]) -> int:
    """A bound on ``|sum_i (x_i + b_i) * M_i + 2^(n-1)|`` from bounds on ``|x_i|``."""
    total = 0
    for item, xb in zip(node.inputs, input_bounds, strict=True):
        b = max(abs(int(item.bias.min())), abs(int(item.bias.max()))) if item.bias is not None else 0
        m = max(abs(int(item.multiplier.min())), abs(int(item.multiplier.max())))
        total += (xb + b) * m
    n = int(node.shift.max())
    return total + ((1 << (n - 1)) if n > 0 else 0)


def _requantize_sum_f64(node: RequantNode, inputs: list[np.ndarray]) -> np.ndarray:
    """:func:`hwsim.fixed.requantize_sum` in float64, channels-last, for sums proven below 2**53.

    With ``v = sum_i (x_i + b_i) * M_i`` and ``h = 2^(n-1)`` (0 for ``n = 0``), round_shift is
    ``floor((v + h) * 2^-n)``. It is computed as ``floor(sum_i x_i * M_i' + c')`` with
    ``M_i' = M_i * 2^-n`` and ``c' = (sum_i b_i * M_i + h) * 2^-n``: every operand and every partial
    sum is an integer below 2**53 times the power of two ``2^-n``, so float64 holds each exactly.
    """
    scale = np.ldexp(1.0, -node.shift)  # 2^-n per channel, exact
    const = np.where(node.shift > 0, np.ldexp(1.0, np.maximum(node.shift - 1, 0)), 0.0)  # h, exact
    total: np.ndarray | None = None
    for item, x in zip(node.inputs, inputs, strict=True):
        mult = item.multiplier.astype(np.float64)
        if item.bias is not None:
            const = const + item.bias.astype(np.float64) * mult  # |b*M| < 2**53: exact
        if total is None:
            total = np.multiply(x, mult * scale, dtype=np.float64)
        else:
            total += np.multiply(x, mult * scale, dtype=np.float64)
    assert total is not None
    total += const * scale
    return np.floor(total, out=total)


def _im2col_nhwc(x: np.ndarray, node: Conv2dNode, spec_order: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """Channels-last codes ``[N, H, W, C]`` -> ``A [groups, N*H_out*W_out, K]``.

    ``spec_order``: K order ``(c, i, j)`` of the spec (needed by ``saturate``); otherwise ``(i, j, c)``,
    which copies faster and gives the same exact sums.
    """
    patches = _patches(x, node)  # [N, Ho, Wo, C, kh, kw]
    n, ho, wo, c, kh, kw = patches.shape
    if not spec_order:
        patches = patches.transpose(0, 1, 2, 4, 5, 3)  # [N, Ho, Wo, kh, kw, C]
    g = node.groups
    cg = c // g
    if g == 1:
        return patches.reshape(1, n * ho * wo, c * kh * kw), (ho, wo)
    parts = [
        patches[..., gi * cg : (gi + 1) * cg, :, :] if spec_order else patches[..., gi * cg : (gi + 1) * cg]
        for gi in range(g)
    ]
    return np.stack([p.reshape(n * ho * wo, cg * kh * kw) for p in parts]), (ho, wo)


def emulate(
    bundle: Bundle,
    input_codes: np.ndarray,
    config: EmulatorConfig | None = None,
    keep: bool = True,
    batch_size: int = 256,
    progress: bool = False,
    int64_only: bool = False,
) -> Emulation:
    """Run ``bundle`` on ``input_codes`` ``[N, C, H, W]``.

    ``keep``: return every tensor of the graph (the input, each accumulator after narrowing and
    each code tensor) as int64 ``[N, *shape]``; otherwise only the logits. ``int64_only`` runs every
    step in int64 through the public hwsim.gemm/hwsim.fixed functions (slow; the cross-check of the
    default path, which gives identical results).
    """
    config = config or EmulatorConfig()
    spec = bundle.input_spec
    assert spec.fmt is not None
    codes = np.asarray(input_codes)
    if codes.ndim != 4 or tuple(codes.shape[1:]) != spec.shape:
        raise UserError(
            f"input codes: shape {list(codes.shape)}; expected [N, {', '.join(map(str, spec.shape))}]"
            " (hwsim.ir.quantize_images makes them from uint8 images)"
        )
    spec.fmt.check(codes, f"input codes of tensor '{spec.name}'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size={batch_size!r}; expected a positive integer")
    codes = codes.astype(np.int64, copy=False)
    fast = not int64_only
    runner = _Runner(bundle, config, fast=fast)
    n = codes.shape[0]
    out_name = bundle.meta.output
    logits = np.zeros((n, *bundle.output_spec.shape), dtype=np.int64)
    kept: dict[str, np.ndarray] = {}
    if keep:
        kept = {
            name: np.zeros((n, *t.shape), dtype=np.int64)
            for name, t in bundle.tensors.items()
            if name == bundle.meta.input_tensor or bundle.producer(name) is not None
        }
    starts = range(0, n, batch_size)
    for start in tqdm(
        starts, total=math.ceil(n / batch_size), disable=not progress, desc="emulate", unit="batch"
    ):
        stop = min(n, start + batch_size)
        values = runner.run(codes[start:stop])
        logits[start:stop] = values[out_name]
        for name, store in kept.items():
            v = values[name]
            store[start:stop] = v.transpose(0, 3, 1, 2) if (fast and v.ndim == 4) else v
    predictions = np.argmax(logits, axis=1) if n else np.zeros(0, dtype=np.int64)
    return Emulation(kept, logits, predictions.astype(np.int64), runner.stats, config, runner.acc.bits)
