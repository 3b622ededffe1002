"""A bundle as a QONNX graph: ONNX with qonnx's ``Quant``/``BipolarQuant``, computing the bundle's codes.

Place in the flow: bundle/ (hwsim.bundle) -> :func:`export_qonnx` -> an ``onnx.ModelProto`` that
``qonnx.core.onnx_exec.execute_onnx`` runs; ``hwsim export-qonnx`` writes it, and
:func:`compare_with_emulator` measures it against hwsim.emulator. Needs the ``onnx`` package
(imported here, not by the rest of hwsim); running the graph needs ``qonnx``.

Every tensor of the graph holds the bundle's *integer codes* (accumulators included) as floats:
real value = code * scale, the scales are in the model's metadata (``hwsim.scales``). Mapping:

* input codes (or, with ``input_kind="image"``, pixels with the float32 recipe of
  :func:`hwsim.bundle.quantize_images`) -> ``Quant`` (scale 1) of the input format;
* weights -> initializers of their codes and a ``Quant`` (scale 1; ``BipolarQuant`` for binary
  weights); ``conv2d`` -> ``Conv`` (float32: onnxruntime has no float64 Conv), ``linear`` -> ``Gemm``;
* ``requant`` -> ``Add`` (bias), ``Mul`` (multiplier), ``Sum``, ``Add`` (offset), ``Mul`` (``2^-n``),
  then ``Quant`` (scale 1, the output format) with the node's rounding (``half_up`` as ``FLOOR`` of
  ``v + 0.5``); ``sign`` -> that ``Quant`` (2 bits) and ``BipolarQuant``;
* ``avgpool_sum`` -> ``ReduceSum`` over H and W; ``maxpool`` -> ``MaxPool``.

Exactness: each node computes in float32 where a static bound over every legal input proves every
intermediate an integer (or a dyadic) that float32 holds exactly (``|v| <= 2^24``), else in
float64 (``|v| <= 2^53``); a convolution whose bound exceeds ``2^24`` is split into limbs of the
weight (and input) codes, each an exact float32 ``Conv``, summed in float64. ``dtype="float32"``
forces float32 everywhere (for consumers without float64), which is exact only where the bound
allows. :attr:`QonnxExport.exactness` lists, per node, the bound and whether it proves exactness.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.bundle import Bundle, Conv2dNode, LinearNode, RequantNode
from hwsim.bundle.lowering import mac_range
from hwsim.bundle.schema import plain
from hwsim.errors import UserError
from hwsim.fixed import F32_EXACT, F64_EXACT, CodeFormat
from hwsim.interop.qonnx_rounding import TO_QONNX
from hwsim.output import Output, publish_file, register_kind

QONNX_DOMAIN = "qonnx.custom_op.general"
ONNX_OPSET = 11  # qonnx.util.basic.get_preferred_onnx_opset()
QONNX_OPSET = 1
PRODUCER = "hwsim export-qonnx"
DTYPES = ("auto", "float32")
INPUT_KINDS = ("codes", "image")


class ExportError(UserError):
    """A bundle (or an option) that the QONNX export cannot express; the message names the fix."""


@dataclass(frozen=True)
class NodeExactness:
    """How one bundle node is computed: the float type, the static bound and whether it proves exactness."""

    node: str
    op: str
    dtype: str
    bound: int  # largest |intermediate| over every legal input (in the node's integer units)
    exact: bool
    note: str = ""


@dataclass
class QonnxExport:
    """The exported model and what it is made of."""

    model: Any  # onnx.ModelProto
    input_name: str
    input_kind: str
    batch: int
    tensors: dict[str, str]  # bundle tensor -> graph tensor holding its codes
    exactness: list[NodeExactness] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return all(e.exact for e in self.exactness)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "the QONNX export needs the onnx package; install it (pip install onnx qonnx)"
        ) from None
    return onnx


def _quant_args(fmt: CodeFormat, where: str) -> tuple[int, bool, bool]:
    """(bit width, signed, narrow) of the qonnx ``Quant`` whose clamp is ``fmt``'s range."""
    if fmt.signed and fmt.bits == 1:
        raise ExportError(
            f"{where}: the signed 1-bit format {fmt} has no qonnx Quant (bit width 1 signed is bipolar); "
            "use a 2-bit format"
        )
    if fmt.bits > 53:
        raise ExportError(f"{where}: {fmt} is wider than float64's 53-bit mantissa; use at most 53 bits")
    return int(fmt.bits), bool(fmt.signed), fmt.lattice != "full"


def _digits(values: np.ndarray, bits: int, count: int) -> list[np.ndarray]:
    """``values = sum_j d_j 2^(bits j)``: ``count`` digits, the lower in ``[0, 2^bits)``, the top signed."""
    out, rest = [], np.asarray(values, dtype=np.int64)
    for _ in range(count - 1):
        high = rest >> bits
        out.append(rest - (high << bits))
        rest = high
    out.append(rest)
    return out


def _limbs_needed(lo: int, hi: int, bits: int) -> int:
    span = max(abs(lo), abs(hi), 1)
    return max(1, math.ceil((span.bit_length() + 1) / bits))


def _conv_split(node: Conv2dNode, fmt: CodeFormat) -> tuple[int, int, int, int, int]:
    """The fewest float32 convolutions of digits of the input and weight codes that are each exact.

    Returns ``(input digit bits, input digits, weight digit bits, weight digits, largest bound of one)``;
    bits 0 and one digit where no split is needed. Every partial sum of a convolution whose
    ``sum_k |w_k| * max|x|`` is at most ``2^24`` is an integer float32 holds, in any order.
    """
    w = node.weight.reshape(node.weight.shape[0], -1).astype(np.int64)
    wlo, whi = int(w.min(initial=0)), int(w.max(initial=0))
    best: tuple[int, int, int, int, int] | None = None
    for a_bits in [0, *range(max(fmt.bits - 1, 1), 0, -1)]:
        if a_bits == 0:
            a_count, emax = 1, [fmt.max_abs]
        else:
            a_count = _limbs_needed(fmt.min, fmt.max, a_bits)
            top = _digits(np.array([fmt.min, fmt.max]), a_bits, a_count)[-1]
            emax = [(1 << a_bits) - 1] * (a_count - 1) + [int(np.abs(top).max())]
        for b_bits in [0, *range(max(whi, -wlo, 1).bit_length(), 0, -1)]:
            b_count = 1 if b_bits == 0 else _limbs_needed(wlo, whi, b_bits)
            digits = [w] if b_bits == 0 else _digits(w, b_bits, b_count)
            bound = max(int(np.abs(d).sum(axis=1).max(initial=0)) * e for d in digits for e in emax)
            if bound <= F32_EXACT:
                if best is None or a_count * b_count < best[1] * best[3]:
                    best = (a_bits, a_count, b_bits, b_count, bound)
                break
        if best is not None and best[1] * best[3] == 1:
            break
    if best is None:
        raise ExportError(
            f"node '{node.name}': no split into float32-exact convolutions exists (K too large)"
        )
    return best


class _Graph:
    """Nodes, initializers and typed value infos of the graph being built."""

    def __init__(self, onnx: Any, batch: int) -> None:
        self.onnx = onnx
        self.batch = batch
        self.nodes: list[Any] = []
        self.inits: dict[str, Any] = {}
        self.infos: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.names: set[str] = set()
        self.casts: dict[tuple[str, int], str] = {}
        # ONNX node name -> (bundle node, bundle tensor) for the node that writes a bundle tensor
        self.defines: dict[str, tuple[str, str]] = {}

    @property
    def f32(self) -> int:
        return int(self.onnx.TensorProto.FLOAT)

    @property
    def f64(self) -> int:
        return int(self.onnx.TensorProto.DOUBLE)

    def fresh(self, name: str) -> str:
        cand, i = name, 1
        while cand in self.names:
            cand, i = f"{name}_{i}", i + 1
        self.names.add(cand)
        return cand

    def const(self, name: str, value: np.ndarray | float, dtype: int) -> str:
        arr = np.asarray(value, dtype=np.float64 if dtype == self.f64 else np.float32)
        for key, existing in self.inits.items():  # share scalars (scale 1, zero point, bit widths)
            if arr.ndim == 0 and existing.ndim == 0 and existing.dtype == arr.dtype and existing == arr:
                return key
        key = self.fresh(name)
        self.inits[key] = arr
        return key

    def op(
        self,
        op_type: str,
        inputs: list[str],
        shape: tuple[int, ...],
        dtype: int,
        name: str,
        domain: str = "",
        output: str | None = None,
        **attrs: Any,
    ) -> str:
        out = self.fresh(output or name)
        node_name = self.fresh(f"{name}#{op_type}") if output else out
        if output:
            self.defines[node_name] = (name, output)
        self.nodes.append(
            self.onnx.helper.make_node(op_type, inputs, [out], name=node_name, domain=domain, **attrs)
        )
        self.infos[out] = (dtype, tuple(shape))
        return out

    def dtype_of(self, tensor: str) -> int:
        return self.infos[tensor][0]

    def cast(self, tensor: str, dtype: int) -> str:
        if self.dtype_of(tensor) == dtype:
            return tensor
        key = (tensor, dtype)
        if key not in self.casts:
            suffix = "f64" if dtype == self.f64 else "f32"
            self.casts[key] = self.op(
                "Cast", [tensor], self.infos[tensor][1], dtype, f"{tensor}/{suffix}", to=dtype
            )
        return self.casts[key]

    def quant(
        self, x: str, fmt: CodeFormat, mode: str, name: str, where: str, output: str | None = None
    ) -> str:
        bits, signed, narrow = _quant_args(fmt, where)
        inputs = [x, self.const("one", 1.0, self.f32), self.const("zero", 0.0, self.f32)]
        inputs.append(self.const(f"bits{bits}", float(bits), self.f32))
        return self.op(
            "Quant",
            inputs,
            self.infos[x][1],
            self.f32,
            name,
            QONNX_DOMAIN,
            output,
            signed=int(signed),
            narrow=int(narrow),
            rounding_mode=mode,
        )

    def bipolar(self, x: str, name: str, output: str | None = None) -> str:
        one = self.const("one", 1.0, self.f32)
        return self.op("BipolarQuant", [x, one], self.infos[x][1], self.f32, name, QONNX_DOMAIN, output)


def _channel_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, shape[0]) + (1,) * (len(shape) - 1)


class _Exporter:
    def __init__(self, bundle: Bundle, batch: int, dtype: str, input_kind: str) -> None:
        self.bundle = bundle
        self.g = _Graph(_onnx(), batch)
        self.dtype = dtype
        self.input_kind = input_kind
        self.tensors: dict[str, str] = {}
        self.exactness: list[NodeExactness] = []

    def shape(self, tensor: str) -> tuple[int, ...]:
        return (self.g.batch, *self.bundle.tensors[tensor].shape)

    def pick(self, bound: int) -> int:
        """float32 when ``bound`` proves it exact (or float32 is forced), else float64."""
        return self.g.f32 if self.dtype == "float32" or bound <= F32_EXACT else self.g.f64

    def note(self, node: Any, dtype: int, bound: int, note: str = "") -> None:
        limit = F32_EXACT if dtype == self.g.f32 else F64_EXACT
        name = "float32" if dtype == self.g.f32 else "float64"
        self.exactness.append(NodeExactness(node.name, node.op, name, int(bound), bound <= limit, note))

    # --- input -------------------------------------------------------------------------------
    def input(self) -> str:
        b, g = self.bundle, self.g
        spec = b.input_spec
        assert spec.fmt is not None and spec.scale is not None
        shape = self.shape(spec.name)
        if self.input_kind == "codes":
            raw = g.fresh(f"{spec.name}.codes")
            g.infos[raw] = (g.f32, shape)
            codes = g.quant(raw, spec.fmt, "ROUND", spec.name, "input", output=spec.name)
        else:
            raw = g.fresh(f"{spec.name}.pixels")
            g.infos[raw] = (g.f32, shape)
            cs = _channel_shape(spec.shape)
            mean = np.asarray(b.meta.input_mean, dtype=np.float32).reshape(cs)
            std = np.asarray(b.meta.input_std, dtype=np.float32).reshape(cs)
            x = g.op("Div", [raw, g.const("c255", 255.0, g.f32)], shape, g.f32, f"{spec.name}/unit")
            x = g.op(
                "Sub", [x, g.const(f"{spec.name}.mean", mean, g.f32)], shape, g.f32, f"{spec.name}/centered"
            )
            x = g.op(
                "Div", [x, g.const(f"{spec.name}.std", std, g.f32)], shape, g.f32, f"{spec.name}/normalized"
            )
            x = g.op(
                "Div", [x, g.const(f"{spec.name}.scale", spec.scale, g.f32)], shape, g.f32, f"{spec.name}/lsb"
            )
            x = g.op("Add", [x, g.const("half", 0.5, g.f32)], shape, g.f32, f"{spec.name}/half_up")
            codes = g.quant(x, spec.fmt, "FLOOR", spec.name, "input", output=spec.name)
        self.tensors[spec.name] = codes
        return raw

    # --- nodes -------------------------------------------------------------------------------
    def weight(
        self, node: Conv2dNode | LinearNode, codes: np.ndarray, fmt: CodeFormat | None, key: str
    ) -> str:
        g = self.g
        init = g.const(key, codes.astype(np.float32), g.f32)
        g.infos[init] = (g.f32, tuple(codes.shape))
        if fmt is not None and fmt.lattice == "binary":
            return g.bipolar(init, f"{key}/quant")
        if fmt is None:  # a limb: the narrowest format holding its digits
            lo, hi = int(codes.min(initial=0)), int(codes.max(initial=0))
            signed = lo < 0
            bits = max(2 if signed else 1, (max(hi, -lo - 1 if signed else 0)).bit_length() + int(signed))
            fmt = CodeFormat(bits, signed)
        return g.quant(init, fmt, "ROUND", f"{key}/quant", f"node '{node.name}', weight")

    def conv2d(self, node: Conv2dNode) -> None:
        g, b = self.g, self.bundle
        fmt = b.tensors[node.input].fmt
        assert fmt is not None
        x = g.cast(self.tensors[node.input], g.f32)
        out_shape = self.shape(node.output)
        kh, kw = node.kernel
        attrs = dict(
            kernel_shape=[kh, kw],
            strides=list(node.stride),
            group=int(node.groups),
            pads=[node.padding[0], node.padding[1], node.padding[0], node.padding[1]],
        )
        a_bits, a_count, b_bits, b_count, bound = _conv_split(node, fmt)
        if self.dtype == "float32" and a_count * b_count > 1:  # one inexact float32 Conv
            a_count = b_count = 1
            bound = int(np.abs(node.weight).reshape(node.weight.shape[0], -1).sum(axis=1).max()) * fmt.max_abs
        if a_count * b_count == 1:
            w = self.weight(node, node.weight, node.weight_format, f"{node.name}.weight")
            self.tensors[node.output] = g.op(
                "Conv", [x, w], out_shape, g.f32, node.name, output=node.output, **attrs
            )
            self.note(node, g.f32, bound)
            return
        xs = [x]
        if a_count > 1:  # input digits in float32: exact (codes and 2^-a scalings are small dyadics)
            xs, rest = [], x
            scale_dn = g.const(f"{node.name}/2^-{a_bits}", 2.0**-a_bits, g.f32)
            scale_up = g.const(f"{node.name}/2^{a_bits}", 2.0**a_bits, g.f32)
            shape = g.infos[x][1]
            for j in range(a_count - 1):
                high = g.op("Mul", [rest, scale_dn], shape, g.f32, f"{node.name}/x{j}/scaled")
                high = g.op("Floor", [high], shape, g.f32, f"{node.name}/x{j}/high")
                back = g.op("Mul", [high, scale_up], shape, g.f32, f"{node.name}/x{j}/back")
                xs.append(g.op("Sub", [rest, back], shape, g.f32, f"{node.name}/x{j}"))
                rest = high
            xs.append(rest)
        wd = [node.weight] if b_count == 1 else _digits(node.weight, b_bits, b_count)
        parts = []
        for j, xj in enumerate(xs):
            for k, dk in enumerate(wd):
                w = self.weight(
                    node, dk, node.weight_format if b_count == 1 else None, f"{node.name}.weight.d{k}"
                )
                part = g.op("Conv", [xj, w], out_shape, g.f32, f"{node.name}/x{j}w{k}", **attrs)
                part = g.cast(part, g.f64)
                weight = 2.0 ** (a_bits * j + b_bits * k)
                if weight != 1.0:
                    part = g.op(
                        "Mul",
                        [part, g.const(f"2^{math.log2(weight):.0f}", weight, g.f64)],
                        out_shape,
                        g.f64,
                        f"{node.name}/x{j}w{k}/scaled",
                    )
                parts.append(part)
        self.tensors[node.output] = g.op("Sum", parts, out_shape, g.f64, node.name, output=node.output)
        lo, hi = mac_range(node.weight, fmt)
        total = max(int(np.abs(lo).max(initial=0)), int(np.abs(hi).max(initial=0)))
        self.note(node, g.f64, total, f"{len(parts)} exact float32 Conv of limbs, summed in float64")

    def linear(self, node: LinearNode) -> None:
        g, b = self.g, self.bundle
        fmt = b.tensors[node.input].fmt
        assert fmt is not None
        bound = int(np.abs(node.weight).sum(axis=1).max(initial=0)) * fmt.max_abs
        dt = self.pick(bound)
        x = g.cast(self.tensors[node.input], dt)
        w = g.cast(self.weight(node, node.weight, node.weight_format, f"{node.name}.weight"), dt)
        self.tensors[node.output] = g.op(
            "Gemm", [x, w], self.shape(node.output), dt, node.name, output=node.output, transB=1
        )
        self.note(node, dt, bound)

    def input_bound(self, tensor: str) -> np.ndarray:
        """Per channel, the largest |value| of a requantizer's input over every legal input of the net."""
        spec = self.bundle.tensors[tensor]
        if spec.kind == "codes":
            assert spec.fmt is not None
            return np.full(spec.shape[0], spec.fmt.max_abs, dtype=object)
        node = self.bundle.producer(tensor)
        assert isinstance(node, (Conv2dNode, LinearNode))
        fmt = self.bundle.tensors[node.input].fmt
        assert fmt is not None
        lo, hi = mac_range(node.weight, fmt)
        return np.maximum(np.abs(lo.astype(object)), np.abs(hi.astype(object)))

    def requant(self, node: RequantNode) -> None:
        g, b = self.g, self.bundle
        spec = b.tensors[node.output]
        assert spec.fmt is not None
        shape = self.shape(node.output)
        cs = _channel_shape(spec.shape)
        n = node.shift.astype(np.int64)
        mode, addend = TO_QONNX[node.rounding]
        # static bound of |sum_i (x_i + b_i) M_i + o| (+ the half_up addend at the 2^-n scale)
        total = np.zeros(spec.shape[0], dtype=object)
        for term in node.inputs:
            bias = np.zeros_like(total) if term.bias is None else np.abs(term.bias.astype(object))
            total = total + np.abs(term.multiplier.astype(object)) * (self.input_bound(term.tensor) + bias)
        if node.offset is not None:
            total = total + np.abs(node.offset.astype(object))
        if addend:
            total = total + np.array([(1 << int(s - 1)) if s > 0 else 0 for s in n], dtype=object)
            total = np.where(n == 0, 2 * total + 1, total)  # v + 0.5 at n = 0 needs one more bit
        bound = int(total.max(initial=0))
        dt = self.pick(bound)
        if dt == g.f64 or bound <= F32_EXACT:
            # the bundle's integers as they are, then the power of two (the importer reads them back)
            terms = []
            for i, term in enumerate(node.inputs):
                x = g.cast(self.tensors[term.tensor], dt)
                if term.bias is not None:
                    c = g.const(f"{node.name}.bias{i}", term.bias.reshape(cs), dt)
                    x = g.op("Add", [x, c], shape, dt, f"{node.name}/biased{i}")
                c = g.const(f"{node.name}.mult{i}", term.multiplier.reshape(cs), dt)
                terms.append(g.op("Mul", [x, c], shape, dt, f"{node.name}/term{i}"))
            v = terms[0] if len(terms) == 1 else g.op("Sum", terms, shape, dt, f"{node.name}/sum")
            if node.offset is not None:
                c = g.const(f"{node.name}.offset", node.offset.reshape(cs), dt)
                v = g.op("Add", [v, c], shape, dt, f"{node.name}/offset")
            c = g.const(f"{node.name}.2^-shift", np.ldexp(1.0, -n).reshape(cs), dt)
            v = g.op("Mul", [v, c], shape, dt, f"{node.name}/shifted")
        else:
            # float32 forced beyond its exact range: the multipliers and offset at the 2^-n scale,
            # each rounded once to float32
            terms = []
            for i, term in enumerate(node.inputs):
                x = g.cast(self.tensors[term.tensor], dt)
                if term.bias is not None:
                    c = g.const(f"{node.name}.bias{i}", term.bias.reshape(cs), dt)
                    x = g.op("Add", [x, c], shape, dt, f"{node.name}/biased{i}")
                c = g.const(
                    f"{node.name}.mult{i}", np.ldexp(term.multiplier.astype(np.float64), -n).reshape(cs), dt
                )
                terms.append(g.op("Mul", [x, c], shape, dt, f"{node.name}/term{i}"))
            v = terms[0] if len(terms) == 1 else g.op("Sum", terms, shape, dt, f"{node.name}/sum")
            if node.offset is not None:
                off = np.ldexp(node.offset.astype(np.float64), -n)
                v = g.op(
                    "Add",
                    [v, g.const(f"{node.name}.offset", off.reshape(cs), dt)],
                    shape,
                    dt,
                    f"{node.name}/offset",
                )
        if addend:
            v = g.op(
                "Add",
                [v, g.const("half" if dt == g.f32 else "half64", addend, dt)],
                shape,
                dt,
                f"{node.name}/half_up",
            )
        where = f"node '{node.name}'"
        if node.function == "sign":
            r = g.quant(v, CodeFormat(2, True), mode, f"{node.name}/rounded", where)
            out = g.bipolar(r, node.name, output=node.output)
        else:
            out = g.quant(v, spec.fmt, mode, node.name, where, output=node.output)
        self.tensors[node.output] = out
        exact_out = spec.fmt.max_abs <= F32_EXACT
        note = (
            "" if exact_out else f"output {spec.fmt} beyond float32's exact integers (Quant returns float32)"
        )
        limit = F32_EXACT if dt == g.f32 else F64_EXACT
        self.exactness.append(
            NodeExactness(
                node.name,
                node.op,
                "float32" if dt == g.f32 else "float64",
                bound,
                bound <= limit and exact_out,
                note,
            )
        )

    def avgpool_sum(self, node: Any) -> None:
        g = self.g
        spec = self.bundle.tensors[node.input]
        assert spec.fmt is not None
        bound = spec.fmt.max_abs * spec.shape[1] * spec.shape[2]
        dt = self.pick(bound)
        x = g.cast(self.tensors[node.input], dt)
        self.tensors[node.output] = g.op(
            "ReduceSum",
            [x],
            self.shape(node.output),
            dt,
            node.name,
            output=node.output,
            axes=[2, 3],
            keepdims=0,
        )
        self.note(node, dt, bound)

    def maxpool(self, node: Any) -> None:
        g = self.g
        spec = self.bundle.tensors[node.input]
        assert spec.fmt is not None
        x = self.tensors[node.input]
        dt = g.dtype_of(x)
        ph, pw = node.padding
        self.tensors[node.output] = g.op(
            "MaxPool",
            [x],
            self.shape(node.output),
            dt,
            node.name,
            output=node.output,
            kernel_shape=list(node.kernel),
            strides=list(node.stride),
            pads=[ph, pw, ph, pw],
        )
        self.note(node, dt, spec.fmt.max_abs)

    # --- the model ---------------------------------------------------------------------------
    def build(self) -> QonnxExport:
        onnx, g, b = self.g.onnx, self.g, self.bundle
        for name in b.tensors:
            g.names.add(name)
        raw = self.input()
        for node in b.nodes:
            handler = getattr(self, node.op, None)
            if handler is None:
                raise ExportError(
                    f"node '{node.name}': op '{node.op}' has no QONNX export; expected one of "
                    "conv2d, linear, requant, avgpool_sum, maxpool"
                )
            handler(node)
        read = {t for node in b.nodes for t in node.reads}
        outputs = [b.meta.output] + [
            n.output for n in b.nodes if n.output not in read and n.output != b.meta.output
        ]
        helper, numpy_helper = onnx.helper, onnx.numpy_helper
        out_names = [self.tensors[t] for t in outputs]
        infos = [
            helper.make_tensor_value_info(k, dt, list(s))
            for k, (dt, s) in g.infos.items()
            if k not in out_names and k != raw and k not in g.inits
        ]
        graph = helper.make_graph(
            g.nodes,
            f"{b.meta.model} (hwsim bundle, integer codes)",
            [helper.make_tensor_value_info(raw, g.f32, list(g.infos[raw][1]))],
            [helper.make_tensor_value_info(k, g.infos[k][0], list(g.infos[k][1])) for k in out_names],
            [numpy_helper.from_array(v, k) for k, v in g.inits.items()],
            value_info=infos,
        )
        model = helper.make_model(
            graph,
            producer_name=PRODUCER,
            opset_imports=[
                helper.make_opsetid("", ONNX_OPSET),
                helper.make_opsetid(QONNX_DOMAIN, QONNX_OPSET),
            ],
        )
        model.ir_version = min(model.ir_version, 8)
        scales = {k: s.scale for k, s in b.tensors.items() if s.kind == "codes"}
        meta = {
            **bundle_metadata(b),
            "hwsim.names": json.dumps({k: {"node": v[0], "tensor": v[1]} for k, v in g.defines.items()}),
            "hwsim.model": b.meta.model,
            "hwsim.format_version": str(b.meta.format_version),
            "hwsim.domain": "every tensor holds integer codes; real value = code * hwsim.scales[tensor]",
            "hwsim.input": self.input_kind,
            "hwsim.scales": json.dumps(scales),
            "hwsim.exact": json.dumps(all(e.exact for e in self.exactness)),
        }
        helper.set_model_props(model, meta)
        onnx.checker.check_model(model)
        return QonnxExport(model, raw, self.input_kind, g.batch, dict(self.tensors), list(self.exactness))


def bundle_metadata(b: Bundle) -> dict[str, str]:
    """What plain QONNX cannot hold, for :mod:`hwsim.interop.qonnx_import` to give back the same bundle.

    ``mean``/``std`` (the keys the importer reads from any model; JSON lists) and ``hwsim.bundle``:
    model, rounding, acc_bits, mult_bits, input and output tensor, the quantization record, every
    codes tensor's format and every MAC node's weight format and weight scale. With ``hwsim.scales``
    (every codes tensor's scale) and ``hwsim.names`` (ONNX node as written -> the bundle node and
    tensor it writes).
    """
    record = {
        "model": b.meta.model,
        "rounding": b.meta.rounding,
        "acc_bits": int(b.meta.acc_bits),
        "mult_bits": int(b.meta.mult_bits),
        "input": b.meta.input_tensor,
        "output": b.meta.output,
        "quantization": dict(b.meta.quantization),
        "formats": {k: s.fmt.to_yaml() for k, s in b.tensors.items() if s.fmt is not None},
        "weights": {
            n.name: {"format": n.weight_format.to_yaml(), "scale": [float(v) for v in n.weight_scale]}
            for n in b.nodes
            if isinstance(n, (Conv2dNode, LinearNode))
        },
    }
    return {
        "mean": json.dumps([float(v) for v in b.meta.input_mean]),
        "std": json.dumps([float(v) for v in b.meta.input_std]),
        "hwsim.bundle": json.dumps(plain(record)),
    }


def export_qonnx(
    bundle: Bundle, batch: int = 1, dtype: str = "auto", input_kind: str = "codes"
) -> QonnxExport:
    """``bundle`` as a QONNX model for ``batch`` images (the module docstring has the mapping).

    ``dtype``: ``auto`` (float32 where a static bound proves it exact, float64 elsewhere) or
    ``float32`` (everywhere). ``input_kind``: ``codes`` (a float input holding the input codes) or
    ``image`` (float pixels 0..255 ``[N, C, H, W]``, quantized by the bundle's input recipe).
    """
    if not isinstance(batch, int) or batch < 1:
        raise ExportError(f"batch={batch!r}: expected a positive number of images")
    if dtype not in DTYPES:
        raise ExportError(f"dtype={dtype!r} is not one of {', '.join(DTYPES)}")
    if input_kind not in INPUT_KINDS:
        raise ExportError(f"input={input_kind!r} is not one of {', '.join(INPUT_KINDS)}")
    return _Exporter(bundle, batch, dtype, input_kind).build()


def run_qonnx(
    export: QonnxExport, inputs: np.ndarray, forced: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Run ``export`` with qonnx on ``inputs`` (codes, or pixels ``[N, C, H, W]``): each bundle tensor.

    Without ``forced``, this is ``qonnx.core.onnx_exec.execute_onnx``. With ``forced`` (bundle
    tensor -> values, such as the emulator's), the graph runs node by node through qonnx's
    ``execute_node`` and each of those tensors is replaced by its forced values as soon as it is
    computed (the tensor itself is returned as computed), so every node sees exact inputs and
    its own error is measured alone. Values come back as int64 where they are all integers.
    ``inputs`` must hold ``export.batch`` images.
    """
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_node, execute_onnx
    except ImportError:
        raise ExportError("running the exported model needs the qonnx package; install it") from None
    arr = np.asarray(inputs, dtype=np.float32)
    model = ModelWrapper(export.model)
    if forced is None:
        ctx = execute_onnx(model, {export.input_name: arr}, return_full_exec_context=True)
    else:
        ctx = model.make_empty_exec_context()
        ctx[export.input_name] = arr
        opsets = model.get_opset_imports()
        replace = {export.tensors[t]: v for t, v in forced.items()}
        computed = {}
        for node in model.graph.node:
            execute_node(node, ctx, model.graph, opsets.get(node.domain, QONNX_OPSET))
            out = node.output[0]
            if out in replace:  # the node's own result is returned; later nodes read the forced one
                computed[out] = ctx[out]
                ctx[out] = np.asarray(replace[out]).astype(ctx[out].dtype)
        ctx.update(computed)
    out = {}
    for tensor, name in export.tensors.items():
        v = np.asarray(ctx[name], dtype=np.float64)
        out[tensor] = np.rint(v).astype(np.int64) if np.all(v == np.rint(v)) else v
    return out


@dataclass(frozen=True)
class Agreement:
    """One codes tensor: elements compared, how many equal, the largest |difference| in LSB."""

    tensor: str
    elements: int
    equal: int
    max_diff: float

    @property
    def fraction(self) -> float:
        return self.equal / self.elements if self.elements else 1.0


def compare_with_emulator(
    bundle: Bundle, input_codes: np.ndarray, dtype: str = "auto", isolated: bool = False
) -> list[Agreement]:
    """Export ``bundle`` for ``input_codes`` ``[N, C, H, W]``, run it with qonnx and compare each node output
    that holds codes (requant, avgpool_sum, maxpool) with hwsim.emulator's.

    End to end by default (a difference propagates); ``isolated``: every code tensor is replaced
    by the emulator's (:func:`run_qonnx` with ``forced``), so each row is the error of one layer
    (its MAC and its requantizer) alone.
    """
    from hwsim.emulator import emulate

    codes = np.asarray(input_codes)
    export = export_qonnx(bundle, batch=int(codes.shape[0]), dtype=dtype)
    want = emulate(bundle, codes).tensors
    forced = {t: v for t, v in want.items() if bundle.tensors[t].kind == "codes"} if isolated else None
    got = run_qonnx(export, codes, forced=forced)
    rows = []
    for node in bundle.nodes:
        if bundle.tensors[node.output].kind != "codes":
            continue
        a, e = np.asarray(got[node.output], dtype=np.float64), want[node.output].astype(np.float64)
        diff = np.abs(a - e)
        rows.append(
            Agreement(
                node.output, int(diff.size), int(np.count_nonzero(diff == 0)), float(diff.max(initial=0.0))
            )
        )
    return rows


def _looks_like_model(path: Path) -> bool:
    """A model that ``hwsim export-qonnx`` wrote: its producer name is :data:`PRODUCER`."""
    try:
        import onnx

        return bool(onnx.load(str(path), load_external_data=False).producer_name == PRODUCER)
    except Exception:  # not an ONNX file at all
        return False


QONNX_MODEL = register_kind("QONNX model", directory=False, recognize=_looks_like_model)
"""The output kind of ``hwsim export-qonnx --out`` (hwsim.output)."""


def save_model(export: QonnxExport, path: str | os.PathLike[str] | Output) -> Path:
    """Write the model (its ONNX bytes) to ``path`` whole, as the output policy allows."""
    return publish_file(path, QONNX_MODEL, export.model.SerializeToString())
