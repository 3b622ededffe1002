"""The bundle in memory: typed tensors, nodes, the reference batch and :class:`Bundle`.

Place in the flow: ``hwsim.bundle.load`` (from disk) and ``hwsim.bundle.build`` (in memory) produce
these frozen dataclasses; the emulator, the MAC-array model, ``hwsim compare``, the sweeps and the
RTL vectors read them. The format they stand for is docs/export-format.md; its one spelling in
graph.yaml is ``hwsim.bundle.schema``. Nothing here validates: a :class:`Bundle` only comes from
the loader, which checks every rule once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hwsim.errors import UserError
from hwsim.fixed import DEFAULT_ROUNDING, CodeFormat, FormatError, IntFormat


class BundleError(UserError):
    """A malformed bundle: ``<file>: node '<name>', field '<field>': <problem>; expected <...>; <fix>``."""


@dataclass(frozen=True)
class TensorSpec:
    """A tensor between nodes: ``codes`` (with format and scale) or ``acc`` (a MAC accumulator)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    fmt: CodeFormat | None
    scale: float | None


@dataclass(frozen=True, eq=False)
class Conv2dNode:
    """``conv2d``: input codes ``[C, H, W]`` -> accumulator ``[C_out, H_out, W_out]``."""

    name: str
    input: str
    output: str
    weight: np.ndarray  # int64 [C_out, C_in/groups, kh, kw]
    weight_key: str
    weight_format: CodeFormat
    weight_scale: np.ndarray  # float64 [C_out] (informational)
    weight_scale_key: str
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    op: ClassVar[str] = "conv2d"

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class LinearNode:
    """``linear``: input codes ``[F]`` -> accumulator ``[N]`` (a 1x1 conv on a 1x1 map)."""

    name: str
    input: str
    output: str
    weight: np.ndarray  # int64 [N, F]
    weight_key: str
    weight_format: CodeFormat
    weight_scale: np.ndarray
    weight_scale_key: str
    op: ClassVar[str] = "linear"
    groups: ClassVar[int] = 1

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class RequantInput:
    """One input of a requantizer: a tensor, its per-channel multiplier and optional int32 bias."""

    tensor: str
    multiplier: np.ndarray  # int64 [C]
    multiplier_key: str
    bias: np.ndarray | None  # int64 [C] (int32 range) or None
    bias_key: str | None


@dataclass(frozen=True, eq=False)
class RequantNode:
    """``requant``: ``f(round_shift(sum_i (x_i + b_i) * M_i + o, n, rounding))``, ``f``: clamp or sign."""

    name: str
    inputs: tuple[RequantInput, ...]
    shift: np.ndarray  # int64 [C] in 0..62
    shift_key: str
    function: str
    output: str
    offset: np.ndarray | None = None  # int64 [C], added at the 2^-n scale, or None
    offset_key: str | None = None
    rounding: str = DEFAULT_ROUNDING  # one of hwsim.fixed.ROUNDING_MODES (docs/export-format.md)
    op: ClassVar[str] = "requant"

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(i.tensor for i in self.inputs)


@dataclass(frozen=True, eq=False)
class AvgPoolSumNode:
    """``avgpool_sum``: integer sum over H and W of codes ``[C, H, W]`` -> codes ``[C]``."""

    name: str
    input: str
    output: str
    op: ClassVar[str] = "avgpool_sum"

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.input,)


@dataclass(frozen=True, eq=False)
class MaxPoolNode:
    """``maxpool``: the max of codes ``[C, H, W]`` over each ``kh x kw`` window -> ``[C, H_out, W_out]``.

    ``H_out = (H + 2ph - kh) // sh + 1`` (likewise ``W_out``); padded positions never win (they
    count as -inf, as in ONNX MaxPool). The output has the input's format and scale.
    """

    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    op: ClassVar[str] = "maxpool"

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.input,)


Node = Conv2dNode | LinearNode | RequantNode | AvgPoolSumNode | MaxPoolNode
MacNode = Conv2dNode | LinearNode


@dataclass(frozen=True, eq=False)
class BundleMeta:
    """The scalar fields of graph.yaml."""

    format_version: int
    model: str
    rounding: str
    acc_bits: int
    mult_bits: int
    input_tensor: str
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    output: str
    quantization: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] | None = None

    @property
    def acc_format(self) -> IntFormat:
        return IntFormat(self.acc_bits, True)


def compact_int_dtype(lo: int, hi: int) -> np.dtype:
    """The smallest numpy integer dtype holding ``[lo, hi]`` (codes are stored compactly)."""
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise FormatError(f"no integer dtype holds [{lo}, {hi}]")


def compact_codes(codes: np.ndarray) -> np.ndarray:
    """Integer ``codes`` (or integral floats) in the :func:`compact_int_dtype` of their range: how
    reference.npz stores codes."""
    if codes.size == 0:
        return codes.astype(np.int64)
    return codes.astype(compact_int_dtype(int(codes.min()), int(codes.max())), copy=False)


@dataclass(frozen=True, eq=False)
class Reference:
    """reference.npz: what the PyTorch model produced for a batch of inputs."""

    input_codes: np.ndarray  # int64 [N, C, H, W]
    labels: np.ndarray  # int64 [N], -1 where unknown
    codes: dict[str, np.ndarray]  # tensor -> int64 [N, ...]
    floats: dict[str, np.ndarray]  # tensor -> float32 [N, ...]
    eval_predictions: np.ndarray | None = None
    eval_labels: np.ndarray | None = None
    device: str = "unknown"

    @property
    def images(self) -> int:
        return int(self.input_codes.shape[0])

    def to_npz(self) -> dict[str, np.ndarray]:
        """The arrays of reference.npz (keys and dtypes as docs/export-format.md lists them)."""
        out: dict[str, np.ndarray] = {"input_codes": compact_codes(self.input_codes), "labels": self.labels}
        out.update({f"codes/{k}": compact_codes(v) for k, v in self.codes.items()})
        out.update({f"float/{k}": v for k, v in self.floats.items()})
        if self.eval_predictions is not None and self.eval_labels is not None:
            out["eval_predictions"] = self.eval_predictions
            out["eval_labels"] = self.eval_labels
        out["device"] = np.array(self.device)
        return out


@dataclass(frozen=True, eq=False)
class Bundle:
    """A loaded, validated bundle. ``consts`` holds tensors.npz as read; nodes hold int64 views of it."""

    path: Path | None
    meta: BundleMeta
    tensors: dict[str, TensorSpec]
    nodes: tuple[Node, ...]
    consts: dict[str, np.ndarray]
    reference: Reference | None = None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r} in the bundle; nodes: {[n.name for n in self.nodes]}")

    def producer(self, tensor: str) -> Node | None:
        """The node that writes ``tensor`` (``None`` for the network input)."""
        for n in self.nodes:
            if n.output == tensor:
                return n
        return None

    @property
    def input_spec(self) -> TensorSpec:
        return self.tensors[self.meta.input_tensor]

    @property
    def output_spec(self) -> TensorSpec:
        return self.tensors[self.meta.output]

    @property
    def acc_format(self) -> IntFormat:
        return self.meta.acc_format

    @property
    def mac_nodes(self) -> tuple[MacNode, ...]:
        return tuple(n for n in self.nodes if isinstance(n, (Conv2dNode, LinearNode)))

    def macs(self, name: str) -> int:
        """Multiply-accumulates per image of node ``name`` (0 for nodes without MACs)."""
        return node_macs(self.node(name), self)

    @property
    def total_macs(self) -> int:
        return sum(node_macs(n, self) for n in self.nodes)


def window_output(
    size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """``(H_out, W_out)`` of a window (``conv2d``, ``maxpool``) over ``size``: ``(H + 2p - k) // s + 1``."""
    h, w = ((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding, strict=True))
    return h, w


def node_macs(node: Node, bundle: Bundle) -> int:
    """MACs per image: output elements times the K of the GEMM (``C_in/groups * kh * kw``)."""
    if isinstance(node, (Conv2dNode, LinearNode)):
        k = int(np.prod(node.weight.shape[1:]))
        return math.prod(bundle.tensors[node.output].shape) * k
    return 0


def quantize_images(images: np.ndarray, bundle: Bundle) -> np.ndarray:
    """uint8 images ``[N, H, W, C]`` -> input codes ``[N, C, H, W]`` int64, by the float32 recipe of the spec.

    In float32, in this order: ``x = pixel / 255``; ``x = (x - mean[c]) / std[c]``;
    ``code = clamp(floor(x / scale + 0.5), fmt.min, fmt.max)`` (mean, std and scale rounded to
    float32 first), so that PyTorch and numpy produce identical codes.
    """
    spec = bundle.input_spec
    assert spec.fmt is not None and spec.scale is not None
    arr = np.asarray(images)
    c, h, w = spec.shape
    if arr.dtype != np.uint8 or arr.ndim != 4 or tuple(arr.shape[1:]) != (h, w, c):
        raise UserError(
            f"images: got {arr.dtype} of shape {list(arr.shape)}; expected uint8 [N, {h}, {w}, {c}] (HWC); "
            "load them with hwsim.cifar10.load_cifar10"
        )
    return quantize_pixels(arr, spec.fmt, spec.scale, bundle.meta.input_mean, bundle.meta.input_std)


def normalize_pixels(images: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` -> float32 ``(pixel / 255 - mean[c]) / std[c]``, in that order (still HWC)."""
    x = np.asarray(images).astype(np.float32) / np.float32(255.0)
    return (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)


def quantize_pixels(images: np.ndarray, fmt: CodeFormat, scale: float, mean: Any, std: Any) -> np.ndarray:
    """The recipe of :func:`quantize_images` for uint8 ``[N, H, W, C]`` given the input spec's parts."""
    x = normalize_pixels(images, mean, std)
    q = np.floor(x / np.float32(scale) + np.float32(0.5))
    q = np.clip(q, fmt.min, fmt.max)
    return np.ascontiguousarray(q.astype(np.int64).transpose(0, 3, 1, 2))
