"""Building bundles in memory (:class:`BundleBuilder`) and writing them to disk (:func:`save_bundle`).

Place in the flow: every producer of bundles goes through here: ``qat export`` (from a PyTorch
model), the synthetic bundles of tests and benchmarks (``hwsim.bundle.synthetic``), importers of
other tools' models. The builder names the arrays of tensors.npz, derives what the format
determines (accumulator tensors and their shapes, the avgpool sum's format and scale, a maxpool's
output shape, the bundle's ``acc_bits``), and returns a :class:`~hwsim.bundle.graph.Bundle`
validated by the one loader (``hwsim.bundle.load.validate_bundle``), so a built bundle obeys
every rule a loaded one does.
The graph.yaml it writes is spelled by ``hwsim.bundle.schema``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.bundle.graph import (
    AvgPoolSumNode,
    Bundle,
    BundleMeta,
    Conv2dNode,
    LinearNode,
    MaxPoolNode,
    Node,
    Reference,
    RequantInput,
    RequantNode,
    TensorSpec,
    compact_int_dtype,
    window_output,
)
from hwsim.bundle.load import load_bundle, validate_bundle
from hwsim.bundle.lowering import DEFAULT_MULT_BITS, worst_case_acc_bits
from hwsim.bundle.schema import (
    FORMAT_VERSION,
    GRAPH_FILE,
    REFERENCE_FILE,
    TENSORS_FILE,
    graph_text,
    graph_yaml,
)
from hwsim.fixed import DEFAULT_ROUNDING, CodeFormat, FormatError, bits_for_range
from hwsim.output import Output, publish_directory, register_kind

# One requantizer input: (tensor, multiplier [C], bias [C] in the units of the tensor, or None)
RequantSource = tuple[str, Any, Any]


def int_pair(value: int | Sequence[int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` -> ``(2, 3)``."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    a, b = value
    return int(a), int(b)


class BundleBuilder:
    """Collects a network node by node, in execution order, then :meth:`build` validates it.

    Every method returns the name of the tensor it wrote, to pass on::

        b = BundleBuilder(model="net")
        x = b.input(CodeFormat(8, True, lattice="narrow"), scale=0.0167, shape=(3, 32, 32), mean=..., std=...)
        acc = b.conv2d("conv1", x, weight, CodeFormat(4, True, lattice="narrow"), padding=1)
        y = b.requant("act1", [(acc, multiplier, None)], shift, CodeFormat(4, False), scale=0.12, offset=o)
        bundle = b.build(output=...)

    Arrays are named ``<node>.weight``, ``<node>.weight_scale``, ``<node>.mult<i>``,
    ``<node>.bias<i>``, ``<node>.shift`` and ``<node>.offset``; a MAC node's accumulator tensor is
    ``<node>.acc`` and a requantizer's or pooling node's output tensor is ``<node>``, unless ``output``
    names it.
    """

    def __init__(
        self,
        model: str = "",
        mult_bits: int = DEFAULT_MULT_BITS,
        acc_bits: int | None = None,
        rounding: str = DEFAULT_ROUNDING,
        quantization: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.mult_bits = mult_bits
        self.acc_bits = acc_bits
        self.rounding = rounding
        self.quantization: dict[str, Any] = dict(quantization or {})
        self.tensors: dict[str, TensorSpec] = {}
        self.nodes: list[Node] = []
        self.arrays: dict[str, np.ndarray] = {}
        self._input: tuple[str, tuple[float, ...], tuple[float, ...]] | None = None
        self._reference: Reference | None = None
        self._reference_info: dict[str, Any] | None = None
        self._worst_acc = 1

    # -- tensors ---------------------------------------------------------------------------------

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def spec(self, tensor: str) -> TensorSpec:
        return self.tensors[tensor]

    def _declare(self, spec: TensorSpec) -> str:
        if spec.name in self.tensors:
            raise FormatError(f"BundleBuilder: tensor {spec.name!r} is declared twice; give it another name")
        self.tensors[spec.name] = spec
        return spec.name

    def _array(self, key: str, value: np.ndarray) -> str:
        if key in self.arrays:
            raise FormatError(f"BundleBuilder: array {key!r} exists already; node names must be unique")
        self.arrays[key] = value
        return key

    # -- nodes -----------------------------------------------------------------------------------

    def input(
        self,
        fmt: CodeFormat,
        scale: float,
        shape: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        name: str = "input",
    ) -> str:
        """The network input: codes ``[C, H, W]`` from uint8 HWC images by the float32 recipe of the spec."""
        if self._input is not None:
            raise FormatError("BundleBuilder: the input is declared twice")
        self._input = (name, tuple(float(v) for v in mean), tuple(float(v) for v in std))
        return self._declare(TensorSpec(name, "codes", tuple(int(v) for v in shape), fmt, float(scale)))

    def _mac_common(
        self, name: str, x: str, weight: Any, weight_format: CodeFormat, weight_scale: Any
    ) -> tuple[np.ndarray, str, np.ndarray, str]:
        w = np.asarray(weight)
        if w.dtype.kind not in "iu":
            codes = w.astype(np.int64)
            if not np.array_equal(codes, w):
                raise FormatError(f"BundleBuilder: node {name!r}: weight codes are not integers")
            w = codes
        w = w.astype(np.int64)
        lo, hi = (int(w.min()), int(w.max())) if w.size else (0, 0)
        wkey = self._array(f"{name}.weight", w.astype(compact_int_dtype(lo, hi)))
        c_out = int(w.shape[0])
        scale = np.ones(c_out) if weight_scale is None else np.asarray(weight_scale, dtype=np.float64)
        scale = np.broadcast_to(scale.reshape(-1), (c_out,)).copy() if scale.size == 1 else scale
        skey = self._array(f"{name}.weight_scale", scale.astype(np.float64))
        fmt = self.tensors[x].fmt
        if fmt is not None and w.size:
            self._worst_acc = max(self._worst_acc, worst_case_acc_bits(w, fmt))
        return w, wkey, scale, skey

    def conv2d(
        self,
        name: str,
        x: str,
        weight: Any,
        weight_format: CodeFormat,
        weight_scale: Any = None,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        output: str | None = None,
    ) -> str:
        """``conv2d`` of codes ``x [C, H, W]`` with weight codes ``[C_out, C/groups, kh, kw]`` -> accumulator.

        ``weight_scale`` (per output channel, or one value; informational) defaults to 1.
        """
        w, wkey, scale, skey = self._mac_common(name, x, weight, weight_format, weight_scale)
        sh, sw = int_pair(stride)
        ph, pw = int_pair(padding)
        c, h, wd = self.shape(x)
        kh, kw = int(w.shape[2]), int(w.shape[3])
        shape = (int(w.shape[0]), *window_output((h, wd), (kh, kw), (sh, sw), (ph, pw)))
        out = self._declare(TensorSpec(output or f"{name}.acc", "acc", shape, None, None))
        self.nodes.append(
            Conv2dNode(name, x, out, w, wkey, weight_format, scale, skey, (sh, sw), (ph, pw), int(groups))
        )
        return out

    def linear(
        self,
        name: str,
        x: str,
        weight: Any,
        weight_format: CodeFormat,
        weight_scale: Any = None,
        output: str | None = None,
    ) -> str:
        """``linear`` of codes ``x [F]`` with weight codes ``[N, F]`` -> accumulator ``[N]``."""
        w, wkey, scale, skey = self._mac_common(name, x, weight, weight_format, weight_scale)
        out = self._declare(TensorSpec(output or f"{name}.acc", "acc", (int(w.shape[0]),), None, None))
        self.nodes.append(LinearNode(name, x, out, w, wkey, weight_format, scale, skey))
        return out

    def requant(
        self,
        name: str,
        inputs: Sequence[RequantSource],
        shift: Any,
        fmt: CodeFormat,
        scale: float,
        function: str = "clamp",
        offset: Any = None,
        rounding: str | None = None,
        output: str | None = None,
    ) -> str:
        """``requant``: ``f(round_shift(sum_i (x_i + b_i) M_i + o, n, rounding))`` -> codes of ``fmt``.

        ``inputs`` are ``(tensor, multiplier [C], bias [C] or None)``; ``shift`` and ``offset`` are
        per channel (``offset=None``: no offset); ``rounding`` defaults to the builder's.
        """
        if not inputs:
            raise FormatError(f"BundleBuilder: requant node {name!r} has no inputs")
        shape = self.shape(inputs[0][0])
        channels = shape[0]

        def per_channel(value: Any, what: str) -> np.ndarray:
            arr = np.asarray(value, dtype=np.int64).reshape(-1)
            if arr.size == 1:
                arr = np.full(channels, int(arr[0]), dtype=np.int64)
            if arr.shape != (channels,):
                raise FormatError(
                    f"BundleBuilder: requant node {name!r}: {what} has {arr.size} values, "
                    f"for {channels} channels"
                )
            return arr

        items = []
        for i, (tensor, mult, bias) in enumerate(inputs):
            mkey = self._array(f"{name}.mult{i}", per_channel(mult, f"inputs[{i}] multiplier"))
            bkey = None
            if bias is not None:
                bkey = self._array(f"{name}.bias{i}", per_channel(bias, f"inputs[{i}] bias").astype(np.int32))
            items.append(
                RequantInput(
                    tensor,
                    self.arrays[mkey],
                    mkey,
                    None if bkey is None else self.arrays[bkey].astype(np.int64),
                    bkey,
                )
            )
        skey = self._array(f"{name}.shift", per_channel(shift, "shift"))
        okey = None if offset is None else self._array(f"{name}.offset", per_channel(offset, "offset"))
        out = self._declare(TensorSpec(output or name, "codes", tuple(shape), fmt, float(scale)))
        self.nodes.append(
            RequantNode(
                name,
                tuple(items),
                self.arrays[skey],
                skey,
                function,
                out,
                None if okey is None else self.arrays[okey],
                okey,
                self.rounding if rounding is None else rounding,
            )
        )
        return out

    def avgpool_sum(self, name: str, x: str, output: str | None = None) -> str:
        """The integer sum over H and W of codes ``[C, H, W]``: ``log2(H*W)`` bits wider, scale ``/(H*W)``."""
        spec = self.tensors[x]
        assert spec.fmt is not None and spec.scale is not None
        c, h, w = spec.shape
        area = h * w
        fmt = CodeFormat(
            bits_for_range(spec.fmt.min * area, spec.fmt.max * area, spec.fmt.signed), spec.fmt.signed
        )
        out = self._declare(TensorSpec(output or name, "codes", (c,), fmt, spec.scale / area))
        self.nodes.append(AvgPoolSumNode(name, x, out))
        return out

    def maxpool(
        self,
        name: str,
        x: str,
        kernel: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        output: str | None = None,
    ) -> str:
        """The max of codes ``x [C, H, W]`` over each window -> codes of ``x``'s format and scale.

        ``kernel``, ``stride`` (default: the kernel) and ``padding`` are ints or ``(h, w)`` pairs;
        padded positions never win (-inf).
        """
        spec = self.tensors[x]
        kh, kw = int_pair(kernel)
        sh, sw = int_pair(kernel if stride is None else stride)
        ph, pw = int_pair(padding)
        c, h, w = spec.shape
        shape = (c, *window_output((h, w), (kh, kw), (sh, sw), (ph, pw)))
        out = self._declare(TensorSpec(output or name, "codes", shape, spec.fmt, spec.scale))
        self.nodes.append(MaxPoolNode(name, x, out, (kh, kw), (sh, sw), (ph, pw)))
        return out

    def reference(self, reference: Reference, info: Mapping[str, Any] | None = None) -> None:
        """What the source model produced for a batch (reference.npz); ``info``: its graph.yaml record."""
        self._reference = reference
        self._reference_info = {"device": reference.device, "images": reference.images, **dict(info or {})}

    # -- the result ------------------------------------------------------------------------------

    def meta(self, output: str) -> BundleMeta:
        if self._input is None:
            raise FormatError("BundleBuilder: no input; call input() first")
        name, mean, std = self._input
        acc_bits = self.acc_bits if self.acc_bits is not None else min(64, self._worst_acc)
        return BundleMeta(
            FORMAT_VERSION,
            self.model,
            self.rounding,
            acc_bits,
            self.mult_bits,
            name,
            mean,
            std,
            output,
            dict(self.quantization),
            self._reference_info,
        )

    def parts(
        self, output: str
    ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """graph.yaml's mapping, tensors.npz's and reference.npz's arrays, unvalidated (writers, tests)."""
        graph = graph_yaml(self.meta(output), self.tensors, self.nodes)
        ref = self._reference.to_npz() if self._reference is not None else None
        return graph, dict(self.arrays), ref

    def build(self, output: str) -> Bundle:
        """The validated bundle whose prediction is the argmax of ``output`` (else a ``BundleError``)."""
        graph, arrays, ref = self.parts(output)
        return validate_bundle(graph, arrays, ref, label=f"<bundle {self.model or 'built in memory'}>")

    def save(self, path: str | os.PathLike[str], output: str) -> Path:
        """:meth:`build`, then :func:`save_bundle` to ``path``."""
        return save_bundle(self.build(output), path)


def bundle_files(bundle: Bundle) -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """graph.yaml's text and the arrays of tensors.npz and reference.npz of ``bundle``."""
    graph = graph_yaml(bundle.meta, bundle.tensors, bundle.nodes)
    ref = bundle.reference.to_npz() if bundle.reference is not None else None
    return graph_text(graph), dict(bundle.consts), ref


def _looks_like_bundle(path: Path) -> bool:
    """A bundle directory written before output markers: graph.yaml and only the bundle's files."""
    names = {p.name for p in path.iterdir()}
    return GRAPH_FILE in names and names <= {GRAPH_FILE, TENSORS_FILE, REFERENCE_FILE}


BUNDLE = register_kind("bundle", recognize=_looks_like_bundle)
"""The output kind of a bundle directory (hwsim.output): what save_bundle may replace."""


def _write_files(
    directory: Path,
    graph: Mapping[str, Any] | str,
    tensors: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray] | None,
) -> None:
    text = graph if isinstance(graph, str) else graph_text(graph)
    (directory / GRAPH_FILE).write_text(text, encoding="utf-8")
    np.savez(directory / TENSORS_FILE, **dict(tensors))
    if reference is not None:
        np.savez(directory / REFERENCE_FILE, **dict(reference))


def write_bundle_files(
    path: str | os.PathLike[str] | Output,
    graph: Mapping[str, Any] | str,
    tensors: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a bundle directory from raw parts, published whole (hwsim.output.publish_directory).

    ``graph`` is the graph.yaml mapping (or its text). No validation: :func:`save_bundle` writes
    validated bundles; this is for bundles made on purpose (tests of the loader). An existing
    directory at ``path`` is replaced when the output policy allows it (an earlier bundle).
    """
    with publish_directory(path, BUNDLE) as staged:
        _write_files(staged, graph, tensors, reference)
    return Path(path)


def save_bundle(bundle: Bundle, path: str | os.PathLike[str] | Output) -> Path:
    """Write ``bundle`` to the directory ``path`` whole; returns the path.

    Files are written beside ``path`` and checked by the loader before they replace it, so a bundle
    that would not load is never left at ``path``. ``path`` is a claim of
    :func:`hwsim.output.claim` (kind :data:`BUNDLE`) or a path, checked by the output policy.
    """
    with publish_directory(path, BUNDLE) as staged:
        _write_files(staged, *bundle_files(bundle))
        load_bundle(staged)
    return Path(path)
