"""Layer -> GEMM mapping and folding onto the array: which tile of the GEMM each fold computes.

Place in the flow: the array model's first step. A ``conv2d``/``linear`` node of the bundle
becomes a :class:`LayerShape` (geometry only), then a :class:`GemmShape`
``Y[M, N] = A[M, K] * W[K, N]`` per group (docs/dataflow.md, "GEMM mapping"), then a list of
:class:`Fold` in execution order for the array's dataflow. ``timing`` counts their cycles,
``systolic`` executes them, ``memory`` sizes their buffers.

Dataflows (``R`` rows, ``C`` columns of PEs): each is one module of ``hwsim.dataflows``, which
says which two GEMM dims a fold tiles over the rows and the columns, which one it streams whole
and the loop order of the folds; :func:`fold_plan` follows those facts for every dataflow. For
example ``ws`` (weight-stationary) holds a ``kt x nt`` tile of W (``kt <= R``, ``nt <= C``),
streams all ``M`` rows of A and runs N-fold outer, K-fold inner.

K-folds always run in ascending order, so every output accumulates over ascending ``k`` in
every dataflow (the order ``saturate`` depends on).

A ``maxpool`` node has no MACs: it becomes a :class:`PoolShape` for the vector unit beside the
array (``cols`` lanes, docs/dataflow.md, "Vector unit"), which ``timing.pool_timing`` and
``memory.pool_memory`` cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.bundle import Bundle, Conv2dNode, LinearNode, MaxPoolNode, Node, window_output
from hwsim.dataflows import dataflow
from hwsim.errors import UserError
from hwsim.hwconfig import ArrayConfig


class _Window:
    """``h_out``/``w_out`` of a ``kh x kw`` window sliding over an ``h x w`` input (one rule:
    :func:`hwsim.bundle.window_output`), for the shapes below that declare those fields."""

    h: int
    w: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def h_out(self) -> int:
        return window_output((self.h, self.w), (self.kh, self.kw), self.stride, self.padding)[0]

    @property
    def w_out(self) -> int:
        return window_output((self.h, self.w), (self.kh, self.kw), self.stride, self.padding)[1]


@dataclass(frozen=True)
class LayerShape(_Window):
    """The geometry of one conv/linear layer (per image); ``h``/``w`` are the unpadded input size."""

    name: str
    op: str
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int = 1
    kw: int = 1
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def __post_init__(self) -> None:
        for attr in ("c_in", "h", "w", "c_out", "kh", "kw", "groups"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"layer '{self.name}': {attr}={value!r} must be a positive integer")
        if self.c_in % self.groups or self.c_out % self.groups:
            raise UserError(
                f"layer '{self.name}': groups={self.groups} must divide c_in={self.c_in} "
                f"and c_out={self.c_out}"
            )
        if self.h_out < 1 or self.w_out < 1:
            raise UserError(
                f"layer '{self.name}': a {self.kh}x{self.kw} kernel does not fit the "
                f"{self.h}x{self.w} input with padding {self.padding}"
            )

    @property
    def k(self) -> int:
        """GEMM K per group: ``C_in/groups * kh * kw``."""
        return self.c_in // self.groups * self.kh * self.kw

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c_in

    def macs(self, batch: int = 1) -> int:
        return self.h_out * self.w_out * self.c_out * self.k * batch


@dataclass(frozen=True)
class GemmShape:
    """``groups`` independent GEMMs ``Y[M, N] = A[M, K] * W[K, N]``."""

    m: int
    k: int
    n: int
    groups: int = 1

    def __post_init__(self) -> None:
        for attr in ("m", "k", "n", "groups"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"GEMM {attr}={value!r} must be a positive integer")

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.groups


def gemm_shape(layer: LayerShape, batch: int = 1) -> GemmShape:
    """The GEMM of ``layer`` for ``batch`` images: ``M = H_out*W_out*batch``, ``K``, ``N = C_out/groups``."""
    return GemmShape(
        m=layer.h_out * layer.w_out * batch, k=layer.k, n=layer.c_out // layer.groups, groups=layer.groups
    )


def scalesim_gemm_shape(layer: LayerShape, batch: int = 1) -> GemmShape:
    """The GEMM SCALE-Sim 3.0.0 builds for ``layer``: outputs ``ceil((H - R + s)/s)`` of the pre-padded input.

    SCALE-Sim's topology gives the already padded input ``H + 2p``; it sizes the output as
    ``ceil((H + 2p - kh + s) / s)``, which exceeds PyTorch's ``floor((H + 2p - kh) / s) + 1`` by one
    when ``(H + 2p - kh)`` is not a multiple of ``s`` (ResNet20's stride-2 layers).
    """
    hp = layer.h + 2 * layer.padding[0]
    wp = layer.w + 2 * layer.padding[1]
    sh, sw = layer.stride
    h_out = math.ceil((hp - layer.kh + sh) / sh)
    w_out = math.ceil((wp - layer.kw + sw) / sw)
    return GemmShape(m=h_out * w_out * batch, k=layer.k, n=layer.c_out // layer.groups, groups=layer.groups)


@dataclass(frozen=True)
class Fold:
    """One pass of the array: the GEMM tile ``[m0:m0+mt] x [k0:k0+kt] x [n0:n0+nt]`` it computes.

    The stationary tile fits the array; the dataflow's streamed dimension is whole (``ws``: all
    of M, ``os``: all of K, ``is``: all of N).
    """

    index: int
    m0: int
    mt: int
    k0: int
    kt: int
    n0: int
    nt: int

    @property
    def first_k_fold(self) -> bool:
        return self.k0 == 0


def _tiles(size: int, step: int) -> list[tuple[int, int]]:
    return [(start, min(step, size - start)) for start in range(0, size, step)]


def fold_plan(gemm: GemmShape, array: ArrayConfig) -> list[Fold]:
    """The folds of one group's GEMM, in the order the dataflow runs them (outer, then inner tiles)."""
    flow = dataflow(array.dataflow)
    side = {flow.rows_dim: array.rows, flow.cols_dim: array.cols}
    outer, inner = flow.outer_dim, flow.inner_dim
    span = {dim: (0, getattr(gemm, dim)) for dim in ("m", "k", "n")}  # the streamed dim stays whole
    folds: list[Fold] = []
    for outer_tile in _tiles(getattr(gemm, outer), side[outer]):
        span[outer] = outer_tile
        for inner_tile in _tiles(getattr(gemm, inner), side[inner]):
            span[inner] = inner_tile
            folds.append(Fold(len(folds), *span["m"], *span["k"], *span["n"]))
    return folds


def fold_count(gemm: GemmShape, array: ArrayConfig) -> int:
    """How many folds the whole layer (all groups) takes."""
    return dataflow(array.dataflow).fold_count(gemm, array) * gemm.groups


def layer_from_node(node: Node, bundle: Bundle) -> LayerShape:
    """The :class:`LayerShape` of a bundle's ``conv2d`` or ``linear`` node."""
    if isinstance(node, Conv2dNode):
        c_in, h, w = bundle.tensors[node.input].shape
        kh, kw = node.kernel
        return LayerShape(
            name=node.name,
            op="conv2d",
            c_in=int(c_in),
            h=int(h),
            w=int(w),
            c_out=node.out_channels,
            kh=kh,
            kw=kw,
            stride=tuple(node.stride),
            padding=tuple(node.padding),
            groups=int(node.groups),
        )
    if isinstance(node, LinearNode):
        (features,) = bundle.tensors[node.input].shape
        return LayerShape(name=node.name, op="linear", c_in=int(features), h=1, w=1, c_out=node.out_channels)
    vector = " (a maxpool runs on the vector unit: pool_from_node)" if node.op == "maxpool" else ""
    raise UserError(
        f"node '{node.name}' ({node.op}) does not run on the MAC array; only conv2d and linear do{vector}"
    )


@dataclass(frozen=True)
class PoolShape(_Window):
    """The geometry of one ``maxpool`` node (per image), the vector unit's work; ``h``/``w`` unpadded."""

    name: str
    op: str
    c: int
    h: int
    w: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def window(self) -> int:
        """Positions per window (``kh * kw``, padded ones included): the comparisons per output."""
        return self.kh * self.kw

    def inputs(self, batch: int = 1) -> int:
        """Input codes: ``C * H * W * batch``."""
        return self.c * self.h * self.w * batch

    def outputs(self, batch: int = 1) -> int:
        """Output codes: ``C * H_out * W_out * batch``."""
        return self.c * self.h_out * self.w_out * batch


def pool_from_node(node: MaxPoolNode, bundle: Bundle) -> PoolShape:
    """The :class:`PoolShape` of a bundle's ``maxpool`` node."""
    c, h, w = (int(v) for v in bundle.tensors[node.input].shape)
    kh, kw = node.kernel
    return PoolShape(node.name, node.op, c, h, w, kh, kw, tuple(node.stride), tuple(node.padding))


def layers_from_bundle(bundle: Bundle) -> list[LayerShape]:
    """Every MAC layer of a bundle, in execution order."""
    return [layer_from_node(n, bundle) for n in bundle.mac_nodes]
