"""The bit-accurate emulator: runs a bundle's integer graph on input codes, exactly as the contract says.

Place in the flow: bundle/ (hwsim.bundle) -> this module -> codes of every tensor, logits, predictions
and per-layer accumulator statistics -> hwsim.compare (against the PyTorch reference) and the
MAC-array model (which must produce the same values). Every MAC goes through hwsim.gemm (exact
GEMM, ``wrap``/``saturate`` accumulator), every requantizer through hwsim.fixed
(``requantize_sum``, then ``clamp`` or ``sign``); a ``maxpool`` takes the max of its windows
(:func:`maxpool_codes`) and has no accumulator, so it has no :class:`LayerStats`. Results do not
depend on the batch size.

:func:`emulate` runs the whole graph from the network input; :func:`emulate_from` runs it from
one node on, given every earlier tensor that node and the later ones read (:func:`live_tensors`),
which is how hwsim.sweep re-runs only the part of the network a change can reach.

Internally feature maps are held channels-last (NHWC) and images go through the graph a few at
a time (tiles), so that each layer's working arrays stay in the CPU caches; the tiles run on
``threads`` threads (default: every core; numpy releases the GIL in BLAS and in its array loops)
with BLAS on one thread inside each, and the results do not depend on how many. Where the
bounds of the formats and weights prove every partial sum an integer that float32 or float64
holds exactly, GEMMs and requantizers run in floats; elsewhere in int64 (``int64_only``: all of
it, the reference the float paths are tested against). :class:`Emulation` returns tensors in
the bundle's layout (``[N, C, H, W]``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import os
import weakref
from collections.abc import Callable, Collection, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from hwsim.bundle import (
    AvgPoolSumNode,
    Bundle,
    Conv2dNode,
    LinearNode,
    MacNode,
    MaxPoolNode,
    Node,
    RequantNode,
    lowering,
    node_macs,
    window_output,
)
from hwsim.errors import UserError
from hwsim.fixed import (
    F32_EXACT,
    F64_EXACT,
    I64_MAX,
    OVERFLOW_MODES,
    WIDTH_RANGE,
    IntFormat,
    bits_for_range,
    requantize_sum,
    sign,
    wrap,
)
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

# Images per step of the fast path: as many as keep the largest per-layer array (the im2col
# matrix, in float32) near this size, so that GEMM outputs and requantizers work in cache
# (measured on 1 MiB-L2 cores: 3-16 MiB about equal on one thread; on two, 8 MiB best, as larger
# steps spend less of their time in Python, which holds the GIL).
_TILE_BYTES = 8 << 20
# The part of a conv's im2col matrix built at once (about one core's L2 cache).
_CHUNK_BYTES = 1 << 20
# The largest check of a float32 requantizer (values of its second input x levels x channels):
# about 0.1 s; 8-bit codes on both sides (16.7 M) would take minutes, and fail it anyway.
_F32_CHECK_SIZE = 1 << 18
# Elements of a float64 requantizer computed at once (their float64 sums: 256 KiB, in L2).
_REQUANT_PIECE = 1 << 15

LayerWidths = tuple[tuple[str, int], ...]


def _check_acc_bits(bits: object, where: str) -> None:
    lo, hi = WIDTH_RANGE
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not lo <= bits <= hi:
        raise UserError(
            f"{where}={bits!r} is outside {lo}..{hi}; pick an accumulator width of {lo} to {hi} bits"
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """Run-time choices: the accumulator width, per-layer exceptions to it, and the overflow mode.

    ``acc_bits``: every MAC layer's accumulator width (``None``: the bundle's ``acc_bits``).
    ``acc_bits_per_layer``: widths of some layers' accumulators instead, by MAC node name; a
    mapping or ``(name, bits)`` pairs, held as pairs sorted by name (so the config stays frozen,
    hashable and comparable). Names are checked against the bundle when a run starts.
    ``overflow``: how every accumulator narrows, ``wrap`` or ``saturate``.
    """

    acc_bits: int | None = None
    overflow: str = "wrap"
    acc_bits_per_layer: Mapping[str, int] | LayerWidths | None = None

    def __post_init__(self) -> None:
        if self.acc_bits is not None:
            _check_acc_bits(self.acc_bits, "acc_bits")
        if self.overflow not in OVERFLOW_MODES:
            raise UserError(f"overflow={self.overflow!r} is not one of {', '.join(OVERFLOW_MODES)}")
        per_layer = self.acc_bits_per_layer
        if per_layer is None:
            return
        try:
            pairs = list(per_layer.items() if isinstance(per_layer, Mapping) else per_layer)
            if not all(len(p) == 2 for p in pairs):
                raise ValueError
        except (TypeError, ValueError):
            raise UserError(
                f"acc_bits_per_layer={per_layer!r}; expected a mapping from MAC layer name to bits "
                "(e.g. {'conv1': 16}) or (name, bits) pairs"
            ) from None
        names = [name for name, _ in pairs]
        for name, bits in pairs:
            if not isinstance(name, str):
                raise UserError(f"acc_bits_per_layer: layer name {name!r} is not a string")
            _check_acc_bits(bits, f"acc_bits_per_layer['{name}']")
            if names.count(name) > 1:
                raise UserError(f"acc_bits_per_layer: layer '{name}' is given more than once; give it once")
        object.__setattr__(
            self, "acc_bits_per_layer", tuple(sorted((name, int(bits)) for name, bits in pairs))
        )

    def acc_format(self, bundle: Bundle) -> IntFormat:
        """The accumulator of every layer without a per-layer width."""
        return IntFormat(int(self.acc_bits) if self.acc_bits is not None else bundle.meta.acc_bits, True)

    def layer_acc_formats(self, bundle: Bundle) -> dict[str, IntFormat]:
        """Each MAC node's accumulator; a name in ``acc_bits_per_layer`` not in the bundle is an error."""
        default = self.acc_format(bundle)
        formats = {node.name: default for node in bundle.mac_nodes}
        for name, bits in self.acc_bits_per_layer or ():
            if name not in formats:
                raise UserError(
                    f"acc_bits_per_layer: no MAC layer named '{name}' in bundle "
                    f"'{bundle.meta.model}'; MAC layers: {', '.join(formats)}"
                )
            formats[name] = IntFormat(bits, True)
        return formats


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

    def fresh(self) -> LayerStats:
        """The same layer with nothing seen yet (what one worker thread fills in)."""
        return replace(self, overflow_count=0, peak_acc_abs=0, elements=0, min_acc=0, max_acc=0)

    def merge(self, other: LayerStats) -> None:
        """Add what ``other`` (the same layer, other images) saw; the order of merges does not matter."""
        if other.elements == 0:
            return
        if self.elements == 0:
            self.min_acc, self.max_acc = other.min_acc, other.max_acc
        else:
            self.min_acc, self.max_acc = min(self.min_acc, other.min_acc), max(self.max_acc, other.max_acc)
        self.elements += other.elements
        self.overflow_count += other.overflow_count
        self.peak_acc_abs = max(self.peak_acc_abs, other.peak_acc_abs)

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


_T = TypeVar("_T")
_MEMO: dict[int, tuple[weakref.ref[Node], dict[Hashable, Any]]] = {}


def _memo(node: Node, key: Hashable, make: Callable[[], _T]) -> _T:
    """``make()``, computed once per node object and ``key`` (the node's constants for a runner:
    weight matrices, bounds, requantizer constants). Nodes are immutable; an entry goes when its
    node does. Sweeps and isolated comparisons build a runner per point, over the same nodes."""
    entry = _MEMO.get(id(node))
    if entry is None or entry[0]() is not node:
        ident = id(node)
        entry = (weakref.ref(node, lambda _, ident=ident: _MEMO.pop(ident, None)), {})
        _MEMO[ident] = entry
    values = entry[1]
    if key not in values:
        values[key] = make()
    return values[key]


def worst_case_acc_bits(node: MacNode, bundle: Bundle) -> int:
    """The accumulator width that holds every sum the weights allow for any input of the input format."""
    fmt = bundle.tensors[node.input].fmt
    assert fmt is not None
    return _memo(
        node, ("worst_case_acc_bits", fmt), functools.partial(lowering.worst_case_acc_bits, node.weight, fmt)
    )


class _Runner:
    """Executes the nodes of a bundle from ``start`` on, a few images at a time, with constants prepared once.

    Two ways to run, with identical results (tested): ``fast`` holds feature maps channels-last in
    float32/float64 wherever the operand bounds prove every intermediate an exactly represented
    integer (BLAS GEMMs, float64 requantizers), and falls back to int64 elsewhere; the reference
    way runs everything in int64 through the public hwsim.gemm and hwsim.fixed functions.
    """

    def __init__(self, bundle: Bundle, config: EmulatorConfig, fast: bool = True, start: int = 0) -> None:
        self.bundle = bundle
        self.nodes = bundle.nodes[start:]
        self.accs = config.layer_acc_formats(bundle)
        self.mode = config.overflow
        self.fast = fast
        self.prepared: dict[str, _Prepared] = {}
        self.stats: dict[str, LayerStats] = {}
        for node in bundle.mac_nodes:
            fmt = bundle.tensors[node.input].fmt
            assert fmt is not None
            self.prepared[node.name] = _memo(
                node, ("prepared", fmt.max_abs), functools.partial(_Prepared.of, node, fmt.max_abs)
            )
        for node in self.nodes:
            if isinstance(node, (Conv2dNode, LinearNode)):
                self.stats[node.name] = LayerStats(
                    node.name,
                    node.op,
                    node_macs(node, bundle),
                    self.accs[node.name].bits,
                    worst_case_acc_bits(node, bundle),
                )
        self.bounds = self._bounds()
        # float64 requantizers (fast); those whose bound from the formats exceeds 2**53 (not
        # "proven") check each step's inputs, whose magnitudes are usually far below the formats'
        self.requant_f64: dict[str, _RequantF64] = {}
        self.requant_f64_proven: set[str] = set()
        # clamp requantizers proven equal to the exact ones in float32 (one input, or a code shortcut)
        self.requant_f32: dict[str, _RequantF32] = {}
        for node in self.nodes:
            if fast and isinstance(node, RequantNode):
                self.requant_f64[node.name] = _memo(
                    node, "requant_f64", functools.partial(_RequantF64.of, node)
                )
                if _requant_bound(node, [self.bounds[i.tensor] for i in node.inputs]) <= F64_EXACT:
                    self.requant_f64_proven.add(node.name)
                    fmt = bundle.tensors[node.output].fmt
                    others = [bundle.tensors[i.tensor].fmt for i in node.inputs[1:]]
                    if node.function == "clamp" and fmt is not None and len(others) <= 1 and all(others):
                        clamp = (fmt.min, fmt.max)
                        second = (others[0].min, others[0].max) if others else None  # type: ignore[union-attr]
                        f32 = _memo(
                            node,
                            ("requant_f32", clamp, second),
                            functools.partial(_RequantF32.of, node, clamp, second),
                        )
                        if f32 is not None and self.bounds[node.inputs[0].tensor] <= F32_EXACT:
                            self.requant_f32[node.name] = f32
        self.tile = max(1, _TILE_BYTES // max([4 * self._operand_elements(n) for n in self.nodes], default=1))

    def _bounds(self) -> dict[str, int]:
        """A bound on ``|value|`` of every tensor, from the formats and weights alone (no data).

        It chooses the exact float paths; any valid bound gives the same values.
        """
        bundle = self.bundle
        bounds: dict[str, int] = {bundle.meta.input_tensor: bundle.input_spec.fmt.max_abs}  # type: ignore
        for node in bundle.nodes:
            if isinstance(node, (Conv2dNode, LinearNode)):
                bounds[node.output] = min(self.prepared[node.name].bound, self.accs[node.name].max + 1)
            elif isinstance(node, RequantNode):
                bounds[node.output] = bundle.tensors[node.output].fmt.max_abs  # type: ignore[union-attr]
            elif isinstance(node, AvgPoolSumNode):
                bounds[node.output] = bounds[node.input] * math.prod(bundle.tensors[node.input].shape[1:])
            elif isinstance(node, MaxPoolNode):
                bounds[node.output] = bounds[node.input]
        return bounds

    def _operand_elements(self, node: Node) -> int:
        """Elements per image of the largest array ``node`` makes (its im2col matrix or its output)."""
        out = math.prod(self.bundle.tensors[node.output].shape)
        if isinstance(node, Conv2dNode):
            k = math.prod(node.weight.shape[1:]) * node.groups
            return max(out, out // node.out_channels * k)
        return out

    def internal(self, name: str, value: np.ndarray) -> np.ndarray:
        """Integers ``[N, C, ...]`` -> how :meth:`run` holds them (fast: channels-last, maybe float)."""
        if not self.fast:
            return value.astype(np.int64, copy=False)
        if value.ndim == 4:
            value = value.transpose(0, 2, 3, 1)
        bound = self.bounds[name]
        dtype = np.float32 if bound <= F32_EXACT else np.float64 if bound <= F64_EXACT else np.int64
        return np.ascontiguousarray(value, dtype=dtype)

    def external(self, value: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`internal` up to the dtype: ``[N, C, ...]`` (a view; store it as int64)."""
        return value.transpose(0, 3, 1, 2) if self.fast and value.ndim == 4 else value

    def fresh_stats(self) -> dict[str, LayerStats]:
        """Empty statistics of every MAC node this runner runs (one set per worker thread)."""
        return {name: stats.fresh() for name, stats in self.stats.items()}

    def run(
        self, values: dict[str, np.ndarray], stats: dict[str, LayerStats] | None = None
    ) -> dict[str, np.ndarray]:
        """One step: the live tensors (as :meth:`internal` holds them) -> every tensor, same layout.

        Accumulator statistics go to ``stats`` (default: the runner's own); the runner itself is
        read-only otherwise, so threads may run steps at once, each with its own ``stats``.
        """
        values = dict(values)
        stats = self.stats if stats is None else stats
        for node in self.nodes:
            if isinstance(node, (Conv2dNode, LinearNode)):
                values[node.output] = self._mac(node, values[node.input], stats[node.name])
            elif isinstance(node, RequantNode):
                values[node.output] = self._requant(node, values)
            elif isinstance(node, AvgPoolSumNode):
                x_in = values[node.input]
                axes = (1, 2) if self.fast else (2, 3)
                if x_in.dtype.kind == "f" and self.bounds[node.output] <= F64_EXACT:
                    values[node.output] = x_in.sum(axis=axes, dtype=np.float64)
                else:
                    values[node.output] = x_in.astype(np.int64).sum(axis=axes)
            elif isinstance(node, MaxPoolNode):
                x_in = values[node.input]
                if not self.fast:
                    x_in = x_in.astype(np.int64, copy=False)
                values[node.output] = maxpool_codes(
                    x_in, node.kernel, node.stride, node.padding, (1, 2) if self.fast else (2, 3)
                )
        return values

    def _mac(self, node: MacNode, x: np.ndarray, stats: LayerStats) -> np.ndarray:
        prep = self.prepared[node.name]
        acc = self.accs[node.name]
        if not self.fast:
            result = gemm_exact(im2col(x, node), prep.w_spec, acc, self.mode, a_max_abs=prep.a_max_abs)
            stats.add(result)
            out = result.acc.transpose(1, 0, 2).reshape(result.acc.shape[1], -1)  # [M, C_out]
            if isinstance(node, LinearNode):
                return out
            n = x.shape[0]
            ho, wo = output_hw(node, x.shape[2], x.shape[3])
            return out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
        n = x.shape[0]
        dtype = prep.dtype
        xd = x.astype(dtype, copy=False)
        spec_order = self.mode == "saturate" and prep.bound > acc.max  # a clamp may depend on the order
        floats = dtype is np.float32 or dtype is np.float64
        if floats and not spec_order and (isinstance(node, LinearNode) or node.groups == 1):
            # exact: every partial sum is an integer the dtype represents, so any summation order
            # gives the exact sums; with no clamp possible, narrowing them is all that is left
            if isinstance(node, LinearNode):
                product = np.matmul(xd.reshape(n, -1), prep.w_spec_typed[0])
            else:
                product = _conv_gemm(xd, node, prep.w_fast[0])
            return self._narrowed(product, acc, stats)
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
            no_overflow = acc.min <= lo and hi <= acc.max
            if no_overflow and (self.mode == "wrap" or prep.bound <= acc.max):
                stats.add(GemmResult(product, 0, max(-lo, hi), lo, hi))
                acc_values = product
            else:
                result = gemm_prepared(a, w, acc, self.mode, prep.a_max_abs, prep.bound)
                stats.add(result)
                acc_values = result.acc
        else:
            result = gemm_prepared(a, w, acc, self.mode, prep.a_max_abs, prep.bound)
            stats.add(result)
            acc_values = result.acc
        # [G, M, N/G] -> [M, N] with output channel = g * N/G + n
        acc_values = (
            acc_values.transpose(1, 0, 2).reshape(a.shape[1], -1) if a.shape[0] > 1 else acc_values[0]
        )
        return acc_values.reshape(out_shape)

    def _narrowed(self, product: np.ndarray, acc: IntFormat, stats: LayerStats) -> np.ndarray:
        """The exact sums ``product`` (float) narrowed to ``acc`` when ``wrap`` or no clamp can happen."""
        lo, hi = (int(product.min()), int(product.max())) if product.size else (0, 0)
        if acc.min <= lo and hi <= acc.max:
            stats.add(GemmResult(product, 0, max(-lo, hi), lo, hi))
            return product
        assert self.mode == "wrap"  # saturate without a possible clamp never leaves the accumulator
        wrapped, count = wrap(product.astype(np.int64), acc)
        stats.add(GemmResult(wrapped, count, max(-lo, hi), lo, hi))
        return wrapped

    def _requant(self, node: RequantNode, values: dict[str, np.ndarray]) -> np.ndarray:
        inputs = [values[i.tensor] for i in node.inputs]
        axis = -1 if self.fast or inputs[0].ndim == 2 else 1
        fmt = self.bundle.tensors[node.output].fmt
        assert fmt is not None
        exact_f32 = self.requant_f32.get(node.name)
        if exact_f32 is not None:
            return exact_f32(inputs)
        exact_f64 = self.requant_f64.get(node.name)
        if exact_f64 is not None and node.name not in self.requant_f64_proven:
            # the formats allow sums beyond 2**53; these inputs' magnitudes may still prove them exact
            peaks = [max(-int(x.min()), int(x.max())) if x.size else 0 for x in inputs]
            if _requant_bound(node, peaks) > F64_EXACT:
                exact_f64 = None
        if exact_f64 is not None and node.function == "clamp":
            # the codes feed the next GEMM: clamped straight into float32 (exact for these codes)
            return exact_f64(inputs, (fmt.min, fmt.max))
        if exact_f64 is not None:
            rounded = exact_f64(inputs)
        else:
            worst = _requant_bound(node, [self.bounds[i.tensor] for i in node.inputs])
            if worst > I64_MAX:
                self._check_int64(node, inputs, axis)
            rounded = requantize_sum(
                [x.astype(np.int64, copy=False) for x in inputs],
                [i.multiplier for i in node.inputs],
                node.shift,
                channel_axis=axis,
                biases=[i.bias for i in node.inputs],
                offset=node.offset,
                rounding=node.rounding,
            )
        if node.function == "sign":
            return (
                np.where(rounded >= 0, rounded.dtype.type(1), rounded.dtype.type(-1))
                if self.fast
                else sign(rounded)
            )
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
        if node.offset is not None:
            total = total + np.abs(node.offset.astype(object))
        half = np.array([(1 << (int(n) - 1)) if n > 0 else 0 for n in node.shift], dtype=object)
        worst = max(int(v) for v in total + half)
        if worst > I64_MAX:
            widths = sorted({self.accs[p.name].bits for p in self.bundle.mac_nodes if p.output in node.reads})
            raise UserError(
                f"requant node '{node.name}': the sum of (x + bias) * multiplier + offset can reach {worst} "
                f"(> 2^63 - 1) for the accumulators seen with acc_bits={'/'.join(map(str, widths)) or '-'}; "
                "the bundle's multipliers are too wide for these inputs; re-export with a smaller "
                "mult_bits, or run with the bundle's acc_bits"
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
    """A bound on ``|sum_i (x_i + b_i) * M_i + o + 2^(n-1)|`` from bounds on ``|x_i|``."""
    total = 0 if node.offset is None else max(abs(int(node.offset.min())), abs(int(node.offset.max())))
    for item, xb in zip(node.inputs, input_bounds, strict=True):
        b = max(abs(int(item.bias.min())), abs(int(item.bias.max()))) if item.bias is not None else 0
        m = max(abs(int(item.multiplier.min())), abs(int(item.multiplier.max())))
        total += (xb + b) * m
    n = int(node.shift.max())
    return total + ((1 << (n - 1)) if n > 0 else 0)


@dataclass(frozen=True, eq=False)
class _RequantF64:
    """:func:`hwsim.fixed.requantize_sum` of one node in float64, channels-last, for sums proven below 2**53.

    With ``v = sum_i (x_i + b_i) * M_i + o``, the value ``u = (v + a) * 2^-n`` is computed as
    ``sum_i x_i * M_i' + c'`` with ``M_i' = M_i * 2^-n`` and ``c' = (sum_i b_i * M_i + o + a) * 2^-n``:
    every operand and every partial sum is an integer below 2**53 times the power of two ``2^-n``,
    so float64 holds each exactly. ``a = 2^(n-1)`` for the ``half_*`` modes (0 for ``n = 0``), else 0;
    :func:`_round_f64` then rounds ``u`` as the node's mode says. The per-channel constants are
    made once per node (:meth:`of`).
    """

    rounding: str
    shift: np.ndarray
    mults: tuple[np.ndarray, ...]  # M_i' per input, float64 [C]
    const: np.ndarray  # c', float64 [C]
    tiles: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict)  # (*mults, const) tiled

    @staticmethod
    def of(node: RequantNode) -> _RequantF64:
        half = node.rounding.startswith("half_")
        scale = np.ldexp(1.0, -node.shift)  # 2^-n per channel, exact
        const = (
            np.where(node.shift > 0, np.ldexp(1.0, np.maximum(node.shift - 1, 0)), 0.0)  # 2^(n-1), exact
            if half
            else np.zeros(node.shift.shape)
        )
        if node.offset is not None:
            const = const + node.offset.astype(np.float64)  # |o| + 2^(n-1) < 2**53: exact
        mults = []
        for item in node.inputs:
            mult = item.multiplier.astype(np.float64)
            if item.bias is not None:
                const = const + item.bias.astype(np.float64) * mult  # |b*M| < 2**53: exact
            mults.append(mult * scale)
        return _RequantF64(node.rounding, node.shift, tuple(mults), const * scale)

    def __call__(self, inputs: list[np.ndarray], clamp: tuple[int, int] | None = None) -> np.ndarray:
        """The rounded sums (float64), or with ``clamp = (lo, hi)`` clamped to it (float32 when exact)."""
        monotone = _MONOTONE_ROUNDING.get(self.rounding)
        if clamp is not None and monotone is not None:
            return self._clamped(inputs, clamp, monotone)
        total = np.multiply(inputs[0], self.mults[0], dtype=np.float64)
        for x, mult in zip(inputs[1:], self.mults[1:], strict=True):
            total += np.multiply(x, mult, dtype=np.float64)
        total += self.const
        if clamp is None:
            return _round_f64(total, self.rounding, self.shift)
        lo, hi = clamp
        out_dtype = np.float32 if max(-lo, hi) <= F32_EXACT else np.float64
        rounded = _round_f64(total, self.rounding, self.shift)
        return np.clip(rounded, lo, hi, out=np.empty(total.shape, out_dtype))

    def _clamped(
        self, inputs: list[np.ndarray], clamp: tuple[int, int], monotone: Callable[..., np.ndarray]
    ) -> np.ndarray:
        """``__call__`` with a clamp, for a rounding that commutes with clamping to integers: clamp
        first, round into the output dtype; in pieces of :data:`_REQUANT_PIECE` elements, whose
        float64 sums stay in the core's cache between the passes."""
        lo, hi = clamp
        out = np.empty(inputs[0].shape, np.float32 if max(-lo, hi) <= F32_EXACT else np.float64)
        out_rows = _channel_rows(out, self.const.shape[0])
        flat = [x.reshape(out_rows.shape) for x in inputs]
        *mults, const = _tiled(self.tiles, (*self.mults, self.const), out_rows.shape[1])
        step = max(1, _REQUANT_PIECE // out_rows.shape[1])
        total = np.empty((min(step, out_rows.shape[0]), out_rows.shape[1]))
        term = np.empty_like(total) if len(inputs) > 1 else total
        for start in range(0, out_rows.shape[0], step):
            stop = min(out_rows.shape[0], start + step)
            t, u = total[: stop - start], term[: stop - start]
            np.multiply(flat[0][start:stop], mults[0], out=t)
            for x, mult in zip(flat[1:], mults[1:], strict=True):
                t += np.multiply(x[start:stop], mult, out=u)
            t += const
            np.clip(t, lo, hi, out=t)
            monotone(t, out=out_rows[start:stop])
        return out


@dataclass(frozen=True, eq=False)
class _RequantF32:
    """A ``clamp`` requantizer in float32, used only where it is proven equal to the exact one.

    ``g = R(clip(fl(fl(x * s) + t) + c), lo, hi))``, ``t = fl(x_2 * s_2)`` for a second input (0 for
    none), with ``s``, ``s_2`` the float32 of ``M * 2^-n``, ``c`` that of :class:`_RequantF64`'s
    constant and ``R`` the node's rounding (floor for ``floor`` and the ``half_*`` modes, ceil,
    trunc). The first input ``x`` is any integer tensor (an accumulator); the second, when there
    is one, a code tensor with few values (a residual add's shortcut). Each float32 operation is
    correctly rounded and monotone, so for ``M > 0`` and each value of ``x_2``, ``g`` is a
    non-decreasing step function of the integer ``x``, like the exact requantizer ``f``; two such
    functions on ``[-bound, bound]`` are equal everywhere exactly when every output level is first
    reached at the same ``x``. :meth:`of` finds those first ``x`` of ``f`` (int64,
    :func:`hwsim.fixed.requantize_sum`) and of ``g`` (the same float32 operations as
    :meth:`__call__`) by bisection, for every channel, level and value of ``x_2``, and returns
    ``None`` unless they all agree (or when a multiplier of ``x`` is not positive, or the check
    would be too large). The default ``bound`` is every integer float32 holds, so one check per
    node serves every accumulator width and every narrowed weight set that feeds it (the sweeps
    run many).
    """

    scales: tuple[np.ndarray, ...]  # float32 [C] per input
    const: np.ndarray  # float32 [C]
    clamp: tuple[int, int]
    rounding: Callable[..., np.ndarray]
    tiles: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict)  # (*scales, const) tiled

    @staticmethod
    def of(
        node: RequantNode,
        clamp: tuple[int, int],
        second: tuple[int, int] | None = None,
        bound: int = F32_EXACT,
    ) -> _RequantF32 | None:
        """The float32 requantizer of ``node`` if it passes the check, else ``None``.

        ``second``: the range ``(min, max)`` of the second input's codes (two-input nodes only).
        """
        lo, hi = clamp
        item = node.inputs[0]
        if len(node.inputs) != (1 if second is None else 2):
            return None
        if bound > F32_EXACT or max(-lo, hi) > F32_EXACT or not bool((item.multiplier > 0).all()):
            return None
        values = np.zeros(1, np.int64) if second is None else np.arange(second[0], second[1] + 1)
        if values.size * (hi - lo) * node.shift.shape[0] > _F32_CHECK_SIZE:
            return None
        extra = [int(np.abs(values).max())] if second is not None else []
        if _requant_bound(node, [bound, *extra]) > I64_MAX:  # the exact side must not overflow
            return None
        candidate = _RequantF32.candidate(node, clamp)
        if not all(np.all(np.isfinite(m)) for m in candidate.scales) or not np.all(candidate.scales[0] > 0):
            return None
        # every (value of the second input, level, channel): [V, L, C]
        levels = np.arange(lo + 1, hi + 1, dtype=np.int64)[None, :, None]
        shape = (values.size, levels.shape[1], node.shift.shape[0])
        others = [np.broadcast_to(values[:, None, None], shape)] if second is not None else []

        def exact(x: np.ndarray) -> np.ndarray:
            v = requantize_sum(
                [x, *others],
                [i.multiplier for i in node.inputs],
                node.shift,
                -1,
                [i.bias for i in node.inputs],
                node.offset,
                node.rounding,
            )
            return np.clip(v, lo, hi)

        def approx(x: np.ndarray) -> np.ndarray:
            floats = [x.astype(np.float32), *(o.astype(np.float32) for o in others)]
            return candidate(floats).astype(np.int64)

        firsts = []
        for fn in (exact, approx):
            left = np.full(shape, -bound, dtype=np.int64)  # the first x with fn(x) >= level lies in
            right = np.full(shape, bound + 1, dtype=np.int64)  # [left, right]; bound + 1: never
            while bool((left < right).any()):
                mid = (left + right) // 2
                reached = fn(np.minimum(mid, bound)) >= levels
                right = np.where(reached, mid, right)
                left = np.where(reached, left, mid + 1)
            firsts.append(left)
        return candidate if np.array_equal(firsts[0], firsts[1]) else None

    @staticmethod
    def candidate(node: RequantNode, clamp: tuple[int, int]) -> _RequantF32:
        """The float32 requantizer of ``node``, not checked (:meth:`of` checks it)."""
        f64 = _RequantF64.of(node)
        scales = tuple(m.astype(np.float32) for m in f64.mults)
        rounding = _MONOTONE_ROUNDING.get(node.rounding, np.floor)
        return _RequantF32(scales, f64.const.astype(np.float32), clamp, rounding)

    def __call__(self, inputs: list[np.ndarray]) -> np.ndarray:
        """float32 codes of float32 integer inputs (channels on the last axis)."""
        y = np.empty(inputs[0].shape, np.float32)
        rows = _channel_rows(y, self.const.shape[0])
        *scales, const = _tiled(self.tiles, (*self.scales, self.const), rows.shape[1])
        np.multiply(inputs[0].reshape(rows.shape), scales[0], out=rows)
        if len(inputs) > 1:
            rows += np.multiply(inputs[1].reshape(rows.shape), scales[1], dtype=np.float32)
        rows += const
        np.clip(rows, *self.clamp, out=rows)
        self.rounding(rows, out=rows)
        return y


def _channel_rows(x: np.ndarray, channels: int) -> np.ndarray:
    """Channels-last ``x`` as rows of whole pixels, a view: ``[N*H, W*C]`` for 4-D, ``[N, C]`` for 2-D.

    Per-channel constants tiled to the row (:func:`_tiled`) then broadcast over long rows, which
    numpy's loops run much faster than rows of a few channels.
    """
    width = x.shape[-2] * channels if x.ndim == 4 else channels
    return x.reshape(-1, width)


def _tiled(
    cache: dict[int, tuple[np.ndarray, ...]], vectors: tuple[np.ndarray, ...], width: int
) -> tuple[np.ndarray, ...]:
    """``vectors`` (per channel) repeated to ``width`` elements, made once per width (in ``cache``)."""
    tiled = cache.get(width)
    if tiled is None:
        tiled = tuple(np.tile(v, width // v.shape[0]) for v in vectors)
        cache[width] = tiled
    return tiled


# Roundings of u that are monotone and map integers to themselves, so that rounding then clamping
# to an integer range equals clamping then rounding (the ties of half_even/half_away do not).
_MONOTONE_ROUNDING = {"half_up": np.floor, "floor": np.floor, "ceil": np.ceil, "toward_zero": np.trunc}


def _round_f64(u: np.ndarray, rounding: str, shift: np.ndarray) -> np.ndarray:
    """Round the exact float64 ``u`` of :class:`_RequantF64` in place (channels on the last axis).

    ``floor``/``ceil``/``toward_zero`` get ``u = v / 2^n``; the ``half_*`` modes ``u = v / 2^n + 1/2``,
    where ``u`` is an integer exactly at a tie (only for ``n >= 1``): ``half_up`` floors it,
    ``half_even`` floors and steps an odd result down at a tie, ``half_away`` steps a negative tie
    (``u < 1/2``) down.
    """
    if rounding in ("half_up", "floor"):
        return np.floor(u, out=u)
    if rounding == "ceil":
        return np.ceil(u, out=u)
    if rounding == "toward_zero":
        return np.trunc(u, out=u)
    r = np.floor(u)
    tie = (r == u) & (shift > 0)
    if rounding == "half_even":
        return r - (tie & (np.remainder(r, 2.0) == 1.0))
    return r - (tie & (u < 0.5))  # half_away


def maxpool_codes(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    axes: tuple[int, int] = (2, 3),
) -> np.ndarray:
    """The ``maxpool`` of docs/export-format.md on codes ``x`` whose H and W are ``axes`` (any dtype).

    Padded positions hold the dtype's smallest value (-inf for floats), so they never win: with
    ``padding < kernel`` every window holds at least one input position. One ``np.maximum`` per
    window offset (``kh * kw`` of them) over strided views; the result has ``x``'s dtype.
    """
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    hax, wax = axes
    ho, wo = window_output((x.shape[hax], x.shape[wax]), kernel, stride, padding)
    if ph or pw:
        lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        widths = [(0, 0)] * x.ndim
        widths[hax], widths[wax] = (ph, ph), (pw, pw)
        x = np.pad(x, widths, constant_values=lowest)
    out: np.ndarray | None = None
    for i in range(kh):
        for j in range(kw):
            index = [slice(None)] * x.ndim
            index[hax] = slice(i, i + sh * (ho - 1) + 1, sh)
            index[wax] = slice(j, j + sw * (wo - 1) + 1, sw)
            window = x[tuple(index)]
            out = window.copy() if out is None else np.maximum(out, window, out=out)
    assert out is not None
    return out


def _conv_gemm(x: np.ndarray, node: Conv2dNode, w: np.ndarray) -> np.ndarray:
    """Channels-last float codes ``[N, H, W, C]`` (one group) @ ``w [kh*kw*C, C_out]``: ``[N, Ho, Wo, Co]``.

    The im2col matrix (K order ``(i, j, c)``) is built a few images at a time in one buffer of
    about :data:`_CHUNK_BYTES`, so that it stays in the core's cache while the GEMM reads it
    (measured faster than one im2col matrix for the whole tile); a 1x1 kernel without padding
    reads the input itself.
    """
    n, _, _, c = x.shape
    kh, kw = node.kernel
    c_out = w.shape[1]
    if (kh, kw) == (1, 1) and node.padding == (0, 0):
        xs = np.ascontiguousarray(x[:, :: node.stride[0], :: node.stride[1]])
        return np.matmul(xs.reshape(-1, c), w).reshape(*xs.shape[:3], c_out)
    patches = _patches(x, node).transpose(0, 1, 2, 4, 5, 3)  # [N, Ho, Wo, kh, kw, C]
    ho, wo = patches.shape[1:3]
    k = kh * kw * c
    out = np.empty((n, ho, wo, c_out), dtype=x.dtype)
    per = max(1, min(n, _CHUNK_BYTES // max(1, ho * wo * k * x.itemsize)))
    buf = np.empty((per, ho, wo, kh, kw, c), dtype=x.dtype)
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        part = buf[: hi - lo]
        np.copyto(part, patches[lo:hi])
        np.matmul(part.reshape(-1, k), w, out=out[lo:hi].reshape(-1, c_out))
    return out


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


def live_tensors(bundle: Bundle, node: str) -> tuple[str, ...]:
    """The tensors that node ``node`` and the nodes after it read but that earlier nodes (or the input) wrote.

    These are what :func:`emulate_from` needs to start at ``node``, in graph order.
    """
    start = _node_index(bundle, node)
    produced_after = {n.output for n in bundle.nodes[start:]}
    live: list[str] = []
    for n in bundle.nodes[start:]:
        for t in n.reads:
            if t not in produced_after and t not in live:
                live.append(t)
    return tuple(live)


def _node_index(bundle: Bundle, node: str) -> int:
    for i, n in enumerate(bundle.nodes):
        if n.name == node:
            return i
    raise UserError(
        f"no node named '{node}' in bundle '{bundle.meta.model}'; nodes: "
        + ", ".join(n.name for n in bundle.nodes)
    )


def emulate(
    bundle: Bundle,
    input_codes: np.ndarray,
    config: EmulatorConfig | None = None,
    keep: bool | Collection[str] = True,
    batch_size: int = 256,
    progress: bool = False,
    int64_only: bool = False,
    threads: int | None = None,
) -> Emulation:
    """Run ``bundle`` on ``input_codes`` ``[N, C, H, W]``.

    ``keep``: return every tensor of the graph (the input, each accumulator after narrowing and
    each code tensor) as int64 ``[N, *shape]`` (``True``), only the tensors named (a collection of
    names) or only the logits (``False``). ``batch_size`` bounds how many images are held at once
    (the fast path takes fewer at a time where that keeps its arrays in cache). ``int64_only`` runs
    every step in int64 through the public hwsim.gemm/hwsim.fixed functions (slow; the cross-check
    of the default path, which gives identical results). ``threads``: how many threads share the
    images (``None``: :func:`default_threads`: every core, or one in a worker process); the
    results do not depend on it.
    """
    spec = bundle.input_spec
    assert spec.fmt is not None
    codes = np.asarray(input_codes)
    if codes.ndim != 4 or tuple(codes.shape[1:]) != spec.shape:
        raise UserError(
            f"input codes: shape {list(codes.shape)}; expected [N, {', '.join(map(str, spec.shape))}]"
            " (hwsim.bundle.quantize_images makes them from uint8 images)"
        )
    spec.fmt.check(codes, f"input codes of tensor '{spec.name}'")
    return _emulate(bundle, 0, {spec.name: codes}, config, keep, batch_size, progress, int64_only, threads)


def emulate_from(
    bundle: Bundle,
    node: str,
    tensors: Mapping[str, np.ndarray],
    config: EmulatorConfig | None = None,
    keep: bool | Collection[str] = False,
    batch_size: int = 256,
    progress: bool = False,
    int64_only: bool = False,
    threads: int | None = None,
) -> Emulation:
    """Run ``bundle`` from node ``node`` on, given the tensors of :func:`live_tensors` ``(bundle, node)``.

    The tensors are integer arrays ``[N, *shape]`` (any integer dtype), as :func:`emulate` returns
    them; code tensors must lie in their formats, accumulators in their layer's accumulator. The
    result equals that of :func:`emulate` on images that produce these tensors (tested); its
    ``layers`` cover the MAC nodes from ``node`` on, and ``keep=True`` returns the given tensors and
    every tensor the run wrote. ``threads`` as for :func:`emulate`.
    """
    start = _node_index(bundle, node)
    need = live_tensors(bundle, node)
    missing = [t for t in need if t not in tensors]
    extra = [t for t in tensors if t not in need]
    if missing or extra:
        raise UserError(
            f"emulate_from node '{node}': "
            + (f"missing tensors {', '.join(missing)}; " if missing else "")
            + (f"tensors {', '.join(extra)} are not read from there on; " if extra else "")
            + f"pass exactly the tensors of live_tensors(bundle, '{node}'): {', '.join(need)}"
        )
    accs = (config or EmulatorConfig()).layer_acc_formats(bundle)
    producers = {n.output: n for n in bundle.mac_nodes}
    arrays: dict[str, np.ndarray] = {}
    images = None
    for name in need:
        value = np.asarray(tensors[name])
        shape = bundle.tensors[name].shape
        images = value.shape[0] if images is None and value.ndim else images
        if value.dtype.kind not in "iu" or tuple(value.shape) != (images, *shape):
            raise UserError(
                f"emulate_from: tensor '{name}': {value.dtype} {list(value.shape)}; expected integers "
                f"[{images if images is not None else 'N'}, {', '.join(map(str, shape))}] (one N for all)"
            )
        fmt = bundle.tensors[name].fmt
        if fmt is not None:
            fmt.check(value, f"emulate_from: codes of tensor '{name}'")
        elif name in producers:
            accs[producers[name].name].check(value, f"emulate_from: accumulator '{name}'")
        arrays[name] = value
    return _emulate(bundle, start, arrays, config, keep, batch_size, progress, int64_only, threads)


def _emulate(
    bundle: Bundle,
    start: int,
    inputs: dict[str, np.ndarray],
    config: EmulatorConfig | None,
    keep: bool | Collection[str],
    batch_size: int,
    progress: bool,
    int64_only: bool,
    threads: int | None,
) -> Emulation:
    """Run ``bundle.nodes[start:]`` on checked ``inputs`` (``[N, ...]`` integers), a few images at a time."""
    config = config or EmulatorConfig()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size={batch_size!r}; expected a positive integer")
    workers = _check_threads(threads)
    runner = _Runner(bundle, config, fast=not int64_only, start=start)
    for name, value in inputs.items():
        if bundle.tensors[name].fmt is not None:
            continue  # codes: checked against their format already
        # the exact float paths rely on these bounds; a real run never exceeds them
        peak = int(np.abs(value.astype(np.int64)).max()) if value.size else 0
        if peak > runner.bounds[name]:
            raise UserError(
                f"emulate_from: accumulator '{name}' holds {peak} in magnitude, more than its layer can "
                f"produce from inputs of its input format ({runner.bounds[name]}); pass the tensor "
                "an emulation of this bundle produced"
            )
    n = next(iter(inputs.values())).shape[0]
    out_name = bundle.meta.output
    written = set(inputs) | {node.output for node in runner.nodes}
    if keep is True:
        names = [t for t in bundle.tensors if t in written]
    elif keep is False:
        names = []
    else:
        names = [keep] if isinstance(keep, str) else list(dict.fromkeys(keep))
        unknown = [t for t in names if t not in written]
        if unknown:
            raise UserError(
                f"keep: tensor '{unknown[0]}' is not given or written by this run; tensors: "
                + ", ".join(t for t in bundle.tensors if t in written)
            )
    kept = {name: np.zeros((n, *bundle.tensors[name].shape), dtype=np.int64) for name in names}
    logits = np.zeros((n, *bundle.output_spec.shape), dtype=np.int64)
    _run_tiles(runner, inputs, {out_name: logits, **kept}, min(batch_size, runner.tile), workers, progress)
    if out_name in kept:  # filled there
        logits[:] = kept[out_name]
    predictions = np.argmax(logits, axis=1) if n else np.zeros(0, dtype=np.int64)
    return Emulation(
        kept, logits, predictions.astype(np.int64), runner.stats, config, config.acc_format(bundle).bits
    )


def run_nodes(
    bundle: Bundle,
    nodes: Collection[str],
    tensors: Mapping[str, np.ndarray],
    config: EmulatorConfig | None = None,
) -> dict[str, np.ndarray]:
    """Run only the named nodes (in the bundle's order) on given tensors; return what they write.

    ``tensors`` holds every tensor the named nodes read and do not write themselves, as integer
    arrays ``[N, *shape]``; they are taken as they are (no format check: hwsim.compare feeds the
    reference's own codes to measure one layer's arithmetic alone). Each node computes exactly
    what it computes inside :func:`emulate`. Returns the tensors the nodes write, int64 ``[N, *shape]``.
    """
    wanted = set(nodes)
    for name in wanted:
        _node_index(bundle, name)
    chosen = tuple(n for n in bundle.nodes if n.name in wanted)
    written = {n.output for n in chosen}
    need = [t for n in chosen for t in n.reads if t not in written]
    missing = [t for t in dict.fromkeys(need) if t not in tensors]
    if missing:
        raise UserError(
            f"run_nodes {', '.join(n.name for n in chosen)}: missing tensors {', '.join(missing)}; "
            "pass every tensor the nodes read"
        )
    runner = _Runner(bundle, config or EmulatorConfig())
    runner.nodes = chosen
    inputs = {t: np.asarray(tensors[t]) for t in dict.fromkeys(need)}
    n = next(iter(inputs.values())).shape[0] if inputs else 0
    out = {t: np.zeros((n, *bundle.tensors[t].shape), dtype=np.int64) for t in written}
    _run_tiles(runner, inputs, out, runner.tile, 1, False)
    return out


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()  # finding the loaded libraries once (it costs ~1 ms a time)


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """A context in which BLAS runs on one thread (for the small GEMMs of a few images).

    Threaded BLAS does not pay for them: its threads spin, and on a busy machine they cost many
    times the work (measured: a 1024 x 144 x 16 GEMM 20x slower on two threads under load);
    the emulator spreads images over threads instead.
    """
    return _blas_controller().limit(limits=1, user_api="blas")


def available_cores() -> int:
    """The CPU cores this process may use (``os.sched_getaffinity``, else ``os.cpu_count``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


_worker_threads: int | None = None  # set by hwsim.execute in a worker process


def set_worker_threads(threads: int | None) -> None:
    """Make ``threads`` the default of every emulation in this process (a worker of
    :mod:`hwsim.execute`: the workers already share the cores); None: back to :func:`default_threads`."""
    global _worker_threads
    _worker_threads = threads


def default_threads() -> int:
    """How many threads one emulation uses unless told: every core, or one in a worker process.

    A worker of :mod:`hwsim.execute` (a local pool's or a Dask worker's) or any process that
    ``multiprocessing`` started is one of several that already spread the work over the cores, so
    it uses one.
    """
    if _worker_threads is not None:
        return _worker_threads
    return 1 if multiprocessing.parent_process() is not None else available_cores()


def _check_threads(threads: object) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise UserError(f"threads={threads!r}; expected a positive number of threads (or None: every core)")
    return int(threads)


def _run_tiles(
    runner: _Runner,
    inputs: Mapping[str, np.ndarray],
    out: Mapping[str, np.ndarray],
    step: int,
    threads: int,
    progress: bool,
) -> None:
    """Run ``runner`` on ``inputs`` ``[N, ...]`` a tile of at most ``step`` images at a time, on ``threads``.

    Each tile's tensors named in ``out`` are written into its rows of those int64 arrays; each
    tile's accumulator statistics are merged into the runner's in tile order. Tiles are
    independent, so any number of threads gives the same results. BLAS runs on one thread inside
    each (:func:`one_blas_thread`).
    """
    n = next(iter(inputs.values())).shape[0] if inputs else 0
    if n == 0:
        return
    step = max(1, min(step, math.ceil(n / threads)))  # at least one tile per thread
    tiles = [(lo, min(n, lo + step)) for lo in range(0, n, step)]

    def work(tile: tuple[int, int]) -> dict[str, LayerStats]:
        lo, hi = tile
        stats = runner.fresh_stats()
        values = runner.run({name: runner.internal(name, v[lo:hi]) for name, v in inputs.items()}, stats)
        for name, store in out.items():
            store[lo:hi] = runner.external(values[name])
        return stats

    workers = min(threads, len(tiles))
    with (
        one_blas_thread(),
        ThreadPoolExecutor(workers) as pool,
        tqdm(total=len(tiles), disable=not progress, desc="emulate", unit="step") as bar,
    ):
        for stats in map(work, tiles) if workers == 1 else pool.map(work, tiles):
            for name, seen in stats.items():
                runner.stats[name].merge(seen)
            bar.update()
