"""Export: a trained QAT model -> the integer bundle (graph.yaml, tensors.npz, reference.npz).

Place in the flow: ``checkpoint.pt --(qat export, this module)--> bundle/ --> hwsim``. The bundle
and its arithmetic are docs/export-format.md, which also says how every constant is derived
("How qat export computes the constants"). This module keeps what needs torch (the torch.fx walk,
calibration, the reference capture); the bundle is built with :class:`hwsim.bundle.BundleBuilder`
and its integers come from :mod:`hwsim.bundle.lowering`.

How it works:

1. The model's module graph is traced with ``torch.fx`` (the quantized layers, BN and pooling are
   leaves) and walked once. Each value is either *codes* (a quantized tensor with a scale) or an
   *affine form* ``sum_i unit_i[c] * x_i + offset_i[c]`` of integer tensors (a conv accumulator,
   a BN of it, a residual sum). ``QConv2d`` -> ``conv2d``, ``QLinear`` -> ``linear``, BN (and a
   residual add) only change the affine form, a ``QAct``/``LogitQuant`` turns the form into one
   ``requant`` node (``clamp``, or ``sign`` for XNOR), avgpool -> ``avgpool_sum`` with scale
   ``s / (H*W)``. Node and tensor names are the PyTorch module names.
2. :func:`hwsim.bundle.lowering.requant_constants` is the one function that turns the float64
   affine forms into integer multipliers, an int64 offset (clamp) or an int32 threshold bias
   (sign), and one shift per channel, proving that the int64 sum cannot overflow.
3. The model runs in eval mode on the reference images with hooks on every quantizer; what they
   saw becomes reference.npz. The bundle is validated by the loader and written atomically.

Float layers (bits 32) have no integer form: the export refuses them with the fix, unless
``calibrate_float`` quantizes them (weights per channel from their max, activations from the
reference images' max), which the report and graph.yaml's ``quantization`` section record.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from hwsim.bundle import Bundle, BundleBuilder, Conv2dNode, LinearNode, Reference, RequantNode, save_bundle
from hwsim.bundle.build import int_pair
from hwsim.bundle.graph import compact_codes
from hwsim.bundle.lowering import DEFAULT_MULT_BITS, CodesValue, RequantTerm, mac_range, requant_constants
from hwsim.errors import UserError
from hwsim.fixed import MULT_BITS_RANGE, FormatError, bits_for_range, requantize_sum, sign
from hwsim.flags import check_int
from hwsim.output import Output
from qat.data import Normalization, loader_from_arrays
from qat.layers import InputQuant, LogitQuant, QAct, QConv2d, QLinear
from qat.quantizers import (
    MAX_CODE_BITS,
    QuantSpec,
    UniformActQuantizer,
    UniformWeightQuantizer,
    XNORActQuantizer,
)

DEFAULT_REFERENCE_IMAGES = 64
INPUT_TENSOR = "input"
LEAF_TYPES: tuple[type[nn.Module], ...] = (
    QConv2d,
    QLinear,
    QAct,
    InputQuant,
    LogitQuant,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
)


class ExportError(UserError):
    """A model that cannot be exported as it is; the message names the layer and the fix."""


# ----------------------------------------------------------------------------------------------
# The graph walk: torch.fx nodes -> bundle nodes
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    """The normalized float image (the placeholder)."""


@dataclass(frozen=True)
class _Affine:
    terms: tuple[RequantTerm, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class NodeSummary:
    """One line of the export report."""

    name: str
    op: str
    detail: str


@dataclass(frozen=True)
class CalibratedSite:
    """A float layer that ``calibrate_float`` quantized."""

    name: str
    kind: str  # "weight" or "activation"
    bits: int
    scale: float | None  # activations: the calibrated scale
    max_value: float | None  # activations: the max seen on the reference images


@dataclass
class ExportPlan:
    """Everything the walk found: the bundle's nodes (in a builder) and what the hooks need."""

    builder: BundleBuilder
    summary: list[NodeSummary] = field(default_factory=list)
    output: str | None = None
    requant_modules: dict[str, nn.Module] = field(default_factory=dict)  # tensor -> QAct/LogitQuant
    input_module: InputQuant | None = None
    avgpools: dict[str, tuple[nn.Module, str]] = field(default_factory=dict)  # tensor -> (module, input)
    saturated: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # requant node -> (its real affine form, its output scale): what the integers approximate
    terms: dict[str, tuple[tuple[RequantTerm, ...], float]] = field(default_factory=dict)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAF_TYPES) or super().is_leaf_module(m, qualname)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _channels(scale: torch.Tensor, count: int) -> np.ndarray:
    """A 0-d or ``[C]`` float32 scale as float64 ``[C]`` (exact conversion)."""
    s = _np(scale).astype(np.float64).reshape(-1)
    return np.full(count, s[0]) if s.size == 1 else s


class _Walker:
    """Interprets the traced graph once, building the bundle's tensors, nodes and arrays."""

    def __init__(self, gm: fx.GraphModule, mult_bits: int) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.mult_bits = mult_bits
        self.plan = ExportPlan(BundleBuilder(mult_bits=mult_bits))

    def run(self) -> ExportPlan:
        env: dict[fx.Node, Any] = {}
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                env[node] = _Image()
            elif node.op == "call_module":
                env[node] = self._module(node, env)
            elif node.op in ("call_function", "call_method"):
                env[node] = self._function(node, env)
            elif node.op == "output":
                result = env[node.args[0]] if isinstance(node.args[0], fx.Node) else None
                if not isinstance(result, CodesValue) or not isinstance(
                    self.plan.requant_modules.get(result.tensor), LogitQuant
                ):
                    raise ExportError(
                        "the model's output is not its LogitQuant (quant_logits); the bundle's "
                        "output must be the logits codes: end the model with a LogitQuant"
                    )
                self.plan.output = result.tensor
            else:
                raise ExportError(
                    f"graph node {node.name}: operation {node.op} is not supported by the bundle"
                )
        return self.plan

    @staticmethod
    def _shape(node: fx.Node) -> tuple[int, ...]:
        return tuple(int(v) for v in node.meta["tensor_meta"].shape[1:])

    def _arg(self, node: fx.Node, env: dict[fx.Node, Any], index: int = 0) -> Any:
        arg = node.args[index]
        if not isinstance(arg, fx.Node):
            raise ExportError(
                f"graph node {node.name}: argument {index} is a constant {arg!r}; the bundle "
                "holds only tensors computed from the input"
            )
        return env[arg]

    def _module(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        name = str(node.target)
        mod = self.modules[name]
        x = self._arg(node, env)
        shape = self._shape(node)
        if isinstance(mod, InputQuant):
            if not isinstance(x, _Image):
                raise ExportError(f"{name}: an InputQuant must read the network input")
            return self._input(mod, shape)
        if isinstance(mod, (QConv2d, QLinear)):
            return self._mac(name, mod, x, shape)
        if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            return self._batchnorm(name, mod, x)
        if isinstance(mod, (QAct, LogitQuant)):
            return self._requant(name, mod, x, shape)
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            return self._avgpool(name, mod, x)
        raise ExportError(
            f"module '{name}' ({type(mod).__name__}) has no bundle operation; the bundle maps QConv2d, "
            "QLinear, BatchNorm, QAct, InputQuant, LogitQuant, residual adds and a global average pool"
        )

    def _function(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        target = node.target
        if target in (operator.add, torch.add, operator.iadd, "add", "add_"):
            a, b = self._arg(node, env, 0), self._arg(node, env, 1)
            if node.kwargs.get("alpha", 1) != 1:
                raise ExportError(f"graph node {node.name}: add with alpha is not supported")
            terms = []
            for v in (a, b):
                if isinstance(v, CodesValue):
                    terms.extend(v.as_terms())
                elif isinstance(v, _Affine):
                    terms.extend(v.terms)
                else:
                    raise ExportError(
                        f"graph node {node.name}: cannot add {type(v).__name__.strip('_')} values"
                    )
            return _Affine(tuple(terms), self._shape(node))
        if target in (torch.flatten, "flatten", "view", "reshape"):
            x = self._arg(node, env)
            shape = self._shape(node)
            if isinstance(x, CodesValue) and x.shape == shape:
                return x
            raise ExportError(
                f"graph node {node.name}: a reshape to {list(shape)} is only supported as the "
                "flatten after the global average pool"
            )
        raise ExportError(
            f"graph node {node.name}: operation {target} has no bundle operation; the bundle "
            "maps convolutions, linear layers, BN, activations, residual adds and avgpool"
        )

    def _input(self, mod: InputQuant, shape: tuple[int, ...]) -> CodesValue:
        self.plan.input_module = mod
        self.plan.mean, self.plan.std = tuple(mod.mean), tuple(mod.std)
        fmt = mod.fmt
        scale = float(_np(mod.scale))
        self.plan.builder.input(fmt, scale, shape, self.plan.mean, self.plan.std, name=INPUT_TENSOR)
        return CodesValue(INPUT_TENSOR, scale, fmt, shape)

    def _mac(self, name: str, mod: QConv2d | QLinear, x: Any, shape: tuple[int, ...]) -> _Affine:
        if not isinstance(x, CodesValue):
            raise ExportError(
                f"layer '{name}': its input is not a quantized tensor; put a QAct (or the "
                "InputQuant) before it"
            )
        qt = mod.weight_quant.quantize(mod.weight)
        codes = _np(qt.codes)
        weight = codes.astype(np.int64)
        if not np.array_equal(weight, codes):
            raise ExportError(
                f"layer '{name}': weight codes are not integers; the weight quantizer is broken"
            )
        fmt = qt.fmt
        c_out = weight.shape[0]
        w_scale = _channels(qt.scale, c_out)
        lo, hi = mac_range(weight, x.fmt)
        bound = tuple(max(abs(int(a)), abs(int(b))) for a, b in zip(lo, hi, strict=True))
        if isinstance(mod, QConv2d):
            if mod.padding_mode != "zeros" or isinstance(mod.padding, str) or tuple(mod.dilation) != (1, 1):
                raise ExportError(
                    f"layer '{name}': padding_mode={mod.padding_mode}, padding={mod.padding}, "
                    f"dilation={mod.dilation}; the bundle's conv2d has zero padding given as "
                    "numbers and no dilation"
                )
            if len(x.shape) != 3:
                raise ExportError(f"layer '{name}': input shape {list(x.shape)} is not [C, H, W]")
            stride, padding = tuple(int(v) for v in mod.stride), tuple(int(v) for v in mod.padding)
            self.plan.builder.conv2d(
                name, x.tensor, weight, fmt, w_scale, stride, padding, int(mod.groups), output=name
            )
        elif len(x.shape) != 1:
            raise ExportError(f"layer '{name}': input shape {list(x.shape)} is not [F]; flatten before it")
        else:
            self.plan.builder.linear(name, x.tensor, weight, fmt, w_scale, output=name)
        acc_bits = bits_for_range(min(int(lo.min()), 0), max(int(hi.max()), 0), True)
        self.plan.summary.append(
            NodeSummary(
                name,
                "conv2d" if isinstance(mod, QConv2d) else "linear",
                f"weights {fmt.label}, input {x.tensor}, worst-case accumulator {acc_bits} bits",
            )
        )
        offset = np.zeros(c_out)
        if mod.bias is not None:
            offset = _np(mod.bias).astype(np.float64)
        term = RequantTerm(name, x.scale * w_scale, offset, bound, True)
        return _Affine((term,), shape)

    def _batchnorm(self, name: str, mod: nn.Module, x: Any) -> _Affine:
        if not isinstance(x, _Affine) or not any(t.has_bias for t in x.terms):
            raise ExportError(
                f"BN '{name}' does not follow a conv/linear layer; the bundle carries BN in the "
                "requantizer of an accumulator, so put BN right after a QConv2d/QLinear"
            )
        if mod.running_mean is None or mod.running_var is None:
            raise ExportError(
                f"BN '{name}' has no running statistics (track_running_stats=False); "
                "train with running statistics to export it"
            )
        mean = _np(mod.running_mean).astype(np.float64)
        sigma = np.sqrt(_np(mod.running_var).astype(np.float64) + float(mod.eps))
        gamma = _np(mod.weight).astype(np.float64) if mod.weight is not None else np.ones_like(mean)
        beta = _np(mod.bias).astype(np.float64) if mod.bias is not None else np.zeros_like(mean)
        g = gamma / sigma
        terms = [RequantTerm(t.tensor, t.unit * g, t.offset * g, t.bound, t.has_bias) for t in x.terms]
        first = next(
            i for i, t in enumerate(terms) if t.has_bias
        )  # BN's own constant goes with an accumulator
        t = terms[first]
        terms[first] = RequantTerm(t.tensor, t.unit, t.offset + beta - mean * g, t.bound, True)
        return _Affine(tuple(terms), x.shape)

    def _requant(self, name: str, mod: QAct | LogitQuant, x: Any, shape: tuple[int, ...]) -> CodesValue:
        quant = mod.quant if isinstance(mod, QAct) else mod
        probe = quant.quantize(torch.zeros(1, device=_np_device(mod)))
        fmt = probe.fmt
        scale = float(_np(probe.scale).reshape(-1)[0])
        function = "sign" if isinstance(quant, XNORActQuantizer) else "clamp"
        if isinstance(x, CodesValue):
            terms = x.as_terms()
        elif isinstance(x, _Affine):
            terms = x.terms
        else:
            raise ExportError(
                f"activation '{name}' reads the raw image; quantize it with an InputQuant first"
            )
        try:
            consts = requant_constants(terms, scale, function, self.mult_bits)
        except FormatError as err:
            raise ExportError(f"requant node '{name}': {err}") from None
        sources = [(t.tensor, consts.multipliers[i], consts.biases[i]) for i, t in enumerate(terms)]
        self.plan.builder.requant(
            name, sources, consts.shift, fmt, scale, function, offset=consts.offset, output=name
        )
        self.plan.requant_modules[name] = mod
        self.plan.terms[name] = (tuple(terms), scale)
        if consts.saturated:
            self.plan.saturated[name] = consts.saturated
        unit = "LSB" if function == "clamp" else "accumulator steps"
        lo, hi = int(consts.shift.min()), int(consts.shift.max())
        self.plan.summary.append(
            NodeSummary(
                name,
                "requant",
                f"{function} to {fmt.label} (scale {scale:.6g}) "
                f"from {' + '.join(t.tensor for t in terms)}; "
                f"shift {lo}..{hi}; constants off by <= {consts.max_error:.3g} {unit} (worst case)"
                + (f"; {len(consts.saturated)} channel(s) with BN scale ~0" if consts.saturated else ""),
            )
        )
        return CodesValue(name, scale, fmt, shape)

    def _avgpool(self, name: str, mod: nn.Module, x: Any) -> CodesValue:
        if not isinstance(x, CodesValue) or len(x.shape) != 3:
            raise ExportError(f"pool '{name}': its input is not a quantized [C, H, W] tensor")
        c, h, w = x.shape
        size = mod.output_size if isinstance(mod, nn.AdaptiveAvgPool2d) else None
        whole = (
            size in (1, (1, 1), [1, 1])
            if size is not None
            else (int_pair(mod.kernel_size) == (h, w) and int_pair(mod.padding) == (0, 0))
        )
        if not whole:
            raise ExportError(
                f"pool '{name}': only a global average pool (output 1x1) maps to the bundle's avgpool_sum"
            )
        area = h * w
        self.plan.builder.avgpool_sum(name, x.tensor, output=name)
        spec = self.plan.builder.spec(name)
        assert spec.fmt is not None and spec.scale is not None
        fmt, scale = spec.fmt, spec.scale
        self.plan.avgpools[name] = (mod, x.tensor)
        self.plan.summary.append(
            NodeSummary(
                name,
                "avgpool_sum",
                f"sum over {h}x{w} to {fmt.label}; 1/{area} folded into the next multiplier",
            )
        )
        return CodesValue(name, scale, fmt, (c,))


def _np_device(mod: nn.Module) -> torch.device:
    for t in list(mod.parameters()) + list(mod.buffers()):
        return t.device
    return torch.device("cpu")


def trace(model: nn.Module, sample: torch.Tensor) -> fx.GraphModule:
    """The model's module graph (quantized layers, BN and pools as leaves), with shapes from ``sample``."""
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # torch.fx raises many types for untraceable Python
        raise ExportError(
            f"cannot trace the model with torch.fx ({type(err).__name__}: {err}); the export "
            "needs a forward without data-dependent control flow"
        ) from None
    gm = fx.GraphModule(model, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(sample)
    return gm


def build_plan(model: nn.Module, sample: torch.Tensor, mult_bits: int = DEFAULT_MULT_BITS) -> ExportPlan:
    """Trace ``model`` on a normalized ``sample`` batch and compute every node and constant of its bundle."""
    return _Walker(trace(model, sample), mult_bits).run()


# ----------------------------------------------------------------------------------------------
# Float layers
# ----------------------------------------------------------------------------------------------


def float_sites(model: nn.Module) -> list[tuple[str, str]]:
    """``(module name, "weight" | "activation")`` of every site left in float (bits 32), in model order."""
    sites = []
    for name, mod in model.named_modules():
        if isinstance(mod, (QConv2d, QLinear)) and mod.weight_quant.fmt is None:
            sites.append((name, "weight"))
        elif isinstance(mod, QAct) and mod.quant.fmt is None:
            sites.append((name, "activation"))
    return sites


def float_error(sites: Sequence[tuple[str, str]]) -> ExportError:
    """The refusal for float layers: which, why, and the two fixes."""
    name, kind = sites[0]
    listed = ", ".join(f"{n} ({k})" for n, k in sites)
    if kind == "weight":
        fix = f"layers: {{{name}: {{weight: {{method: uniform, bits: 8}}}}}}"
    else:
        fix = f"layers: {{{name}: {{activation: {{method: uniform, bits: 8}}}}}}"
    return ExportError(
        f"layer '{name}' is float ({kind}, bits 32): integer hardware cannot run it "
        f"(float sites: {listed}); quantize it in the quantization config (e.g. {fix}) and train again, "
        "or pass --calibrate-float N to quantize the float sites to N bits at export "
        "(weights per channel from their max, activations from the reference images' max)"
    )


def calibrate_float(
    model: nn.Module, images: torch.Tensor, bits: int, batch_size: int = 256
) -> list[CalibratedSite]:
    """Quantize every float site of ``model`` in place to ``bits`` bits (``uniform`` method).

    Weights: symmetric per output channel from their max (no data needed). Activations, in model
    order: scale = (max of the ReLU output over ``images``) / (2^bits - 1), measured with every
    earlier site already quantized; the quantizer is frozen (eval mode).
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= MAX_CODE_BITS:
        raise ExportError(f"--calibrate-float {bits!r}: expected a width in 2..{MAX_CODE_BITS} bits")
    spec = QuantSpec(method="uniform", bits=bits)
    modules = dict(model.named_modules())
    done: list[CalibratedSite] = []
    for name, kind in float_sites(model):
        mod = modules[name]
        device = _np_device(mod)
        if kind == "weight":
            mod.weight_spec = spec
            mod.weight_quant = UniformWeightQuantizer(spec).to(device)
            done.append(CalibratedSite(name, "weight", bits, None, None))
            continue
        seen: list[float] = []

        def record(
            _m: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor, seen: list[float] = seen
        ) -> None:
            seen.append(float(inp[0].detach().max()))

        handle = mod.register_forward_hook(record)
        try:
            with torch.no_grad():
                for start in range(0, images.shape[0], batch_size):
                    model(images[start : start + batch_size])
        finally:
            handle.remove()
        peak = max(max(seen), 0.0)
        if peak <= 0.0:
            raise ExportError(
                f"--calibrate-float: activation '{name}' is never positive on the reference "
                "images; its scale cannot be calibrated; quantize it in the config instead"
            )
        quant = UniformActQuantizer(spec).to(device)
        with torch.no_grad():
            quant.running_max.fill_(peak)
            quant.initialized.fill_(True)
        quant.eval()
        mod.spec = spec
        mod.quant = quant
        scale = float(_np(quant.quantize(torch.zeros(1, device=device)).scale))
        done.append(CalibratedSite(name, "activation", bits, scale, peak))
    return done


# ----------------------------------------------------------------------------------------------
# Reference: what the PyTorch model produced
# ----------------------------------------------------------------------------------------------


def capture_reference(
    model: nn.Module, plan: ExportPlan, images: torch.Tensor, batch_size: int = 256
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``model`` (eval mode) on normalized ``images``; ``(input codes, codes/<t>, float/<t>)``.

    Every requant tensor's codes come from its quantizer's ``quantize`` on what the module saw,
    and are checked to be exactly the module's output divided by the scale; the avgpool codes are
    the integer sums of its input codes.
    """
    codes: dict[str, list[np.ndarray]] = {t: [] for t in plan.requant_modules}
    floats: dict[str, list[np.ndarray]] = {t: [] for t in [*plan.requant_modules, *plan.avgpools]}
    inputs: list[np.ndarray] = []
    handles = []

    def requant_hook(tensor: str) -> Callable[..., None]:
        mod = plan.requant_modules[tensor]
        quant = mod.quant if isinstance(mod, QAct) else mod

        def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            qt = quant.quantize(inp[0])
            if not torch.equal(qt.dequantize().to(out.dtype), out):
                raise RuntimeError(f"{tensor}: the module's output is not codes * scale of its quantizer")
            codes[tensor].append(_np(qt.codes))
            floats[tensor].append(_np(out).astype(np.float32))

        return hook

    def pool_hook(tensor: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            floats[tensor].append(_np(out).reshape(out.shape[0], -1).astype(np.float32))

        return hook

    assert plan.input_module is not None
    input_module = plan.input_module
    handles.append(
        input_module.register_forward_hook(
            lambda _m, inp, _out: inputs.append(_np(input_module.quantize(inp[0]).codes))
        )
    )
    for tensor, mod in plan.requant_modules.items():
        handles.append(mod.register_forward_hook(requant_hook(tensor)))
    for tensor, (mod, _src) in plan.avgpools.items():
        handles.append(mod.register_forward_hook(pool_hook(tensor)))
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                model(images[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
    out_codes = {t: np.concatenate(v) for t, v in codes.items()}
    for tensor, (_mod, src) in plan.avgpools.items():
        out_codes[tensor] = out_codes[src].astype(np.int64).sum(axis=(2, 3))
    out_floats = {t: np.concatenate(v) for t, v in floats.items()}
    compact = {t: compact_codes(v) for t, v in out_codes.items()}
    return compact_codes(np.concatenate(inputs)), compact, out_floats


def predict(
    model: nn.Module,
    plan: ExportPlan,
    images: np.ndarray,
    labels: np.ndarray,
    normalization: Normalization,
    device: torch.device,
    batch_size: int = 256,
) -> np.ndarray:
    """Top-1 of the PyTorch model on uint8 ``images``: argmax of the logits codes (first index on ties)."""
    assert plan.output is not None
    mod = plan.requant_modules[plan.output]
    found: list[np.ndarray] = []
    handle = mod.register_forward_hook(lambda _m, inp, _o: found.append(_np(mod.quantize(inp[0]).codes)))
    try:
        loader = loader_from_arrays(images, labels, batch_size, train=False, normalization=normalization)
        with torch.no_grad():
            for x, _y in loader:
                model(x.to(device))
    finally:
        handle.remove()
    return np.argmax(np.concatenate(found), axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceSet:
    """Images for reference.npz (uint8 ``[N, 32, 32, 3]``, labels ``-1`` where unknown), their source,
    and optionally a whole evaluation set to classify (``eval_predictions``)."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    eval_images: np.ndarray | None = None
    eval_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        for images, labels, what in (
            (self.images, self.labels, "reference"),
            (self.eval_images, self.eval_labels, "evaluation"),
        ):
            if images is None and labels is None:
                continue
            if images is None or labels is None:
                raise ExportError(f"ReferenceSet: {what} images and labels come together; got only one")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
                raise ExportError(
                    f"ReferenceSet: {what} images are {images.dtype} {list(images.shape)}, expected uint8 "
                    "[N, 32, 32, 3]"
                )
            labels = np.asarray(labels)
            if labels.dtype.kind not in "iu" or labels.shape != (images.shape[0],):
                raise ExportError(
                    f"ReferenceSet: {what} labels are {labels.dtype} {list(labels.shape)}, expected "
                    f"integers [{images.shape[0]}] (one per image; -1 where unknown)"
                )

    def check_classes(self, classes: int) -> None:
        """Every label a class of a ``classes``-way classifier (reference labels may be -1, unknown)."""
        for labels, lo, what in ((self.labels, -1, "reference"), (self.eval_labels, 0, "evaluation")):
            if labels is None or not len(labels):
                continue
            bad = np.flatnonzero((labels < lo) | (labels >= classes))
            if bad.size:
                i = int(bad[0])
                raise ExportError(
                    f"{what} label {int(labels[i])} (image {i}) is not a class of the model's {classes} "
                    f"outputs; expected {lo}..{classes - 1}" + (" (-1: unknown)" if lo < 0 else "")
                )


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote, for the command's output."""

    path: Path
    model: str
    acc_bits: int
    mult_bits: int
    nodes: tuple[NodeSummary, ...]
    calibrated: tuple[CalibratedSite, ...]
    reference_images: int
    eval_images: int
    eval_top1: float | None
    device: str
    saturated: dict[str, tuple[int, ...]]

    def lines(self) -> list[str]:
        out = [
            f"wrote {self.path}: {self.model}, {sum(1 for n in self.nodes)} nodes, acc_bits {self.acc_bits} "
            f"(worst case over all layers), mult_bits {self.mult_bits}"
        ]
        width = max(len(n.name) for n in self.nodes)
        out += [f"  {n.name:<{width}}  {n.op:<11}  {n.detail}" for n in self.nodes]
        for site in self.calibrated:
            if site.kind == "weight":
                out.append(
                    f"calibrated: {site.name} weights were float, now uniform {site.bits}-bit per channel "
                    "(from their max)"
                )
            else:
                out.append(
                    f"calibrated: {site.name} activation was float, now uniform {site.bits}-bit, scale "
                    f"{site.scale:.6g} (max {site.max_value:.6g} over {self.reference_images} reference "
                    "images)"
                )
        for name, channels in self.saturated.items():
            out.append(
                f"note: {name}: channel(s) {list(channels)} have a BN scale ~0 (a constant sign); their "
                "threshold bias is saturated to +-(2^31-1)"
            )
        ref = f"reference: {self.reference_images} images on {self.device}"
        if self.eval_top1 is not None:
            ref += f"; PyTorch top-1 {self.eval_top1:.2f}% on {self.eval_images} evaluation images"
        out.append(ref)
        return out


def export_model(
    model: nn.Module,
    out: str | Path | Output,
    references: ReferenceSet,
    *,
    device: torch.device,
    model_name: str = "model",
    quantization: dict[str, Any] | None = None,
    calibrate_bits: int | None = None,
    mult_bits: int = DEFAULT_MULT_BITS,
    batch_size: int = 256,
) -> ExportReport:
    """Write the bundle of ``model`` to ``out`` (atomically) and load it back; see the module docstring."""
    check_int("--mult-bits", mult_bits, *MULT_BITS_RANGE)
    check_int("batch_size", batch_size, 1)
    if references.images.shape[0] < 1:
        raise ExportError("no reference images: pass --reference-images N with N >= 1")
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        references.check_classes(int(fc.out_features))
    model = model.to(device).eval()
    inq = next((m for m in model.modules() if isinstance(m, InputQuant)), None)
    if inq is None:
        raise ExportError(
            "the model has no InputQuant: the bundle starts from the input codes the model computes"
        )
    normalization = Normalization(tuple(inq.mean), tuple(inq.std))  # type: ignore[arg-type]
    labels = np.asarray(references.labels, dtype=np.int64)
    ref_images = normalization.apply(torch.from_numpy(np.ascontiguousarray(references.images))).to(device)

    calibrated: list[CalibratedSite] = []
    sites = float_sites(model)
    if sites and calibrate_bits is None:
        raise float_error(sites)
    if sites:
        calibrated = calibrate_float(model, ref_images, int(calibrate_bits), batch_size)  # type: ignore[arg-type]

    plan = build_plan(model, ref_images[:1], mult_bits)
    input_codes, codes, floats = capture_reference(model, plan, ref_images, batch_size)

    eval_pred = eval_top1 = None
    if references.eval_images is not None and references.eval_labels is not None:
        eval_labels = np.asarray(references.eval_labels, dtype=np.int64)
        eval_pred = predict(
            model, plan, references.eval_images, eval_labels, normalization, device, batch_size
        )
        eval_top1 = 100.0 * float(np.mean(eval_pred == eval_labels)) if len(eval_labels) else 0.0

    quant = dict(quantization or {})
    if calibrated:
        quant["calibrated_float"] = {
            s.name: (
                {"kind": s.kind, "method": "uniform", "bits": s.bits}
                | (
                    {"scale": s.scale, "max": s.max_value, "images": int(ref_images.shape[0])}
                    if s.kind == "activation"
                    else {"from": "per-channel max |w|"}
                )
            )
            for s in calibrated
        }
    builder = plan.builder
    builder.model = model_name
    builder.quantization = quant
    eval_labels = None if eval_pred is None else np.asarray(references.eval_labels, dtype=np.int64)
    reference = Reference(input_codes, labels, codes, floats, eval_pred, eval_labels, device.type)
    info: dict[str, Any] = {"source": references.source}
    if eval_pred is not None:
        info["eval_images"] = len(eval_pred)
    builder.reference(reference, info)
    assert plan.output is not None
    try:
        bundle = builder.build(plan.output)
    except UserError as err:
        raise ExportError(f"the exported bundle breaks the format: {err}") from None
    out = save_bundle(bundle, out)  # written beside out, checked by the loader, then moved into place
    return ExportReport(
        out,
        model_name,
        bundle.meta.acc_bits,
        mult_bits,
        tuple(plan.summary),
        tuple(calibrated),
        int(input_codes.shape[0]),
        0 if eval_pred is None else len(eval_pred),
        eval_top1,
        device.type,
        dict(plan.saturated),
    )


# ----------------------------------------------------------------------------------------------
# Checking a bundle against its own reference, one node at a time
# ----------------------------------------------------------------------------------------------


def isolated_codes(bundle: Bundle) -> dict[str, np.ndarray]:
    """Every requant node's codes computed from the PyTorch model's own input codes (reference.npz).

    Unlike a full emulation, a difference here cannot come from an upstream layer: it is what this
    node's integer constants do to exactly the inputs PyTorch saw. Accumulators are computed in
    float64 (exact: every sum is far below 2^53), then ``hwsim.fixed.requantize_sum`` and the node's
    function, as in the emulator.
    """
    ref = bundle.reference
    if ref is None:
        raise UserError(f"{bundle.path}: no reference.npz; re-export the bundle with its reference")
    codes: dict[str, np.ndarray] = {bundle.meta.input_tensor: ref.input_codes, **ref.codes}
    accs: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for node in bundle.nodes:
        if isinstance(node, (Conv2dNode, LinearNode)):
            x = torch.from_numpy(codes[node.input].astype(np.float64))
            w = torch.from_numpy(node.weight.astype(np.float64))
            if isinstance(node, LinearNode):
                acc = x @ w.T
            else:
                acc = F.conv2d(x, w, stride=node.stride, padding=node.padding, groups=node.groups)
            accs[node.output] = acc.numpy().astype(np.int64)
        elif isinstance(node, RequantNode):
            inputs = [accs[i.tensor] if i.tensor in accs else codes[i.tensor] for i in node.inputs]
            rounded = requantize_sum(
                inputs,
                [i.multiplier for i in node.inputs],
                node.shift,
                channel_axis=1,
                biases=[i.bias for i in node.inputs],
                offset=node.offset,
            )
            fmt = bundle.tensors[node.output].fmt
            assert fmt is not None
            clamped = np.clip(rounded, fmt.min, fmt.max)
            out[node.output] = sign(rounded) if node.function == "sign" else clamped
    return out
