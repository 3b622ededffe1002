"""Import: a QONNX model (Brevitas, FINN, hls4ml, ...) -> the integer bundle (docs/qonnx.md).

Place in the flow: ``model.onnx --(hwsim import-qonnx, this module)--> bundle/ --> hwsim``. The
model is loaded with qonnx's ``ModelWrapper`` and cleaned with qonnx's own transformations
(``cleanup_model``: shape inference, constant folding, unique names; ``ChangeBatchSize(1)`` for a
dynamic batch; ``SortGraph``). Then the graph is walked once in topological order, as ``qat
export`` walks a traced PyTorch graph: every value is either *codes* (a quantizer's output, with
a scale and a format), a quantized *weight* (codes of an initializer) or a real-valued *affine
form* ``sum_i unit_i[c] * x_i + offset_i[c]`` of integer tensors; an activation ``Quant`` turns the
form into one ``requant`` node through :func:`hwsim.bundle.lowering.requant_constants`, and the
bundle is built with :class:`hwsim.bundle.BundleBuilder`. The reference (reference.npz) is qonnx's
own ``execute_onnx`` on a reference batch, every quantizer's output divided by its scale.

The optional packages (onnx, qonnx, onnxruntime) are imported only when a model is imported;
without them :func:`import_qonnx` raises a :class:`QonnxImportError` naming ``pip install -e .[onnx]``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.bundle import BundleBuilder, Reference, save_bundle
from hwsim.bundle.graph import compact_codes, normalize_pixels, quantize_pixels
from hwsim.bundle.lowering import DEFAULT_MULT_BITS, CodesValue, RequantTerm, mac_range, requant_constants
from hwsim.errors import UserError
from hwsim.fixed import CodeFormat, FormatError, bits_for_range
from hwsim.interop.qonnx_rounding import FROM_QONNX, mode_of
from hwsim.output import Output

INSTALL_HINT = "pip install -e .[onnx]"
INPUT_TENSOR = "input"
LOGITS_TENSOR = "logits"
DEFAULT_IMAGES = 8
ROUNDING_CHOICES = ("as-exported", "half_up")
SUPPORTED = (
    "supported: Quant/BipolarQuant on weights and activations (zero point 0, per-tensor activation "
    "scale), Conv (zero pads, no dilation), Gemm/MatMul (+ bias Add), BatchNormalization after "
    "Conv/Gemm, Relu, Add of two branches, GlobalAveragePool/ReduceMean over H and W/global "
    "AveragePool (+ Trunc), MaxPool, Flatten/Reshape to [N, C] after the pool, Identity/Dropout "
    "(docs/qonnx.md)"
)


class QonnxImportError(UserError):
    """A QONNX model that cannot be imported as it is; the message names the node, why, and what works."""


# ----------------------------------------------------------------------------------------------
# Values of the walk
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    """The float network input (before its Quant)."""


@dataclass(frozen=True)
class _Weight:
    """Integer codes of an initializer (a weight or a bias Quant) with their scale (broadcastable)."""

    codes: np.ndarray  # int64, the initializer's shape
    scale: np.ndarray  # float64, broadcastable to codes
    fmt: CodeFormat
    node: str

    @property
    def values(self) -> np.ndarray:
        return self.codes.astype(np.float64) * self.scale


@dataclass(frozen=True)
class _Affine:
    terms: tuple[RequantTerm, ...]
    shape: tuple[int, ...]
    relu: bool = False
    mac: str = ""  # the MAC node of the first term (for messages)


@dataclass(frozen=True)
class NodeSummary:
    name: str
    op: str
    detail: str


@dataclass
class _RefSource:
    """How to read one bundle codes tensor from qonnx's execution context."""

    kind: str  # "quant" (output / scale), "sum" (sum of codes of `source`), "logits" (round(out / scale))
    onnx: str
    scale: float
    source: str = ""


@dataclass
class ImportPlan:
    builder: BundleBuilder
    summary: list[NodeSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refs: dict[str, _RefSource] = field(default_factory=dict)
    input_onnx: str = ""
    input_quant: str = ""
    input_shape: tuple[int, ...] = ()
    input_tensor: str = INPUT_TENSOR
    output: str | None = None


# ----------------------------------------------------------------------------------------------
# Models written by hwsim export-qonnx: what plain QONNX does not hold, and the exact integers
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    """The metadata of a model written by ``hwsim export-qonnx`` (hwsim.interop.qonnx_export.bundle_metadata).

    ``names``: ONNX node name as written (kept through qonnx's renaming in the node's ``doc_string``,
    see :func:`load_qonnx`) -> (bundle node, bundle tensor); ``scales``: codes tensor -> scale;
    ``record``: ``hwsim.bundle`` (model, rounding, acc_bits, mult_bits, input/output tensor,
    quantization, formats, weights).
    """

    names: dict[str, tuple[str, str]]
    scales: dict[str, float]
    record: dict[str, Any]
    input_kind: str

    def fmt(self, tensor: str, derived: CodeFormat) -> CodeFormat:
        """The recorded format of ``tensor`` where it has ``derived``'s range (the Quant's), else that."""
        return _same_range(self.record.get("formats", {}).get(tensor), derived)


def _same_range(recorded: Any, derived: CodeFormat) -> CodeFormat:
    if not isinstance(recorded, dict):
        return derived
    try:
        fmt = CodeFormat(
            int(recorded["bits"]),
            bool(recorded["signed"]),
            recorded.get("nominal_bits"),
            recorded.get("lattice", "full"),
        )
    except (KeyError, TypeError, ValueError, FormatError):
        return derived
    return fmt if (fmt.min, fmt.max) == (derived.min, derived.max) else derived


def hwsim_origin(proto: Any) -> _Origin | None:
    """The :class:`_Origin` of a model whose producer is hwsim's exporter, else ``None``."""
    from hwsim.interop.qonnx_export import PRODUCER

    if proto.producer_name != PRODUCER:
        return None
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        names = {k: (str(v["node"]), str(v["tensor"])) for k, v in json.loads(props["hwsim.names"]).items()}
        scales = {str(k): float(v) for k, v in json.loads(props["hwsim.scales"]).items()}
        record = json.loads(props["hwsim.bundle"])
    except (KeyError, TypeError, ValueError):
        return None  # an older or edited file: imported as any QONNX model
    if not isinstance(record, dict):
        return None
    return _Origin(names, scales, record, props.get("hwsim.input", "codes"))


@dataclass(frozen=True)
class ExactRequant:
    """The integers of one exported requant node, read off the graph's constants."""

    terms: tuple[tuple[str, np.ndarray, np.ndarray | None], ...]  # (ONNX tensor read, M_i, b_i or None)
    shift: np.ndarray
    offset: np.ndarray | None
    function: str
    rounding: str
    fmt: tuple[int, bool, bool]  # the output Quant's (bits, signed, narrow)


def _integers_of(value: np.ndarray | None, channels: int, lo: int, hi: int) -> np.ndarray | None:
    """``value`` as ``channels`` int64 integers in ``[lo, hi]`` (per channel or one), else ``None``."""
    if value is None:
        return None
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 1:
        v = np.full(channels, v[0])
    if v.size != channels or not np.all(np.isfinite(v)) or np.any(v != np.rint(v)):
        return None
    if v.size and (v.min() < lo or v.max() > hi):
        return None
    return v.astype(np.int64)


def match_exported_requant(model: Any, last: Any, channels: int) -> ExactRequant | None:
    """The exporter's requant pattern ending at ``last`` (a ``Quant``, or the sign's ``BipolarQuant``).

    ``[Cast] [Add b_i] Mul M_i`` per input, ``[Sum]``, ``[Add o]``, ``Mul 2^-n``, ``[Add 0.5]``, then
    ``Quant`` (scale 1, zero point 0) whose rounding with the addend is the node's
    (``hwsim.interop.qonnx_rounding.TO_QONNX``); ``sign``: that Quant (2 bits) and
    ``BipolarQuant`` (scale 1). Every constant must be an integer of its range (``n`` in 0..62);
    anything else is ``None`` (the generic lowering then applies).
    """

    def const(name: str) -> np.ndarray | None:
        v = model.get_initializer(name)
        return None if v is None else np.asarray(v, dtype=np.float64)

    def producer(tensor: str, op: str) -> Any:
        p = model.find_producer(tensor)
        return p if p is not None and p.op_type == op and p.domain in ("", "onnx") else None

    def with_const(node: Any) -> tuple[str, np.ndarray] | None:
        if node is None or len(node.input) != 2:
            return None
        for i in (0, 1):
            c = const(node.input[1 - i])
            if c is not None and const(node.input[i]) is None:
                return node.input[i], c
        return None

    function = "clamp"
    quant = last
    if last.op_type == "BipolarQuant":
        scale = const(last.input[1]) if len(last.input) > 1 else None
        quant = model.find_producer(last.input[0])
        if scale is None or np.any(scale != 1) or quant is None or quant.op_type != "Quant":
            return None
        function = "sign"
    if quant.op_type != "Quant" or len(quant.input) != 4:
        return None
    scale, zero, bits = (const(quant.input[i]) for i in (1, 2, 3))
    if scale is None or zero is None or bits is None or np.any(scale != 1) or np.any(zero != 0):
        return None
    a = _attrs(quant)
    fmt = (int(bits.reshape(-1)[0]), bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
    mode = str(a.get("rounding_mode", "ROUND")).upper()
    v = quant.input[0]
    addend = 0.0
    half = with_const(producer(v, "Add"))
    if half is not None and half[1].size == 1 and float(half[1].reshape(-1)[0]) == 0.5:
        v, addend = half[0], 0.5
    rounding = mode_of(mode, addend)
    shifted = with_const(producer(v, "Mul"))
    if rounding is None or shifted is None:
        return None
    v, pow2 = shifted
    with np.errstate(divide="ignore"):
        n = _integers_of(-np.log2(pow2), channels, 0, 62) if np.all(pow2 > 0) else None
    if n is None or np.any(np.ldexp(1.0, -n) != np.broadcast_to(pow2.reshape(-1), n.shape)):
        return None
    offset = None
    off = with_const(producer(v, "Add"))
    if off is not None:
        v, offset = off[0], _integers_of(off[1], channels, -(2**62), 2**62)
        if offset is None:
            return None
    summed = producer(v, "Sum")
    outs = list(summed.input) if summed is not None else [v]
    terms = []
    for t in outs:
        mul = with_const(producer(t, "Mul"))
        if mul is None:
            return None
        x, m = mul[0], _integers_of(mul[1], channels, -(2**62), 2**62)
        bias = None
        biased = with_const(producer(x, "Add"))
        if biased is not None:
            x, bias = biased[0], _integers_of(biased[1], channels, -(2**31), 2**31 - 1)
            if bias is None:
                return None
        cast = producer(x, "Cast")
        while cast is not None:
            x = cast.input[0]
            cast = producer(x, "Cast")
        if m is None:
            return None
        terms.append((x, m, bias))
    return ExactRequant(tuple(terms), n, offset, function, rounding, fmt)


# ----------------------------------------------------------------------------------------------
# Loading and cleaning with qonnx
# ----------------------------------------------------------------------------------------------


def _require_packages() -> None:
    missing = []
    for name in ("onnx", "qonnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise QonnxImportError(
            f"the QONNX importer needs the optional packages {', '.join(missing)}, which are not "
            f"installed; install them with `{INSTALL_HINT}`"
        )


def load_qonnx(path: str | Path) -> Any:
    """``path`` as a cleaned qonnx ``ModelWrapper`` at batch size 1 (qonnx's own transformations only)."""
    _require_packages()
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.general import SortGraph
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    path = Path(path)
    if not path.is_file():
        raise QonnxImportError(f"{path}: no such file; expected a QONNX model (.onnx)")
    try:
        proto = onnx.load(str(path))
        if not proto.graph.node:
            raise ValueError("the graph has no nodes")
    except Exception as err:  # protobuf raises DecodeError, onnx OSError/ValueError for external data
        raise QonnxImportError(
            f"{path}: not a readable ONNX model ({type(err).__name__}: {str(err)[:200]}); expected a "
            "QONNX model as written by brevitas.export.export_qonnx or qonnx"
        ) from None
    quant_ops = {"Quant", "BipolarQuant", "Trunc", "IntQuant"}
    if not any(n.op_type in quant_ops for n in proto.graph.node):
        ops = sorted({n.op_type for n in proto.graph.node})
        raise QonnxImportError(
            f"{path}: plain ONNX without QONNX quantizers (ops: {', '.join(ops)}): there are no "
            "Quant/BipolarQuant nodes, so nothing says which integers the network computes; export a "
            "quantized model as QONNX (e.g. brevitas.export.export_qonnx)"
        )
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise QonnxImportError(
            f"{path}: the graph has {len(inputs)} inputs ({[i.name for i in inputs]}); "
            "expected one image input"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise QonnxImportError(
            f"{path}: input '{inputs[0].name}' has rank {len(dims)}; expected an image [N, C, H, W]"
        )
    dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value") or d.dim_value <= 0]
    if any(i > 0 for i in dynamic):
        shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        raise QonnxImportError(
            f"{path}: input '{inputs[0].name}' has dynamic channel/spatial size {shown}; the bundle has "
            "fixed shapes: export the model with a fixed [N, C, H, W] input (N may be dynamic)"
        )
    if hwsim_origin(proto) is not None:
        # qonnx's cleanup renames every node: keep the name as written (hwsim.names' key)
        for n in proto.graph.node:
            n.doc_string = n.name
    try:
        model = ModelWrapper(proto)
        if dynamic or dims[0].dim_value != 1:
            model = model.transform(ChangeBatchSize(1))
        model = cleanup_model(model)
        model = model.transform(SortGraph()).transform(InferShapes())
    except Exception as err:  # qonnx's transformations raise many types on malformed graphs
        raise QonnxImportError(
            f"{path}: qonnx could not clean the graph ({type(err).__name__}: {str(err)[:300]}); "
            "check the model with onnx.checker and qonnx's cleanup"
        ) from None
    if not model.check_all_tensor_shapes_specified():
        raise QonnxImportError(
            f"{path}: some tensor shapes stay unknown after qonnx's shape inference (dynamic shapes); "
            "export the model with fixed shapes"
        )
    return model


# ----------------------------------------------------------------------------------------------
# The graph walk
# ----------------------------------------------------------------------------------------------


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _act_format(bits: int, signed: bool, narrow: bool) -> CodeFormat:
    if signed:
        return CodeFormat(bits, True, lattice="narrow" if narrow and bits >= 2 else "full")
    return CodeFormat(bits, False)


def _qonnx_round(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    from qonnx.custom_op.general.quant import resolve_rounding_mode

    return resolve_rounding_mode(mode)


@dataclass(frozen=True)
class _SignStage:
    """The 2-bit Quant of the exporter's ``sign`` (its BipolarQuant makes the requant)."""

    value: Any
    rounding: str


class _Walker:
    def __init__(
        self,
        model: Any,
        mult_bits: int,
        rounding: str,
        mean: Sequence[float],
        std: Sequence[float],
        origin: _Origin | None = None,
    ) -> None:
        self.model = model
        self.mean, self.std = tuple(mean), tuple(std)
        self.origin = origin
        rec = origin.record if origin is not None else {}
        self.mult_bits = int(rec.get("mult_bits", mult_bits))
        self.rounding = rounding
        self.plan = ImportPlan(
            BundleBuilder(
                mult_bits=self.mult_bits,
                acc_bits=rec.get("acc_bits"),
                rounding=rec.get("rounding", "half_up"),
            )
        )
        self.values: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    # -- helpers ---------------------------------------------------------------------------------

    def fail(self, node: Any, why: str) -> QonnxImportError:
        return QonnxImportError(f"node '{node.name}' ({node.op_type}): {why}; {SUPPORTED}")

    def init(self, name: str) -> np.ndarray | None:
        return None if not name else self.model.get_initializer(name)

    def const(self, node: Any, index: int, what: str) -> np.ndarray:
        if index >= len(node.input) or not node.input[index]:
            raise self.fail(node, f"input {index} ({what}) is missing")
        v = self.init(node.input[index])
        if v is None:
            raise self.fail(
                node,
                f"input {index} ({what}, '{node.input[index]}') is computed at run time; expected a constant",
            )
        return np.asarray(v)

    def value(self, node: Any, index: int) -> Any:
        name = node.input[index]
        if name in self.values:
            return self.values[name]
        v = self.init(name)
        if v is not None:
            return np.asarray(v)
        raise self.fail(node, f"input '{name}' has no value (an unsupported producer)")

    def shape(self, tensor: str) -> tuple[int, ...]:
        s = self.model.get_tensor_shape(tensor)
        return tuple(int(v) for v in s[1:])

    def names(self, node: Any, tensor: str) -> tuple[str, str]:
        """The bundle node and tensor ``node`` writes (as the exporter recorded, else the cleaned names)."""
        if self.origin is not None and node.doc_string in self.origin.names:
            return self.origin.names[node.doc_string]
        return node.name, tensor

    def bundle_scale(self, tensor: str, graph_scale: float) -> float:
        """A codes tensor's scale: as hwsim's exporter recorded (its graph holds codes), else the graph's."""
        if self.origin is not None and tensor in self.origin.scales:
            return self.origin.scales[tensor]
        return graph_scale

    def bundle_format(self, tensor: str, derived: CodeFormat) -> CodeFormat:
        return derived if self.origin is None else self.origin.fmt(tensor, derived)

    def weight_record(self, name: str, w: _Weight, scale: np.ndarray) -> tuple[CodeFormat, np.ndarray]:
        """A MAC node's weight format and scale: as recorded by hwsim's exporter, else the graph's."""
        rec = {} if self.origin is None else self.origin.record.get("weights", {}).get(name, {})
        fmt = _same_range(rec.get("format"), w.fmt)
        recorded = np.asarray(rec.get("scale", []), dtype=np.float64)
        return fmt, recorded if recorded.shape == scale.shape else scale

    # -- the walk --------------------------------------------------------------------------------

    def run(self) -> ImportPlan:
        graph = self.model.graph
        inits = {i.name for i in graph.initializer}
        inp = next(i for i in graph.input if i.name not in inits)
        self.plan.input_onnx = inp.name
        self.values[inp.name] = _Image()
        handlers: dict[str, Callable[[Any], Any]] = {
            "Quant": self._quant,
            "IntQuant": self._quant,
            "BipolarQuant": self._bipolar,
            "Conv": self._conv,
            "Gemm": self._gemm,
            "MatMul": self._matmul,
            "BatchNormalization": self._batchnorm,
            "Relu": self._relu,
            "Add": self._add,
            "GlobalAveragePool": self._pool,
            "ReduceMean": self._pool,
            "AveragePool": self._pool,
            "Trunc": self._trunc,
            "Flatten": self._reshape,
            "Reshape": self._reshape,
            "MaxPool": self._maxpool,
            "Identity": self._identity,
            "Dropout": self._identity,
            "Cast": self._identity,
            "Mul": self._mul,
            "Sum": self._sum,
            "ReduceSum": self._pool,
        }
        for node in graph.node:
            handler = handlers.get(node.op_type)
            if handler is None:
                raise self.fail(node, "this op type has no bundle operation")
            try:
                result = handler(node)
            except FormatError as err:
                raise self.fail(node, str(err)) from None
            self.values[node.output[0]] = result
        outputs = [o.name for o in graph.output]
        if self.origin is not None and len(outputs) > 1:  # the exporter adds every unread bundle tensor
            want = self.origin.record.get("output")
            outputs = [o for o in outputs if isinstance(self.values.get(o), CodesValue)]
            outputs = [o for o in outputs if self.values[o].tensor == want] or outputs
        if len(outputs) != 1:
            raise QonnxImportError(f"the graph has {len(outputs)} outputs; expected one (the logits)")
        out = outputs[0]
        result = self.values.get(out)
        if isinstance(result, CodesValue):
            self.plan.output = result.tensor
        elif isinstance(result, _Affine):
            self.plan.output = self._logits(result, out)
        else:
            raise QonnxImportError(
                f"the graph output '{out}' is not computed from quantized tensors ({type(result).__name__}); "
                "expected the logits of a quantized network"
            )
        if self.origin is not None:
            self._bundle_order()
        return self.plan

    def _bundle_order(self) -> None:
        """Nodes and tensors in the exported bundle's order (``hwsim.names`` lists them so; qonnx's
        SortGraph may order independent branches otherwise)."""
        assert self.origin is not None
        b = self.plan.builder
        nodes = {n: i for i, (n, _) in enumerate(self.origin.names.values())}
        tensors = {t: i for i, (_, t) in enumerate(self.origin.names.values())}
        if {n.name for n in b.nodes} <= set(nodes) and set(b.tensors) <= set(tensors):
            b.nodes.sort(key=lambda n: nodes[n.name])
            b.tensors = dict(sorted(b.tensors.items(), key=lambda kv: tensors[kv[0]]))

    # -- quantizers ------------------------------------------------------------------------------

    def _quant_params(self, node: Any) -> tuple[np.ndarray, int, bool, bool, str]:
        scale = self.const(node, 1, "scale").astype(np.float32)
        zero = self.const(node, 2, "zero point")
        bits_arr = self.const(node, 3, "bit width")
        a = _attrs(node)
        if np.any(zero != 0):
            raise self.fail(
                node,
                f"zero point {zero.reshape(-1)[:4].tolist()} is not 0; the bundle's codes are symmetric "
                "(real value = code * scale); re-export with a zero point of 0 (e.g. a symmetric quantizer)",
            )
        if bits_arr.size != 1 or float(bits_arr.reshape(-1)[0]) != int(bits_arr.reshape(-1)[0]):
            raise self.fail(node, f"bit width {bits_arr.reshape(-1).tolist()} is not one integer")
        bits = int(bits_arr.reshape(-1)[0])
        if not 1 <= bits <= 63:
            raise self.fail(node, f"bit width {bits} is outside 1..63")
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise self.fail(node, "scale is not positive and finite")
        mode = str(a.get("rounding_mode", "ROUND")).upper()
        return scale, bits, bool(a.get("signed", 1)), bool(a.get("narrow", 0)), mode

    def _quant(self, node: Any) -> Any:
        x = self.value(node, 0)
        scale, bits, signed, narrow, mode = self._quant_params(node)
        if isinstance(x, np.ndarray):
            return self._weight(node, x, scale, bits, signed, narrow, mode)
        if isinstance(x, _Image):
            return self._input(node, scale, bits, signed, narrow, mode)
        if scale.size != 1:
            raise self.fail(
                node,
                f"activation scale has shape {list(scale.shape)}; the bundle's activations have one "
                "scale per tensor (quantize activations per tensor)",
            )
        if bits == 1 and signed:  # qonnx's Quant executes a signed 1-bit quantizer as bipolar
            return self._requant(node, x, float(scale.reshape(-1)[0]), None, "sign", "half_up")
        if not signed and narrow:
            raise self.fail(
                node,
                "an unsigned narrow activation ([0, 2^b - 2]) has no bundle lattice; use narrow=0 for "
                "unsigned activations",
            )
        if self.origin is not None and [c.op_type for c in self.consumers.get(node.output[0], [])] == [
            "BipolarQuant"
        ]:
            return _SignStage(x, FROM_QONNX.get(mode, "half_up"))
        if mode not in FROM_QONNX:
            raise self.fail(
                node,
                f"rounding_mode {mode} has no bundle rounding mode; supported: {', '.join(FROM_QONNX)}",
            )
        rounding = "half_up" if self.rounding == "half_up" else FROM_QONNX[mode]
        fmt = _act_format(bits, signed, narrow)
        return self._requant(node, x, float(scale.reshape(-1)[0]), fmt, "clamp", rounding)

    def _weight(
        self, node: Any, w: np.ndarray, scale: np.ndarray, bits: int, signed: bool, narrow: bool, mode: str
    ) -> _Weight:
        """Codes of a quantized initializer, computed as qonnx's Quant does (float32)."""
        y = w.astype(np.float32) / scale
        if bits == 1 and signed:
            codes = np.where(y >= 0, 1, -1).astype(np.int64)
            fmt = CodeFormat(2, True, lattice="binary")
        else:
            fmt = _act_format(bits, signed, narrow) if signed else CodeFormat(bits, False)
            lo = (-(2 ** (bits - 1)) + (1 if narrow else 0)) if signed else 0
            hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - (1 if narrow else 0)
            y = np.clip(y, lo, hi)
            try:
                codes = _qonnx_round(mode)(y).astype(np.int64)
            except ValueError:
                raise self.fail(node, f"rounding_mode {mode} is not one qonnx knows") from None
        return _Weight(codes, scale.astype(np.float64), fmt, node.name)

    def _bipolar(self, node: Any) -> Any:
        x = self.value(node, 0)
        scale = self.const(node, 1, "scale").astype(np.float32)
        if np.any(scale <= 0) or np.any(~np.isfinite(scale)):
            raise self.fail(node, "scale is not positive and finite")
        if isinstance(x, np.ndarray):
            codes = np.where(x.astype(np.float32) / scale >= 0, 1, -1).astype(np.int64)
            return _Weight(codes, scale.astype(np.float64), CodeFormat(2, True, lattice="binary"), node.name)
        if isinstance(x, _Image):
            raise self.fail(
                node, "a bipolar network input has no bundle input format; quantize the input with Quant"
            )
        if scale.size != 1:
            raise self.fail(node, f"activation scale has shape {list(scale.shape)}; expected one scale")
        if isinstance(x, _SignStage):
            return self._requant(node, x.value, float(scale.reshape(-1)[0]), None, "sign", x.rounding)
        return self._requant(node, x, float(scale.reshape(-1)[0]), None, "sign", "half_up")

    def _input(
        self, node: Any, scale: np.ndarray, bits: int, signed: bool, narrow: bool, mode: str
    ) -> CodesValue:
        if self.plan.input_quant:
            raise self.fail(node, "the network input is quantized twice")
        if scale.size != 1:
            raise self.fail(
                node, f"the input quantizer's scale has shape {list(scale.shape)}; expected one scale"
            )
        if bits == 1 or (not signed and narrow):
            raise self.fail(node, "the input quantizer must be a plain signed/unsigned integer quantizer")
        if mode not in ("ROUND", "HALF_EVEN", "HALF_UP"):
            self.plan.notes.append(
                f"input quantizer {node.name} rounds {mode}; the bundle's input recipe rounds half up "
                "(reference.npz holds qonnx's own input codes)"
            )
        _, tensor = self.names(node, INPUT_TENSOR)
        fmt = self.bundle_format(tensor, _act_format(bits, signed, narrow))
        shape = self.shape(node.output[0])
        if len(shape) != 3:
            raise self.fail(node, f"the input has shape {list(shape)}; expected [C, H, W]")
        s = float(scale.reshape(-1)[0])
        self.plan.builder.input(fmt, self.bundle_scale(tensor, s), shape, self.mean, self.std, name=tensor)
        self.plan.input_quant = node.name
        self.plan.input_shape = shape
        self.plan.input_tensor = tensor
        self.plan.refs[tensor] = _RefSource("quant", node.output[0], s)
        self.plan.summary.append(NodeSummary(tensor, "input", f"{fmt.label} scale {s:.6g} from {node.name}"))
        return CodesValue(tensor, s, fmt, shape)

    def _requant(
        self, node: Any, x: Any, scale: float, fmt: CodeFormat | None, function: str, rounding: str
    ) -> CodesValue:
        if isinstance(x, CodesValue):
            terms, relu = x.as_terms(), False
        elif isinstance(x, _Affine):
            terms, relu = x.terms, x.relu
        else:
            raise self.fail(node, f"its input is {type(x).__name__.strip('_')}, not an integer tensor")
        if function == "sign":
            if relu:
                raise self.fail(node, "a Relu before a bipolar quantizer makes every output +1")
            fmt = CodeFormat(2, True, lattice="binary")
        elif relu and fmt is not None and fmt.signed:
            # Relu then a signed b-bit quantizer: codes in [0, 2^(b-1) - 1], the unsigned (b-1)-bit format
            if fmt.bits < 2:
                raise self.fail(node, "a Relu before a 1-bit signed quantizer")
            fmt = CodeFormat(fmt.bits - 1, False)
        assert fmt is not None
        name, tensor = self.names(node, node.name)
        fmt = self.bundle_format(tensor, fmt)
        exact = self._exact(node, terms, function, self.shape(node.output[0])[0])
        if exact is not None:
            sources = [(t.tensor, m, b) for t, (_, m, b) in zip(terms, exact.terms, strict=True)]
            shift, offset, how = exact.shift, exact.offset, "the exported integers"
            if self.rounding != "half_up":
                rounding = exact.rounding
        else:
            consts = requant_constants(terms, scale, function, self.mult_bits)
            sources = [(t.tensor, consts.multipliers[i], consts.biases[i]) for i, t in enumerate(terms)]
            unit = "LSB" if function == "clamp" else "accumulator steps"
            shift, offset = consts.shift, consts.offset
            how = f"constants off by <= {consts.max_error:.3g} {unit}"
        real_scale = self.bundle_scale(tensor, scale)
        self.plan.builder.requant(
            name, sources, shift, fmt, real_scale, function, offset=offset, rounding=rounding, output=tensor
        )
        self.plan.refs[tensor] = _RefSource("quant", node.output[0], scale)
        lo, hi = int(np.min(shift)), int(np.max(shift))
        self.plan.summary.append(
            NodeSummary(
                name,
                "requant",
                f"{function} {rounding} to {fmt.label} (scale {real_scale:.6g}) from "
                f"{' + '.join(t.tensor for t in terms)}; shift {lo}..{hi}; {how}",
            )
        )
        shape = self.plan.builder.shape(tensor)
        return CodesValue(tensor, scale, fmt, shape)

    def _exact(
        self, node: Any, terms: Sequence[RequantTerm], function: str, channels: int
    ) -> ExactRequant | None:
        """hwsim's exporter's integers for this requant (:func:`match_exported_requant`), when they
        read exactly the tensors of the walk's affine form; else ``None``."""
        if self.origin is None:
            return None
        exact = match_exported_requant(self.model, node, channels)
        if exact is None or exact.function != function or len(exact.terms) != len(terms):
            return None
        for t, (onnx_tensor, _, bias) in zip(terms, exact.terms, strict=True):
            v = self.values.get(onnx_tensor)
            read = (
                v.tensor
                if isinstance(v, CodesValue)
                else v.terms[0].tensor
                if isinstance(v, _Affine)
                else None
            )
            if read != t.tensor or (bias is not None and not t.has_bias):
                return None
        return exact

    def _logits(self, x: _Affine, onnx_out: str) -> str:
        """The float output of a final Gemm/MatMul (+ bias): int32 codes at the finest accumulator step."""
        if not all(t.has_bias for t in x.terms[:1]):
            raise QonnxImportError(
                f"the graph output '{onnx_out}' is a float sum without a MAC layer; expected logits"
            )
        units = np.concatenate([t.unit for t in x.terms if t.has_bias])
        scale = float(np.min(np.abs(units[units != 0]))) if np.any(units != 0) else 1.0
        fmt = CodeFormat(31, False) if x.relu else CodeFormat(32, True)
        consts = requant_constants(x.terms, scale, "clamp", self.mult_bits)
        sources = [(t.tensor, consts.multipliers[i], consts.biases[i]) for i, t in enumerate(x.terms)]
        rounding = "half_up" if self.rounding == "half_up" else "half_even"
        self.plan.builder.requant(
            LOGITS_TENSOR,
            sources,
            consts.shift,
            fmt,
            scale,
            "clamp",
            offset=consts.offset,
            rounding=rounding,
            output=LOGITS_TENSOR,
        )
        self.plan.refs[LOGITS_TENSOR] = _RefSource("logits", onnx_out, scale)
        per_channel = bool(np.ptp(units) > 0)
        self.plan.summary.append(
            NodeSummary(
                LOGITS_TENSOR,
                "requant",
                f"integer logits {fmt.label} at the accumulator step {scale:.6g} of {x.mac}"
                + (" (the finest of its per-channel steps)" if per_channel else "")
                + f"; constants off by <= {consts.max_error:.3g} LSB",
            )
        )
        return LOGITS_TENSOR

    # -- MAC layers ------------------------------------------------------------------------------

    def _mac_input(self, node: Any, x: Any, rank: int) -> CodesValue:
        if not isinstance(x, CodesValue):
            raise self.fail(
                node,
                f"its input is {type(x).__name__.strip('_')} (not quantized); "
                "put an activation Quant before it",
            )
        if len(x.shape) != rank:
            raise self.fail(
                node,
                f"input shape {list(x.shape)} is not {'[C, H, W]' if rank == 3 else '[F] (after the pool)'}",
            )
        return x

    def _mac_weight(self, node: Any, index: int) -> _Weight:
        w = self.value(node, index)
        if not isinstance(w, _Weight):
            raise self.fail(
                node,
                "its weight is a float tensor, not the output of a Quant/BipolarQuant on an initializer; "
                "quantize the weights",
            )
        return w

    @staticmethod
    def _channel_scale(w: _Weight, axis: int) -> np.ndarray | None:
        full = np.broadcast_to(w.scale, w.codes.shape)
        per = np.moveaxis(full, axis, 0).reshape(w.codes.shape[axis], -1)
        if not np.all(per == per[:, :1]):
            return None
        return per[:, 0].astype(np.float64)

    def _bias(self, node: Any, index: int, channels: int) -> np.ndarray:
        if index >= len(node.input) or not node.input[index]:
            return np.zeros(channels)
        b = self.value(node, index)
        values = b.values if isinstance(b, _Weight) else np.asarray(b, dtype=np.float64)
        if not isinstance(values, np.ndarray) or values.size not in (1, channels):
            raise self.fail(node, f"bias of shape {list(np.shape(values))}; expected [{channels}]")
        return np.broadcast_to(values.reshape(-1).astype(np.float64), (channels,)).copy()

    def _mac_term(
        self, acc: str, x: CodesValue, codes: np.ndarray, w_scale: np.ndarray, bias: np.ndarray
    ) -> RequantTerm:
        lo, hi = mac_range(codes, x.fmt)
        bound = tuple(max(abs(int(a)), abs(int(b))) for a, b in zip(lo, hi, strict=True))
        return RequantTerm(acc, x.scale * w_scale, bias, bound, True)

    def _summary_mac(self, name: str, op: str, w: _Weight, x: CodesValue, codes: np.ndarray) -> None:
        lo, hi = mac_range(codes, x.fmt)
        acc_bits = bits_for_range(min(int(lo.min()), 0), max(int(hi.max()), 0), True)
        self.plan.summary.append(
            NodeSummary(
                name,
                op,
                f"weights {w.fmt.label} ({w.node}), input {x.tensor}, worst-case accumulator {acc_bits} bits",
            )
        )

    def _conv(self, node: Any) -> _Affine:
        x = self._mac_input(node, self.value(node, 0), 3)
        w = self._mac_weight(node, 1)
        a = _attrs(node)
        codes = w.codes
        if codes.ndim != 4:
            raise self.fail(node, f"weight of rank {codes.ndim}; expected a 2-D convolution")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise self.fail(node, f"auto_pad={a['auto_pad']}; expected explicit pads")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise self.fail(node, f"asymmetric pads {pads}; the bundle's conv2d pads each side equally")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, f"dilations {a['dilations']}; the bundle's conv2d has no dilation")
        w_scale = self._channel_scale(w, 0)
        if w_scale is None:
            raise self.fail(node, "the weight scale varies within an output channel")
        groups = int(a.get("group", 1))
        strides = tuple(int(v) for v in a.get("strides", [1, 1]))
        name, acc = self.names(node, f"{node.name}.acc")
        w_fmt, w_real = self.weight_record(name, w, w_scale)
        self.plan.builder.conv2d(
            name, x.tensor, codes, w_fmt, w_real, strides, (pads[0], pads[1]), groups, output=acc
        )
        bias = self._bias(node, 2, codes.shape[0])
        self._summary_mac(name, "conv2d", w, x, codes)
        term = self._mac_term(acc, x, codes, w_scale, bias)
        return _Affine((term,), self.shape(node.output[0]), mac=name)

    def _linear(self, node: Any, x: CodesValue, w: _Weight, transposed: bool, bias_index: int) -> _Affine:
        codes = w.codes
        if codes.ndim != 2:
            raise self.fail(node, f"weight of rank {codes.ndim}; expected [N, F]")
        axis = 1 if transposed else 0
        w_scale = self._channel_scale(w, axis)
        if w_scale is None:
            raise self.fail(node, "the weight scale varies within an output channel")
        codes = codes.T if transposed else codes
        name, acc = self.names(node, f"{node.name}.acc")
        w_fmt, w_real = self.weight_record(name, w, w_scale)
        self.plan.builder.linear(name, x.tensor, np.ascontiguousarray(codes), w_fmt, w_real, output=acc)
        bias = self._bias(node, bias_index, codes.shape[0]) if bias_index >= 0 else np.zeros(codes.shape[0])
        self._summary_mac(name, "linear", w, x, codes)
        term = self._mac_term(acc, x, codes, w_scale, bias)
        return _Affine((term,), (int(codes.shape[0]),), mac=name)

    def _gemm(self, node: Any) -> _Affine:
        a = _attrs(node)
        if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
            raise self.fail(node, "transA, alpha or beta is not the default; expected Y = A B^T + C")
        x = self._mac_input(node, self.value(node, 0), 1)
        return self._linear(node, x, self._mac_weight(node, 1), not a.get("transB", 0), 2)

    def _matmul(self, node: Any) -> _Affine:
        x = self._mac_input(node, self.value(node, 0), 1)
        return self._linear(node, x, self._mac_weight(node, 1), True, -1)

    # -- affine forms ----------------------------------------------------------------------------

    def _batchnorm(self, node: Any) -> _Affine:
        x = self.value(node, 0)
        if not isinstance(x, _Affine) or x.relu or not any(t.has_bias for t in x.terms):
            raise self.fail(
                node,
                "BatchNormalization does not follow a Conv/Gemm (it reads "
                f"{type(x).__name__.strip('_')}); a float BN after a quantizer has no integer form: fold it "
                "into the layer before, or follow the Conv/Gemm it belongs to",
            )
        gamma, beta, mean, var = (
            self.const(node, i, k).astype(np.float64)
            for i, k in enumerate(("scale", "bias", "mean", "var"), start=1)
        )
        eps = float(_attrs(node).get("epsilon", 1e-5))
        g = gamma / np.sqrt(var + eps)
        terms = [RequantTerm(t.tensor, t.unit * g, t.offset * g, t.bound, t.has_bias) for t in x.terms]
        first = next(i for i, t in enumerate(terms) if t.has_bias)
        t = terms[first]
        terms[first] = RequantTerm(t.tensor, t.unit, t.offset + beta - mean * g, t.bound, True)
        return _Affine(tuple(terms), x.shape, mac=x.mac)

    def _relu(self, node: Any) -> Any:
        x = self.value(node, 0)
        if isinstance(x, _Affine):
            return _Affine(x.terms, x.shape, True, x.mac)
        if isinstance(x, CodesValue):
            return x if not x.fmt.signed else self._relu_codes(node, x)
        raise self.fail(node, f"its input is {type(x).__name__.strip('_')}")

    def _relu_codes(self, node: Any, x: CodesValue) -> CodesValue:
        if x.fmt.bits < 2:
            raise self.fail(node, "a Relu of 1-bit codes")
        fmt = CodeFormat(x.fmt.bits - 1, False)
        consts = requant_constants(x.as_terms(), x.scale, "clamp", self.mult_bits)
        self.plan.builder.requant(
            node.name,
            [(x.tensor, consts.multipliers[0], None)],
            consts.shift,
            fmt,
            x.scale,
            "clamp",
            offset=consts.offset,
            rounding="half_up",
            output=node.name,
        )
        self.plan.refs[node.name] = _RefSource("quant", node.output[0], x.scale)
        self.plan.summary.append(NodeSummary(node.name, "requant", f"Relu of {x.tensor} to {fmt.label}"))
        return CodesValue(node.name, x.scale, fmt, x.shape)

    def _add(self, node: Any) -> _Affine:
        a, b = self.value(node, 0), self.value(node, 1)
        if isinstance(a, (np.ndarray, _Weight)):
            a, b = b, a
        if isinstance(b, (np.ndarray, _Weight)):  # a constant: the bias of a MatMul/Conv
            if not isinstance(a, _Affine) or a.relu or not a.terms[0].has_bias:
                raise self.fail(node, "a constant is added to something other than a Conv/Gemm/MatMul output")
            c = a.shape[0]
            values = b.values if isinstance(b, _Weight) else b.astype(np.float64)
            per = (
                np.broadcast_to(values, (1, *a.shape)).reshape(c, -1)
                if values.ndim
                else np.full((c, 1), values)
            )
            if not np.all(per == per[:, :1]):
                raise self.fail(
                    node, "the added constant varies within a channel; expected a per-channel bias"
                )
            t = a.terms[0]
            first = RequantTerm(t.tensor, t.unit, t.offset + per[:, 0], t.bound, True)
            return _Affine((first, *a.terms[1:]), a.shape, mac=a.mac)
        return self._combine(node, (a, b))

    def _sum(self, node: Any) -> _Affine:
        return self._combine(node, tuple(self.value(node, i) for i in range(len(node.input))))

    def _mul(self, node: Any) -> _Affine:
        a, b = self.value(node, 0), self.value(node, 1)
        if isinstance(a, np.ndarray):
            a, b = b, a
        if isinstance(a, CodesValue):
            a = _Affine(a.as_terms(), a.shape)
        if not isinstance(b, np.ndarray) or not isinstance(a, _Affine) or a.relu:
            raise self.fail(node, "only a Mul of an integer tensor's affine form by a per-channel constant")
        c = a.shape[0]
        values = b.astype(np.float64)
        per = (
            np.broadcast_to(values, (1, *a.shape)).reshape(c, -1) if values.ndim else np.full((c, 1), values)
        )
        if not np.all(per == per[:, :1]):
            raise self.fail(node, "the constant factor varies within a channel; expected one per channel")
        k = per[:, 0]
        terms = tuple(RequantTerm(t.tensor, t.unit * k, t.offset * k, t.bound, t.has_bias) for t in a.terms)
        return _Affine(terms, a.shape, mac=a.mac)

    def _combine(self, node: Any, values: Sequence[Any]) -> _Affine:
        terms: list[RequantTerm] = []
        mac = ""
        for v in values:
            if isinstance(v, CodesValue):
                terms.extend(v.as_terms())
            elif isinstance(v, _Affine) and not v.relu:
                terms.extend(v.terms)
                mac = mac or v.mac
            else:
                raise self.fail(
                    node,
                    f"cannot add {type(v).__name__.strip('_')} values (a Relu inside a residual branch "
                    "must be quantized before the Add)",
                )
        if len({t.tensor for t in terms}) != len(terms):
            raise self.fail(node, "the same tensor is added twice")
        return _Affine(tuple(terms), self.shape(node.output[0]), mac=mac)

    # -- pools and reshapes ----------------------------------------------------------------------

    def _pool(self, node: Any) -> CodesValue:
        x = self.value(node, 0)
        if not isinstance(x, CodesValue) or len(x.shape) != 3:
            raise self.fail(node, "a pool needs quantized [C, H, W] codes as input; quantize before pooling")
        c, h, w = x.shape
        a = _attrs(node)
        if node.op_type == "ReduceMean":
            axes = a.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = self.const(node, 1, "axes").reshape(-1).tolist()
            axes = sorted(int(v) % 4 for v in (axes or []))
            if axes != [2, 3]:
                raise self.fail(
                    node,
                    f"ReduceMean over axes {axes}; only the mean over H and W ([2, 3]) maps to avgpool_sum",
                )
        elif node.op_type == "AveragePool":
            kernel = tuple(int(v) for v in a.get("kernel_shape", []))
            if kernel != (h, w) or any(p != 0 for p in a.get("pads", [0, 0, 0, 0])):
                raise self.fail(
                    node,
                    f"AveragePool with kernel {list(kernel)} on a {h}x{w} map; only a global average "
                    "pool (kernel = the whole map, no pads) maps to avgpool_sum",
                )
        elif node.op_type == "ReduceSum":  # hwsim's exporter: the integer sum itself
            axes = sorted(int(v) % 4 for v in a.get("axes", []))
            if axes != [2, 3] or a.get("keepdims", 1):
                raise self.fail(node, f"ReduceSum over axes {axes}; only the sum over H and W (keepdims 0)")
        name, tensor = self.names(node, node.name)
        self.plan.builder.avgpool_sum(name, x.tensor, output=tensor)
        spec = self.plan.builder.spec(tensor)
        assert spec.fmt is not None and spec.scale is not None
        graph_scale = x.scale if node.op_type == "ReduceSum" else x.scale / (h * w)
        self.plan.refs[tensor] = _RefSource("sum", node.output[0], graph_scale, source=x.tensor)
        self.plan.summary.append(
            NodeSummary(
                name,
                "avgpool_sum",
                f"sum over {h}x{w} to {spec.fmt.label}; 1/{h * w} folded into the next multiplier",
            )
        )
        return CodesValue(tensor, graph_scale, spec.fmt, (c,))

    def _trunc(self, node: Any) -> CodesValue:
        x = self.value(node, 0)
        if len(node.input) < 6:
            raise self.fail(node, "a Trunc without an output scale (the old 4-input Trunc) is not supported")
        if not isinstance(x, CodesValue):
            raise self.fail(node, "Trunc needs quantized codes as input (e.g. the output of a global pool)")
        s_t = float(self.const(node, 1, "scale").astype(np.float32).reshape(-1)[0])
        zero = self.const(node, 2, "zero point")
        s_out = float(self.const(node, 4, "output scale").astype(np.float32).reshape(-1)[0])
        out_bits = int(self.const(node, 5, "output bit width").reshape(-1)[0])
        if np.any(zero != 0):
            raise self.fail(node, "zero point is not 0")
        a = _attrs(node)
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        mode = str(a.get("rounding_mode", "FLOOR")).upper()
        if mode not in FROM_QONNX:
            raise self.fail(node, f"rounding_mode {mode}; supported: {', '.join(FROM_QONNX)}")
        ratio_in = x.scale / s_t
        r = round(ratio_in)
        if r < 1 or abs(ratio_in - r) > 1e-6 * r:
            raise self.fail(
                node,
                f"its input scale {s_t:.6g} is not the scale {x.scale:.6g} of the codes it reads (or a "
                "whole fraction of it)",
            )
        if not signed and narrow:
            raise self.fail(node, "an unsigned narrow output has no bundle lattice")
        trunc = 2.0 ** round(math.log2(s_out / s_t))
        fmt = _act_format(out_bits, signed, narrow)
        rounding = FROM_QONNX[mode]
        name = node.name
        # codes_out = round_mode(r * codes / trunc): the real multiplier, exactly (powers of two and r)
        terms = x.as_terms()
        const_scale = x.scale * trunc / r
        consts = requant_constants(terms, const_scale, "clamp", self.mult_bits)
        self.plan.builder.requant(
            name,
            [(x.tensor, consts.multipliers[0], None)],
            consts.shift,
            fmt,
            s_out,
            "clamp",
            offset=consts.offset,
            rounding=rounding,
            output=name,
        )
        self.plan.refs[name] = _RefSource("quant", node.output[0], s_out)
        self.plan.summary.append(
            NodeSummary(
                name,
                "requant",
                f"Trunc {rounding} of {x.tensor} by {trunc:g} to {fmt.label} (scale {s_out:.6g})",
            )
        )
        return CodesValue(name, s_out, fmt, x.shape)

    def _reshape(self, node: Any) -> Any:
        x = self.value(node, 0)
        out_shape = self.shape(node.output[0])
        if (
            isinstance(x, CodesValue)
            and len(x.shape) == 1
            and math.prod(out_shape) == x.shape[0]
            and len(out_shape) == 1
        ):
            return x
        raise self.fail(
            node,
            f"a reshape to {list(out_shape)} is only supported as the flatten to [N, C] after the "
            "global pool",
        )

    def _maxpool(self, node: Any) -> CodesValue:
        if not hasattr(BundleBuilder, "maxpool"):
            raise self.fail(node, "this version of the bundle has no maxpool op")
        x = self.value(node, 0)
        if not isinstance(x, CodesValue) or len(x.shape) != 3:
            raise self.fail(node, "MaxPool needs quantized [C, H, W] codes as input; quantize before it")
        a = _attrs(node)
        kernel = tuple(int(v) for v in a.get("kernel_shape", []))
        strides = tuple(int(v) for v in a.get("strides", kernel))
        pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
        if len(kernel) != 2 or pads[:2] != pads[2:]:
            raise self.fail(
                node, f"kernel {list(kernel)}, pads {pads}; expected a 2-D window with symmetric pads"
            )
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.fail(node, "ceil_mode or dilations are not the default")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or len(node.output) > 1 and node.output[1]:
            raise self.fail(node, "auto_pad or the indices output are not supported")
        name, tensor = self.names(node, node.name)
        out = self.plan.builder.maxpool(name, x.tensor, kernel, strides, (pads[0], pads[1]), output=tensor)
        self.plan.refs[out] = _RefSource("quant", node.output[0], x.scale)
        self.plan.summary.append(
            NodeSummary(name, "maxpool", f"{kernel[0]}x{kernel[1]} stride {list(strides)} of {x.tensor}")
        )
        return CodesValue(out, x.scale, x.fmt, self.plan.builder.shape(out))

    def _identity(self, node: Any) -> Any:
        return self.value(node, 0)


# ----------------------------------------------------------------------------------------------
# The reference: qonnx's own execution
# ----------------------------------------------------------------------------------------------


def _at_batch(model: Any, batch: int) -> Any:
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    return copy.deepcopy(model).transform(ChangeBatchSize(batch)).transform(InferShapes())


def run_qonnx(model: Any, x: np.ndarray, full: bool = True) -> dict[str, np.ndarray]:
    """qonnx's ``execute_onnx`` of ``model`` on the normalized float batch ``x [N, C, H, W]``."""
    from qonnx.core.onnx_exec import execute_onnx

    m = (
        model
        if int(model.get_tensor_shape(model.graph.input[0].name)[0]) == len(x)
        else _at_batch(model, len(x))
    )
    try:
        return execute_onnx(m, {m.graph.input[0].name: x.astype(np.float32)}, return_full_exec_context=full)
    except UserError:
        raise
    except Exception as err:  # onnxruntime and qonnx raise many types
        raise QonnxImportError(
            f"qonnx could not execute the model ({type(err).__name__}: {str(err)[:300]})"
        ) from None


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 HWC images -> the float32 NCHW input, by the bundle's recipe (``(x/255 - mean) / std``)."""
    return np.ascontiguousarray(normalize_pixels(images, mean, std).transpose(0, 3, 1, 2))


def _integers(values: np.ndarray, scale: float, what: str) -> np.ndarray:
    c = values.astype(np.float64) / np.float64(np.float32(scale))
    r = np.round(c)
    if c.size and np.max(np.abs(c - r)) > 1e-3:
        raise QonnxImportError(
            f"{what}: qonnx's output divided by its scale {scale:.6g} is not an integer "
            f"(off by up to {np.max(np.abs(c - r)):.3g}); the quantizer does not produce codes * scale"
        )
    return r.astype(np.int64)


def capture_reference(
    model: Any, plan: ImportPlan, x: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Input codes, ``codes/<t>`` and ``float/<t>`` of every bundle codes tensor, from qonnx's execution."""
    ctx = run_qonnx(model, x)
    n = len(x)
    b = plan.builder
    codes: dict[str, np.ndarray] = {}
    floats: dict[str, np.ndarray] = {}
    for tensor, src in plan.refs.items():
        shape = (n, *b.shape(tensor))
        out = np.asarray(ctx[src.onnx]).reshape(shape)
        fmt = b.spec(tensor).fmt
        assert fmt is not None
        if src.kind == "quant":
            c = _integers(out, src.scale, f"tensor '{src.onnx}' ({tensor})")
        elif src.kind == "sum":
            c = codes[src.source].astype(np.int64).sum(axis=(2, 3))
        else:
            c = np.clip(np.round(out.astype(np.float64) / np.float64(src.scale)), fmt.min, fmt.max).astype(
                np.int64
            )
        if src.kind != "logits" and c.size and (c.min() < fmt.min or c.max() > fmt.max):
            raise QonnxImportError(
                f"tensor '{src.onnx}' ({tensor}): qonnx's codes span [{c.min()}, {c.max()}], outside the "
                f"bundle format {fmt.label}"
            )
        codes[tensor] = c
        floats[tensor] = out.astype(np.float32)
    input_codes = codes.pop(plan.input_tensor)
    floats.pop(plan.input_tensor)
    return compact_codes(input_codes), {t: compact_codes(v) for t, v in codes.items()}, floats


def predict(
    model: Any, images: np.ndarray, feed: Callable[[np.ndarray], np.ndarray], batch_size: int, output: str
) -> np.ndarray:
    """qonnx's top-1 (argmax of the output, first index on ties) on uint8 HWC ``images``, in batches."""
    out = []
    cache: dict[int, Any] = {}
    name = output
    for start in range(0, len(images), batch_size):
        chunk = feed(images[start : start + batch_size])
        if len(chunk) not in cache:
            cache[len(chunk)] = _at_batch(model, len(chunk))
        result = run_qonnx(cache[len(chunk)], chunk, full=False)[name]
        out.append(np.argmax(result.reshape(len(chunk), -1), axis=1))
    return np.concatenate(out).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# The import
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    path: Path
    model: str
    acc_bits: int
    mult_bits: int
    nodes: tuple[NodeSummary, ...]
    notes: tuple[str, ...]
    reference_images: int
    source: str
    eval_images: int
    eval_top1: float | None
    seconds: float

    def lines(self) -> list[str]:
        out = [
            f"wrote {self.path}: {self.model}, {len(self.nodes)} nodes, acc_bits {self.acc_bits} "
            f"(worst case over all layers), mult_bits {self.mult_bits}"
        ]
        width = max(len(n.name) for n in self.nodes)
        out += [f"  {n.name:<{width}}  {n.op:<11}  {n.detail}" for n in self.nodes]
        out += [f"note: {n}" for n in self.notes]
        ref = f"reference: {self.reference_images} images ({self.source}) from qonnx execute_onnx"
        if self.eval_top1 is not None:
            ref += f"; qonnx top-1 {self.eval_top1:.2f}% on {self.eval_images} test images"
        out.append(ref)
        out.append(f"imported in {self.seconds:.1f} s")
        return out


def _parse_floats(value: Any, what: str) -> tuple[float, ...]:
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = (
                json.loads(text)
                if text.startswith("[")
                else [float(v) for v in text.replace(",", " ").split()]
            )
        except ValueError:
            raise QonnxImportError(f"{what} {value!r}: expected numbers, e.g. 0.49,0.48,0.45") from None
        value = parsed
    try:
        out = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    except (TypeError, ValueError):
        raise QonnxImportError(f"{what} {value!r}: expected numbers") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise QonnxImportError(f"{what} {value!r}: expected finite numbers")
    return out


def _normalization(
    model: Any, channels: int, mean: Sequence[float] | None, std: Sequence[float] | None, notes: list[str]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    props = {p.key: p.value for p in model.model.metadata_props}
    found = []
    values = []
    for what, given in (("mean", mean), ("std", std)):
        if given is not None:
            v = _parse_floats(list(given), f"--{what}")
        elif what in props:
            v = _parse_floats(props[what], f"metadata_props '{what}'")
            found.append(what)
        else:
            v = (0.0,) if what == "mean" else (1.0,)
        if len(v) == 1:
            v = v * channels
        if len(v) != channels:
            raise QonnxImportError(f"{what} {list(v)}: {len(v)} values for {channels} input channels")
        values.append(v)
    m, s = values
    if any(v <= 0 for v in s):
        raise QonnxImportError(f"std {list(s)}: expected positive values")
    if mean is None and std is None and not found:
        notes.append(
            "the model records no input normalization (metadata_props 'mean'/'std') and none was given: "
            "mean 0, std 1, i.e. the input is pixel / 255; pass --mean/--std if the model was "
            "trained otherwise"
        )
    elif found:
        notes.append(f"input normalization from the model's metadata_props: {', '.join(found)}")
    return m, s


def synthetic_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Deterministic uint8 HWC images (smooth random patterns) for a reference without a dataset."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, -(-h // 4), -(-w // 4), c))
    img = np.repeat(np.repeat(low, 4, axis=1), 4, axis=2)[:, :h, :w, :]
    noise = rng.integers(-24, 25, size=img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _feed(
    plan: ImportPlan, origin: _Origin | None, mean: Sequence[float], std: Sequence[float]
) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 HWC images -> the model's float input: normalized images, or for a model written by hwsim's
    exporter its input kind (input codes by the bundle's recipe, or the pixels themselves)."""
    if origin is None:
        return lambda images: normalize(images, mean, std)
    if origin.input_kind == "image":
        return lambda images: np.ascontiguousarray(images.astype(np.float32).transpose(0, 3, 1, 2))
    spec = plan.builder.spec(plan.input_tensor)
    assert spec.fmt is not None and spec.scale is not None
    fmt, scale = spec.fmt, spec.scale
    return lambda images: quantize_pixels(images, fmt, scale, mean, std).astype(np.float32)


def import_qonnx(
    model_path: str | Path,
    out: str | Path | Output,
    *,
    data: str | Path | None = None,
    images: int = DEFAULT_IMAGES,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    rounding: str = "as-exported",
    mult_bits: int = DEFAULT_MULT_BITS,
    batch_size: int = 256,
    evaluate: bool = True,
) -> ImportReport:
    """Import the QONNX model at ``model_path`` as a bundle at ``out`` (atomically); see the module doc."""
    start = time.perf_counter()
    if rounding not in ROUNDING_CHOICES:
        raise QonnxImportError(f"--rounding {rounding!r}: expected one of {', '.join(ROUNDING_CHOICES)}")
    if isinstance(mult_bits, bool) or not isinstance(mult_bits, int) or not 2 <= mult_bits <= 63:
        raise QonnxImportError(f"--mult-bits {mult_bits!r}: expected 2..63")
    if images < 1:
        raise QonnxImportError(f"--images {images}: expected at least 1")
    if batch_size < 1:
        raise QonnxImportError(f"--batch-size {batch_size}: expected at least 1")
    model = load_qonnx(model_path)
    origin = hwsim_origin(model.model)
    _n, c, h, w = (int(v) for v in model.get_tensor_shape(model.graph.input[0].name))
    notes: list[str] = []
    m, s = _normalization(model, c, mean, std, notes)
    plan = _Walker(model, mult_bits, rounding, m, s, origin).run()
    plan.notes[:0] = notes
    if not plan.input_quant:
        raise QonnxImportError(
            "the network input is not quantized by a Quant node; the bundle starts from input codes"
        )
    assert plan.output is not None
    if rounding == "half_up":
        plan.notes.append(
            "--rounding half_up: every activation requantizer rounds ties up (FINN's MultiThreshold), "
            "the reference (qonnx) rounds as exported; ties may differ by 1 LSB"
        )

    eval_images = eval_labels = None
    if data is not None:
        from hwsim.cifar10 import load_cifar10

        pixels, labels = load_cifar10(Path(data), "test")
        if tuple(pixels.shape[1:]) != (h, w, c):
            raise QonnxImportError(
                f"--data {data}: images of shape {list(pixels.shape[1:])}, "
                f"the model takes [{h}, {w}, {c}] (HWC)"
            )
        if images > len(pixels):
            raise QonnxImportError(f"--images {images}: {data} holds only {len(pixels)} test images")
        ref_images, ref_labels, source = pixels[:images], labels[:images].astype(np.int64), "cifar10-test"
        eval_images, eval_labels = pixels, labels.astype(np.int64)
    else:
        ref_images = synthetic_images(images, (c, h, w))
        ref_labels, source = np.full(images, -1, dtype=np.int64), "synthetic"

    feed = _feed(plan, origin, m, s)
    input_codes, codes, floats = capture_reference(model, plan, feed(ref_images))
    eval_pred = eval_top1 = None
    if evaluate and eval_images is not None and eval_labels is not None:
        eval_pred = predict(model, eval_images, feed, batch_size, plan.refs[plan.output].onnx)
        eval_top1 = 100.0 * float(np.mean(eval_pred == eval_labels))

    b = plan.builder
    if origin is not None:  # the exported bundle's own record; where it came from is in `reference`
        b.model = str(origin.record.get("model", Path(model_path).stem))
        b.quantization = dict(origin.record.get("quantization", {}))
    else:
        b.model = Path(model_path).stem
        b.quantization = {"source": "qonnx", "file": Path(model_path).name, "rounding": rounding}
    info: dict[str, Any] = {"source": source, "producer": "qonnx execute_onnx"}
    if origin is not None:
        info["file"] = Path(model_path).name
    if eval_pred is not None:
        info["eval_images"] = len(eval_pred)
    b.reference(
        Reference(
            input_codes,
            ref_labels,
            codes,
            floats,
            eval_pred,
            None if eval_pred is None else eval_labels,
            "cpu",
        ),
        info,
    )
    try:
        bundle = b.build(plan.output)
    except UserError as err:
        raise QonnxImportError(f"the imported bundle breaks the format: {err}") from None
    path = save_bundle(bundle, out)
    return ImportReport(
        path,
        b.model,
        bundle.meta.acc_bits,
        bundle.meta.mult_bits,
        tuple(plan.summary),
        tuple(plan.notes),
        int(input_codes.shape[0]),
        source,
        0 if eval_pred is None else len(eval_pred),
        eval_top1,
        time.perf_counter() - start,
    )
