"""The integer bundle in memory: load and validate a bundle directory, save one, quantize images for it.

Place in the flow: ``qat export`` writes ``bundle/`` (docs/export-format.md, normative); this module
turns it into frozen dataclasses (:class:`Bundle`) that the emulator, the MAC-array model and
``hwsim compare`` read. Every rule of the format is checked here, once; anything malformed raises
:class:`BundleError` naming the file, the node (or tensor), the field, what was wrong, what was
expected and the fix. Nothing downstream re-validates.
"""

from __future__ import annotations

import math
import os
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from hwsim.atomic import replace_directory, staging_directory
from hwsim.errors import UserError
from hwsim.fixed import FormatError, IntFormat

FORMAT_VERSION = 1
ROUNDING = "half_up"
GRAPH_FILE = "graph.yaml"
TENSORS_FILE = "tensors.npz"
REFERENCE_FILE = "reference.npz"
LATTICES: tuple[str, ...] = ("full", "narrow", "odd", "binary", "ternary")
TENSOR_KINDS: tuple[str, ...] = ("codes", "acc")
REQUANT_FUNCTIONS: tuple[str, ...] = ("clamp", "sign")
OPS: tuple[str, ...] = ("conv2d", "linear", "requant", "avgpool_sum")
MAX_SHIFT = 62

_FIX_GRAPH = "fix graph.yaml or re-export the bundle"
_FIX_TENSORS = "fix tensors.npz or re-export the bundle"
_FIX_REFERENCE = "fix reference.npz or re-export the bundle (reference.npz is optional for hwsim emulate)"


class BundleError(UserError):
    """A malformed bundle: ``<file>: node '<name>', field '<field>': <problem>; expected <...>; <fix>``."""


# ----------------------------------------------------------------------------------------------
# Integer formats of codes (lattice-aware)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeFormat:
    """The format of a tensor of codes: storage ``bits``/``signed``, the method's ``nominal_bits``, a lattice.

    Lattices: ``full`` (every integer of the storage format), ``narrow`` (signed, symmetric
    ``[-(2^(b-1)-1), 2^(b-1)-1]``), ``odd`` (odd integers in ``[-(2^k-1), 2^k-1]``, ``k = nominal_bits``),
    ``binary`` (``{-1, +1}``), ``ternary`` (``{-1, 0, +1}``). Codes are held in int64, so an unsigned
    format has at most 63 bits.
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
            if nominal + 1 > self.bits:
                raise FormatError(
                    f"lattice 'odd' with nominal_bits={nominal} spans ±{(1 << nominal) - 1} and needs "
                    f"{nominal + 1} storage bits, but bits={self.bits}; set bits to {nominal + 1}"
                )
        elif nominal > self.bits:
            raise FormatError(f"nominal_bits={nominal} exceeds bits={self.bits}; nominal_bits <= bits")
        if self.lattice in ("narrow", "binary", "ternary") and self.bits < 2:
            raise FormatError(f"lattice '{self.lattice}' needs at least 2 signed bits; set bits to 2 or more")

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

    def violation(self, codes: np.ndarray) -> str | None:
        """Why ``codes`` are not legal codes of this format (dtype, range, lattice), or ``None``."""
        arr = np.asarray(codes)
        if arr.dtype.kind not in "iu":
            return f"dtype {arr.dtype} is not an integer dtype"
        if arr.size == 0:
            return None
        lo, hi = int(arr.min()), int(arr.max())
        if lo < self.min or hi > self.max:
            return f"codes span [{lo}, {hi}] but {self.label} allows [{self.min}, {self.max}]"
        if self.lattice == "odd" and bool(np.any(arr % 2 == 0)):
            bad = int(arr[arr % 2 == 0].flat[0])
            return f"code {bad} is even but {self} holds odd codes only"
        if self.lattice == "binary" and bool(np.any(arr == 0)):
            return f"code 0 is not in {self}"
        return None

    def check(self, codes: np.ndarray, where: str = "codes") -> None:
        """Raise :class:`FormatError` when ``codes`` break this format (range and lattice)."""
        problem = self.violation(codes)
        if problem is not None:
            raise FormatError(f"{where}: {problem}; bring the codes into {self} (quantize or clamp them)")

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bits": int(self.bits), "signed": bool(self.signed)}
        if self.nominal_bits != self.bits:
            out["nominal_bits"] = int(self.nominal_bits)  # type: ignore[arg-type]
        if self.lattice != "full":
            out["lattice"] = self.lattice
        return out


# ----------------------------------------------------------------------------------------------
# Graph dataclasses
# ----------------------------------------------------------------------------------------------


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
    """``requant``: ``f(round_shift(sum_i (x_i + b_i) * M_i + o, n))`` with ``f`` = ``clamp`` or ``sign``."""

    name: str
    inputs: tuple[RequantInput, ...]
    shift: np.ndarray  # int64 [C] in 0..62
    shift_key: str
    function: str
    output: str
    offset: np.ndarray | None = None  # int64 [C], added at the 2^-n scale, or None
    offset_key: str | None = None
    rounding: str = "half_up"  # one of hwsim.fixed.ROUNDING_MODES
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


Node = Conv2dNode | LinearNode | RequantNode | AvgPoolSumNode
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
        out: dict[str, np.ndarray] = {"input_codes": self.input_codes, "labels": self.labels}
        out.update({f"codes/{k}": v for k, v in self.codes.items()})
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


def node_macs(node: Node, bundle: Bundle) -> int:
    """MACs per image: output elements times the K of the GEMM (``C_in/groups * kh * kw``)."""
    if isinstance(node, (Conv2dNode, LinearNode)):
        k = int(np.prod(node.weight.shape[1:]))
        return math.prod(bundle.tensors[node.output].shape) * k
    return 0


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Where a field lives, for error messages: a file and optionally a node or tensor."""

    file: str
    what: str = ""  # "node 'conv1'", "tensor 'act1'", "input", ...

    def error(self, fld: str | None, problem: str, expected: str, fix: str = _FIX_GRAPH) -> BundleError:
        loc = self.file
        if self.what:
            loc += f": {self.what}"
        if fld:
            loc += f", field '{fld}'" if self.what else f": field '{fld}'"
        return BundleError(f"{loc}: {problem}; expected {expected}; {fix}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mapping(value: Any, where: _Where, fld: str | None, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.error(fld, f"got {type(value).__name__} {_describe(value)}", f"a mapping ({expected})")
    for key in value:
        if not isinstance(key, str):
            raise where.error(fld, f"key {_describe(key)} is not a string", f"a mapping ({expected})")
    return value


def _keys(
    value: Mapping[str, Any], where: _Where, required: set[str], optional: set[str], prefix: str = ""
) -> None:
    for key in sorted(required):
        if key not in value:
            raise where.error(
                prefix + key, "missing", f"the keys {sorted(required)} (optional: {sorted(optional)})"
            )
    unknown = sorted(set(value) - required - optional)
    if unknown:
        raise where.error(
            prefix + unknown[0],
            "unknown key",
            f"only {sorted(required | optional)}",
            "remove or rename the key",
        )


def _int(value: Any, where: _Where, fld: str, lo: int, hi: int | None = None) -> int:
    if not _is_int(value) or value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise where.error(fld, f"got {_describe(value)}", f"an integer in {rng}")
    return int(value)


def _str(value: Any, where: _Where, fld: str) -> str:
    if not isinstance(value, str) or not value:
        raise where.error(fld, f"got {_describe(value)}", "a non-empty string")
    return value


def _float(value: Any, where: _Where, fld: str, positive: bool) -> float:
    try:
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise where.error(fld, f"got {_describe(value)}", "a finite number")
    if positive and value <= 0:
        raise where.error(fld, f"got {value!r}", "a positive number")
    return float(value)


def _int_pair(value: Any, where: _Where, fld: str, lo: int) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2 or not all(_is_int(v) and v >= lo for v in value):
        raise where.error(fld, f"got {_describe(value)}", f"a list of two integers >= {lo}")
    return int(value[0]), int(value[1])


def _code_format(value: Any, where: _Where, fld: str) -> CodeFormat:
    fmt = _mapping(value, where, fld, "bits, signed, nominal_bits?, lattice?")
    _keys(fmt, where, {"bits", "signed"}, {"nominal_bits", "lattice"}, prefix=f"{fld}.")
    bits = _int(fmt["bits"], where, f"{fld}.bits", 1, 64)
    if not isinstance(fmt["signed"], bool):
        raise where.error(f"{fld}.signed", f"got {_describe(fmt['signed'])}", "true or false")
    nominal = fmt.get("nominal_bits", bits)
    nominal = _int(nominal, where, f"{fld}.nominal_bits", 1, 64)
    lattice = fmt.get("lattice", "full")
    if lattice not in LATTICES:
        raise where.error(f"{fld}.lattice", f"got {_describe(lattice)}", f"one of {', '.join(LATTICES)}")
    try:
        return CodeFormat(bits, fmt["signed"], nominal, lattice)
    except FormatError as err:
        raise where.error(fld, str(err), "a consistent integer format (docs/export-format.md)") from None


class _Npz:
    """tensors.npz (or reference.npz) read fully into memory, with errors mapped to BundleError."""

    def __init__(self, path: Path, fix: str) -> None:
        self.file = str(path)
        self.fix = fix
        try:
            with np.load(path, allow_pickle=False) as data:
                self.arrays: dict[str, np.ndarray] = {str(k): np.asarray(data[k]) for k in data.files}
        except FileNotFoundError:
            raise BundleError(
                f"{path}: missing; expected an .npz archive (numpy.savez); re-export the bundle"
            ) from None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as err:
            raise BundleError(
                f"{path}: not a readable .npz archive of plain arrays ({type(err).__name__}: {err}); "
                f"expected a numpy.savez archive without pickled objects; {fix}"
            ) from None
        except Exception as err:  # zlib.error and other decoder failures of a corrupt archive
            raise BundleError(
                f"{path}: corrupt .npz archive ({type(err).__name__}: {err}); "
                f"expected a numpy.savez archive; {fix}"
            ) from None

    def get(self, key: Any, where: _Where, fld: str) -> np.ndarray:
        if not isinstance(key, str) or not key:
            raise where.error(fld, f"got {_describe(key)}", f"the name of an array in {TENSORS_FILE}")
        if key not in self.arrays:
            raise where.error(fld, f"array '{key}' is not in {self.file}", "a key of tensors.npz", self.fix)
        return self.arrays[key]


def _int_array(
    arr: np.ndarray, where: _Where, fld: str, shape: tuple[int, ...], fix: str = _FIX_TENSORS
) -> np.ndarray:
    if arr.dtype.kind not in "iu":
        raise where.error(fld, f"dtype {arr.dtype}", "an integer dtype", fix)
    if tuple(arr.shape) != shape:
        raise where.error(fld, f"shape {list(arr.shape)}", f"shape {list(shape)}", fix)
    return arr


def _check_range(arr: np.ndarray, where: _Where, fld: str, lo: int, hi: int, expected: str) -> None:
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        bad = int(arr.min()) if int(arr.min()) < lo else int(arr.max())
        raise where.error(fld, f"value {bad} is out of range", f"{expected} ([{lo}, {hi}])", _FIX_TENSORS)


def _weight_scale(npz: _Npz, raw: Mapping[str, Any], where: _Where, channels: int) -> tuple[np.ndarray, str]:
    key = raw["weight_scale"]
    arr = npz.get(key, where, "weight_scale")
    if arr.dtype.kind != "f":
        raise where.error("weight_scale", f"dtype {arr.dtype}", "float64 scales", _FIX_TENSORS)
    if tuple(arr.shape) not in ((channels,), (1,), ()):
        raise where.error(
            "weight_scale", f"shape {list(arr.shape)}", f"[{channels}] (or [1] per tensor)", _FIX_TENSORS
        )
    if not bool(np.all(np.isfinite(arr))) or not bool(np.all(arr > 0)):
        raise where.error(
            "weight_scale", "a scale is not positive and finite", "positive finite scales", _FIX_TENSORS
        )
    return arr.astype(np.float64), key


def _weights(
    npz: _Npz, raw: Mapping[str, Any], where: _Where, shape: tuple[int, ...] | None, rank: int
) -> tuple[np.ndarray, str, CodeFormat]:
    fmt = _code_format(raw["weight_format"], where, "weight_format")
    key = raw["weight"]
    arr = npz.get(key, where, "weight")
    if arr.dtype.kind not in "iu":
        raise where.error(
            "weight", f"dtype {arr.dtype}", "an integer dtype holding weight codes", _FIX_TENSORS
        )
    if arr.ndim != rank or (shape is not None and tuple(arr.shape) != shape) or 0 in arr.shape:
        want = list(shape) if shape is not None else f"a non-empty array of rank {rank}"
        raise where.error("weight", f"shape {list(arr.shape)}", f"{want}", _FIX_TENSORS)
    problem = fmt.violation(arr)
    if problem is not None:
        raise where.error(
            "weight",
            problem,
            f"codes of weight_format {fmt}",
            "re-export the bundle, or fix the weight codes",
        )
    return arr.astype(np.int64), key, fmt


def _tensor_spec(name: str, raw: Any, file: str) -> TensorSpec:
    where = _Where(file, f"tensor '{name}'")
    spec = _mapping(raw, where, None, "shape, kind, format, scale")
    kind = spec.get("kind")
    if kind not in TENSOR_KINDS:
        raise where.error("kind", f"got {_describe(kind)}", f"one of {', '.join(TENSOR_KINDS)}")
    if kind == "codes":
        _keys(spec, where, {"shape", "kind", "format", "scale"}, set())
    else:
        _keys(spec, where, {"shape", "kind"}, set())
    shape = spec["shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(v) and v >= 1 for v in shape):
        raise where.error("shape", f"got {_describe(shape)}", "a non-empty list of positive integers")
    if kind == "acc":
        return TensorSpec(name, "acc", tuple(shape), None, None)
    fmt = _code_format(spec["format"], where, "format")
    scale = _float(spec["scale"], where, "scale", positive=True)
    return TensorSpec(name, "codes", tuple(int(v) for v in shape), fmt, scale)


class _Loader:
    """One pass over graph.yaml in execution order, resolving arrays and checking every rule."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.gfile = str(directory / GRAPH_FILE)
        self.top = _Where(self.gfile)

    def load(self) -> Bundle:
        graph = self._read_yaml()
        _keys(
            graph,
            self.top,
            {"format_version", "rounding", "acc_bits", "mult_bits", "input", "output", "tensors", "nodes"},
            {"model", "quantization", "reference"},
        )
        version = graph["format_version"]
        if not _is_int(version) or version != FORMAT_VERSION:
            raise self.top.error(
                "format_version",
                f"unsupported version {_describe(version)}",
                f"{FORMAT_VERSION}",
                "re-export the bundle with this version of qat export",
            )
        if graph["rounding"] != ROUNDING:
            raise self.top.error(
                "rounding",
                f"unsupported rounding {_describe(graph['rounding'])}",
                f"'{ROUNDING}' (the only rule of format_version 1)",
                _FIX_GRAPH,
            )
        self.acc_bits = _int(graph["acc_bits"], self.top, "acc_bits", 1, 64)
        self.mult_bits = _int(graph["mult_bits"], self.top, "mult_bits", 2, 63)
        model = graph.get("model", "")
        if not isinstance(model, str):
            raise self.top.error("model", f"got {_describe(model)}", "a string")
        quant = graph.get("quantization", {})
        quant = dict(_mapping(quant if quant is not None else {}, self.top, "quantization", "free-form"))
        ref_info = graph.get("reference")
        if ref_info is not None:
            ref_info = dict(_mapping(ref_info, self.top, "reference", "device, images, source"))

        raw_tensors = _mapping(graph["tensors"], self.top, "tensors", "tensor name -> spec")
        if not raw_tensors:
            raise self.top.error("tensors", "empty", "at least the input and the output tensors")
        self.tensors = {name: _tensor_spec(name, spec, self.gfile) for name, spec in raw_tensors.items()}

        in_where = _Where(self.gfile, "input")
        inp = _mapping(graph["input"], self.top, "input", "tensor, mean, std")
        _keys(inp, in_where, {"tensor", "mean", "std"}, set())
        input_tensor = self._declared(_str(inp["tensor"], in_where, "tensor"), in_where, "tensor")
        in_spec = self.tensors[input_tensor]
        if in_spec.kind != "codes" or len(in_spec.shape) != 3:
            raise in_where.error(
                "tensor",
                f"'{input_tensor}' is {in_spec.kind} of shape {list(in_spec.shape)}",
                "a codes tensor of shape [C, H, W]",
            )
        channels = in_spec.shape[0]
        mean = self._floats(inp["mean"], in_where, "mean", channels, positive=False)
        std = self._floats(inp["std"], in_where, "std", channels, positive=True)
        output = self._declared(_str(graph["output"], self.top, "output"), self.top, "output")
        out_spec = self.tensors[output]
        if out_spec.kind != "codes" or len(out_spec.shape) != 1:
            raise self.top.error(
                "output",
                f"'{output}' is {out_spec.kind} of shape {list(out_spec.shape)}",
                "a codes tensor of shape [classes]",
            )

        self.npz = _Npz(self.dir / TENSORS_FILE, _FIX_TENSORS)
        raw_nodes = graph["nodes"]
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise self.top.error("nodes", f"got {_describe(raw_nodes)}", "a non-empty list of nodes")
        produced: dict[str, str] = {input_tensor: "the network input"}
        names: set[str] = set()
        nodes: list[Node] = []
        for index, raw in enumerate(raw_nodes):
            node = self._node(index, raw, produced)
            if node.name in names:
                raise _Where(self.gfile, f"node '{node.name}'").error(
                    "name", "duplicate node name", "unique node names"
                )
            names.add(node.name)
            produced[node.output] = f"node '{node.name}'"
            nodes.append(node)
        if output not in produced or output == input_tensor:
            raise self.top.error(
                "output",
                f"tensor '{output}' is not produced by any node",
                "the output of a node (the logits)",
            )
        meta = BundleMeta(
            FORMAT_VERSION,
            model,
            ROUNDING,
            self.acc_bits,
            self.mult_bits,
            input_tensor,
            mean,
            std,
            output,
            quant,
            ref_info,
        )
        bundle = Bundle(self.dir, meta, self.tensors, tuple(nodes), dict(self.npz.arrays), None)
        ref_path = self.dir / REFERENCE_FILE
        if ref_path.exists():
            bundle = Bundle(
                self.dir,
                meta,
                self.tensors,
                tuple(nodes),
                dict(self.npz.arrays),
                _load_reference(ref_path, bundle),
            )
        return bundle

    def _read_yaml(self) -> Mapping[str, Any]:
        path = self.dir / GRAPH_FILE
        if not self.dir.is_dir():
            raise BundleError(
                f"{self.dir}: not a directory; expected a bundle directory holding "
                f"{GRAPH_FILE} and {TENSORS_FILE}; pass the directory that qat export wrote"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BundleError(
                f"{path}: missing; expected the graph of the bundle (docs/export-format.md); "
                "pass the directory that qat export wrote"
            ) from None
        except (OSError, UnicodeDecodeError) as err:
            raise BundleError(
                f"{path}: unreadable ({err}); expected UTF-8 YAML; re-export the bundle"
            ) from None
        try:
            graph = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise BundleError(
                f"{path}: not valid YAML ({str(err).splitlines()[0]}); expected a YAML mapping; {_FIX_GRAPH}"
            ) from None
        except (ValueError, TypeError, OverflowError, RecursionError) as err:  # e.g. a malformed timestamp
            raise BundleError(
                f"{path}: YAML value that cannot be read ({err}); expected a YAML mapping; {_FIX_GRAPH}"
            ) from None
        return _mapping(
            graph, self.top, None, "the top level of graph.yaml: format_version, tensors, nodes, ..."
        )

    def _declared(self, name: str, where: _Where, fld: str) -> str:
        if name not in self.tensors:
            raise where.error(
                fld,
                f"tensor '{name}' is not declared under 'tensors'",
                "a declared tensor name",
                "declare the tensor under 'tensors' or fix the name",
            )
        return name

    def _floats(self, value: Any, where: _Where, fld: str, n: int, positive: bool) -> tuple[float, ...]:
        if not isinstance(value, list) or len(value) != n:
            raise where.error(
                fld, f"got {_describe(value)}", f"a list of {n} numbers (one per input channel)"
            )
        return tuple(_float(v, where, fld, positive) for v in value)

    def _read(
        self, tensor: Any, where: _Where, fld: str, produced: dict[str, str], kinds: tuple[str, ...]
    ) -> TensorSpec:
        name = self._declared(_str(tensor, where, fld), where, fld)
        if name not in produced:
            raise where.error(
                fld,
                f"tensor '{name}' is neither the network input nor written by an earlier node",
                "a tensor produced before this node (nodes are in execution order)",
                "reorder the nodes or fix the tensor name",
            )
        spec = self.tensors[name]
        if spec.kind not in kinds:
            raise where.error(fld, f"tensor '{name}' is of kind '{spec.kind}'", f"kind {' or '.join(kinds)}")
        return spec

    def _write(self, tensor: Any, where: _Where, produced: dict[str, str], kind: str) -> TensorSpec:
        name = self._declared(_str(tensor, where, "output"), where, "output")
        if name in produced:
            raise where.error(
                "output",
                f"tensor '{name}' is already written by {produced[name]}",
                "each tensor written once",
                "give the output its own tensor name",
            )
        spec = self.tensors[name]
        if spec.kind != kind:
            raise where.error("output", f"tensor '{name}' is of kind '{spec.kind}'", f"kind {kind}")
        return spec

    def _node(self, index: int, raw: Any, produced: dict[str, str]) -> Node:
        where = _Where(self.gfile, f"node #{index}")
        node = _mapping(raw, where, None, "name, op, ...")
        name = _str(node.get("name"), where, "name")
        where = _Where(self.gfile, f"node '{name}'")
        op = node.get("op")
        if op not in OPS:
            raise where.error(
                "op",
                f"unknown op {_describe(op)}",
                f"one of {', '.join(OPS)}",
                "re-export the bundle with a matching version of qat export",
            )
        if op == "conv2d":
            return self._conv(name, node, where, produced)
        if op == "linear":
            return self._linear(name, node, where, produced)
        if op == "requant":
            return self._requant(name, node, where, produced)
        return self._avgpool(name, node, where, produced)

    def _conv(
        self, name: str, node: Mapping[str, Any], where: _Where, produced: dict[str, str]
    ) -> Conv2dNode:
        _keys(
            node,
            where,
            {
                "name",
                "op",
                "input",
                "output",
                "weight",
                "weight_format",
                "weight_scale",
                "stride",
                "padding",
                "groups",
            },
            set(),
        )
        x = self._read(node["input"], where, "input", produced, ("codes",))
        if len(x.shape) != 3:
            raise where.error("input", f"tensor '{x.name}' has shape {list(x.shape)}", "shape [C, H, W]")
        stride = _int_pair(node["stride"], where, "stride", 1)
        padding = _int_pair(node["padding"], where, "padding", 0)
        groups = _int(node["groups"], where, "groups", 1)
        c, h, w = x.shape
        if c % groups:
            raise where.error(
                "groups", f"{groups} does not divide the {c} input channels", "a divisor of C_in"
            )
        weight, wkey, wfmt = self._weights_rank4(node, where, c // groups)
        c_out, _, kh, kw = (int(v) for v in weight.shape)
        if c_out % groups:
            raise where.error(
                "groups", f"{groups} does not divide the {c_out} output channels", "a divisor of C_out"
            )
        if h + 2 * padding[0] < kh or w + 2 * padding[1] < kw:
            raise where.error(
                "padding",
                f"the {kh}x{kw} kernel is larger than the padded {h}x{w} input",
                "a kernel that fits the padded input",
            )
        h_out = (h + 2 * padding[0] - kh) // stride[0] + 1
        w_out = (w + 2 * padding[1] - kw) // stride[1] + 1
        y = self._write(node["output"], where, produced, "acc")
        if y.shape != (c_out, h_out, w_out):
            raise where.error(
                "output",
                f"tensor '{y.name}' has shape {list(y.shape)}",
                f"[{c_out}, {h_out}, {w_out}] (C_out, (H + 2ph - kh) // sh + 1, ...)",
            )
        scale, skey = _weight_scale(self.npz, node, where, c_out)
        return Conv2dNode(name, x.name, y.name, weight, wkey, wfmt, scale, skey, stride, padding, groups)

    def _weights_rank4(
        self, node: Mapping[str, Any], where: _Where, c_in: int
    ) -> tuple[np.ndarray, str, CodeFormat]:
        weight, key, fmt = _weights(self.npz, node, where, None, 4)
        if weight.shape[1] != c_in:
            raise where.error(
                "weight",
                f"shape {list(weight.shape)}",
                f"[C_out, {c_in}, kh, kw] (C_in / groups = {c_in})",
                _FIX_TENSORS,
            )
        return weight, key, fmt

    def _linear(
        self, name: str, node: Mapping[str, Any], where: _Where, produced: dict[str, str]
    ) -> LinearNode:
        _keys(
            node, where, {"name", "op", "input", "output", "weight", "weight_format", "weight_scale"}, set()
        )
        x = self._read(node["input"], where, "input", produced, ("codes",))
        if len(x.shape) != 1:
            raise where.error("input", f"tensor '{x.name}' has shape {list(x.shape)}", "shape [F]")
        weight, wkey, wfmt = _weights(self.npz, node, where, None, 2)
        if weight.shape[1] != x.shape[0]:
            raise where.error("weight", f"shape {list(weight.shape)}", f"[N, {x.shape[0]}]", _FIX_TENSORS)
        y = self._write(node["output"], where, produced, "acc")
        if y.shape != (int(weight.shape[0]),):
            raise where.error(
                "output", f"tensor '{y.name}' has shape {list(y.shape)}", f"[{weight.shape[0]}]"
            )
        scale, skey = _weight_scale(self.npz, node, where, int(weight.shape[0]))
        return LinearNode(name, x.name, y.name, weight, wkey, wfmt, scale, skey)

    def _requant(
        self, name: str, node: Mapping[str, Any], where: _Where, produced: dict[str, str]
    ) -> RequantNode:
        _keys(node, where, {"name", "op", "inputs", "shift", "function", "output"}, {"offset"})
        function = node["function"]
        if function not in REQUANT_FUNCTIONS:
            raise where.error(
                "function", f"got {_describe(function)}", f"one of {', '.join(REQUANT_FUNCTIONS)}"
            )
        y = self._write(node["output"], where, produced, "codes")
        assert y.fmt is not None
        if function == "clamp" and y.fmt.lattice not in ("full", "narrow"):
            raise where.error(
                "output",
                f"a clamp cannot produce the {y.fmt.lattice} lattice of '{y.name}'",
                "an output format with lattice full or narrow (or function: sign)",
            )
        if function == "sign" and not (y.fmt.signed and y.fmt.min <= -1 and y.fmt.max >= 1):
            raise where.error(
                "output",
                f"format {y.fmt} of '{y.name}' cannot hold -1 and +1",
                "a signed output format (lattice binary)",
            )
        channels = y.shape[0]
        raw_inputs = node["inputs"]
        if not isinstance(raw_inputs, list) or not raw_inputs:
            raise where.error(
                "inputs", f"got {_describe(raw_inputs)}", "a non-empty list of {tensor, multiplier, bias?}"
            )
        inputs = []
        for i, raw in enumerate(raw_inputs):
            fld = f"inputs[{i}]"
            item = _mapping(raw, where, fld, "tensor, multiplier, bias?")
            _keys(item, where, {"tensor", "multiplier"}, {"bias"}, prefix=f"{fld}.")
            x = self._read(item["tensor"], where, f"{fld}.tensor", produced, ("acc", "codes"))
            if x.shape != y.shape:
                raise where.error(
                    f"{fld}.tensor",
                    f"tensor '{x.name}' has shape {list(x.shape)}",
                    f"the output's shape {list(y.shape)}",
                )
            mult = _int_array(
                self.npz.get(item["multiplier"], where, f"{fld}.multiplier"),
                where,
                f"{fld}.multiplier",
                (channels,),
            )
            limit = (1 << (self.mult_bits - 1)) - 1
            _check_range(
                mult,
                where,
                f"{fld}.multiplier",
                -limit,
                limit,
                f"|M| <= 2^(mult_bits-1) - 1 with mult_bits={self.mult_bits}",
            )
            bias = bias_key = None
            if "bias" in item:
                bias_key = item["bias"]
                bias = _int_array(
                    self.npz.get(bias_key, where, f"{fld}.bias"), where, f"{fld}.bias", (channels,)
                )
                _check_range(bias, where, f"{fld}.bias", -(1 << 31), (1 << 31) - 1, "int32 biases")
                bias = bias.astype(np.int64)
            inputs.append(RequantInput(x.name, mult.astype(np.int64), item["multiplier"], bias, bias_key))
        shift_key = node["shift"]
        shift = _int_array(self.npz.get(shift_key, where, "shift"), where, "shift", (channels,))
        _check_range(shift, where, "shift", 0, MAX_SHIFT, "shifts in 0..62")
        offset = offset_key = None
        if "offset" in node:
            offset_key = node["offset"]
            offset = _int_array(self.npz.get(offset_key, where, "offset"), where, "offset", (channels,))
            _check_range(offset, where, "offset", -(1 << 63), (1 << 63) - 1, "int64 offsets")
            offset = offset.astype(np.int64)
        return RequantNode(
            name, tuple(inputs), shift.astype(np.int64), shift_key, function, y.name, offset, offset_key
        )

    def _avgpool(
        self, name: str, node: Mapping[str, Any], where: _Where, produced: dict[str, str]
    ) -> AvgPoolSumNode:
        _keys(node, where, {"name", "op", "input", "output"}, set())
        x = self._read(node["input"], where, "input", produced, ("codes",))
        if len(x.shape) != 3:
            raise where.error("input", f"tensor '{x.name}' has shape {list(x.shape)}", "shape [C, H, W]")
        y = self._write(node["output"], where, produced, "codes")
        if y.shape != (x.shape[0],):
            raise where.error("output", f"tensor '{y.name}' has shape {list(y.shape)}", f"[{x.shape[0]}]")
        assert x.fmt is not None and y.fmt is not None
        area = x.shape[1] * x.shape[2]
        lo, hi = x.fmt.min * area, x.fmt.max * area
        if y.fmt.signed != x.fmt.signed or y.fmt.lattice != "full" or lo < y.fmt.min or hi > y.fmt.max:
            need = IntFormat.for_range(lo, hi, x.fmt.signed) if lo >= -(1 << 63) and hi < (1 << 63) else None
            raise where.error(
                "output",
                f"format {y.fmt} of '{y.name}' cannot hold sums in [{lo}, {hi}]",
                f"{need.name if need else 'a wider format'} (bits_in + ceil(log2(H*W)), "
                "same signedness, lattice full)",
            )
        return AvgPoolSumNode(name, x.name, y.name)


def _load_reference(path: Path, bundle: Bundle) -> Reference:
    npz = _Npz(path, _FIX_REFERENCE)
    arrays = npz.arrays
    file = str(path)

    def err(key: str, problem: str, expected: str) -> BundleError:
        return BundleError(f"{file}: array '{key}': {problem}; expected {expected}; {_FIX_REFERENCE}")

    for key in ("input_codes", "labels"):
        if key not in arrays:
            raise err(key, "missing", "input_codes and labels (docs/export-format.md)")
    spec = bundle.input_spec
    inp = arrays["input_codes"]
    if inp.ndim != 4 or tuple(inp.shape[1:]) != spec.shape or inp.shape[0] < 1:
        raise err("input_codes", f"shape {list(inp.shape)}", f"[N, {', '.join(map(str, spec.shape))}]")
    assert spec.fmt is not None
    problem = spec.fmt.violation(inp)
    if problem:
        raise err("input_codes", problem, f"codes of the input format {spec.fmt}")
    n = int(inp.shape[0])
    labels = arrays["labels"]
    if labels.dtype.kind not in "iu" or labels.shape != (n,):
        raise err("labels", f"{labels.dtype} of shape {list(labels.shape)}", f"integers of shape [{n}]")
    codes: dict[str, np.ndarray] = {}
    floats: dict[str, np.ndarray] = {}
    eval_pred = eval_labels = None
    device = "unknown"
    for key, arr in arrays.items():
        if key in ("input_codes", "labels"):
            continue
        if key == "device":
            if arr.ndim != 0 or arr.dtype.kind != "U":
                raise err(key, f"{arr.dtype} of shape {list(arr.shape)}", "a 0-d string such as 'cpu'")
            device = str(arr)
            continue
        if key in ("eval_predictions", "eval_labels"):
            if arr.dtype.kind not in "iu" or arr.ndim != 1:
                raise err(key, f"{arr.dtype} of shape {list(arr.shape)}", "a 1-d integer array")
            continue
        prefix, _, tensor = key.partition("/")
        if prefix not in ("codes", "float") or not tensor:
            raise err(
                key,
                "unknown key",
                "input_codes, labels, codes/<tensor>, float/<tensor>, eval_predictions, eval_labels, device",
            )
        tspec = bundle.tensors.get(tensor)
        if tspec is None or tspec.kind != "codes":
            raise err(key, f"'{tensor}' is not a codes tensor of graph.yaml", "a declared codes tensor")
        if tuple(arr.shape) != (n, *tspec.shape):
            raise err(key, f"shape {list(arr.shape)}", f"[{n}, {', '.join(map(str, tspec.shape))}]")
        if prefix == "codes":
            assert tspec.fmt is not None
            problem = tspec.fmt.violation(arr)
            if problem:
                raise err(key, problem, f"codes of {tspec.fmt}")
            codes[tensor] = arr.astype(np.int64)
        else:
            if arr.dtype.kind != "f" or not bool(np.all(np.isfinite(arr))):
                raise err(key, f"dtype {arr.dtype} (or non-finite values)", "finite float32 values")
            floats[tensor] = arr.astype(np.float32)
    if ("eval_predictions" in arrays) != ("eval_labels" in arrays):
        raise err(
            "eval_predictions", "only one of eval_predictions and eval_labels is present", "both or neither"
        )
    if "eval_predictions" in arrays:
        eval_pred, eval_labels = arrays["eval_predictions"], arrays["eval_labels"]
        if eval_pred.shape != eval_labels.shape:
            raise err(
                "eval_labels",
                f"shape {list(eval_labels.shape)}",
                f"{list(eval_pred.shape)} like eval_predictions",
            )
        classes = bundle.output_spec.shape[0]
        if eval_pred.size and (int(eval_pred.min()) < 0 or int(eval_pred.max()) >= classes):
            raise err("eval_predictions", "a class index out of range", f"classes in 0..{classes - 1}")
        eval_pred, eval_labels = eval_pred.astype(np.int64), eval_labels.astype(np.int64)
    return Reference(
        inp.astype(np.int64), labels.astype(np.int64), codes, floats, eval_pred, eval_labels, device
    )


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and validate the bundle directory ``path``; :class:`BundleError` names the first broken rule."""
    return _Loader(Path(path)).load()


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------


def bundle_graph(bundle: Bundle) -> dict[str, Any]:
    """The graph.yaml mapping of ``bundle`` (the inverse of the loader)."""
    meta = bundle.meta
    tensors: dict[str, Any] = {}
    for name, spec in bundle.tensors.items():
        entry: dict[str, Any] = {"shape": list(spec.shape), "kind": spec.kind}
        if spec.kind == "codes":
            assert spec.fmt is not None
            entry["format"] = spec.fmt.to_yaml()
            entry["scale"] = float(spec.scale)  # type: ignore[arg-type]
        tensors[name] = entry
    nodes: list[dict[str, Any]] = []
    for node in bundle.nodes:
        if isinstance(node, Conv2dNode):
            nodes.append(
                {
                    "name": node.name,
                    "op": "conv2d",
                    "input": node.input,
                    "output": node.output,
                    "weight": node.weight_key,
                    "weight_format": node.weight_format.to_yaml(),
                    "weight_scale": node.weight_scale_key,
                    "stride": list(node.stride),
                    "padding": list(node.padding),
                    "groups": node.groups,
                }
            )
        elif isinstance(node, LinearNode):
            nodes.append(
                {
                    "name": node.name,
                    "op": "linear",
                    "input": node.input,
                    "output": node.output,
                    "weight": node.weight_key,
                    "weight_format": node.weight_format.to_yaml(),
                    "weight_scale": node.weight_scale_key,
                }
            )
        elif isinstance(node, RequantNode):
            inputs = []
            for item in node.inputs:
                entry = {"tensor": item.tensor, "multiplier": item.multiplier_key}
                if item.bias_key is not None:
                    entry["bias"] = item.bias_key
                inputs.append(entry)
            nodes.append(
                {
                    "name": node.name,
                    "op": "requant",
                    "function": node.function,
                    "inputs": inputs,
                    "shift": node.shift_key,
                    "output": node.output,
                }
            )
            if node.offset_key is not None:
                nodes[-1]["offset"] = node.offset_key
        else:
            nodes.append({"name": node.name, "op": "avgpool_sum", "input": node.input, "output": node.output})
    graph: dict[str, Any] = {
        "format_version": meta.format_version,
        "model": meta.model,
        "rounding": meta.rounding,
        "acc_bits": meta.acc_bits,
        "mult_bits": meta.mult_bits,
        "input": {"tensor": meta.input_tensor, "mean": list(meta.input_mean), "std": list(meta.input_std)},
        "output": meta.output,
        "quantization": dict(meta.quantization),
    }
    if meta.reference is not None:
        graph["reference"] = dict(meta.reference)
    graph["tensors"] = tensors
    graph["nodes"] = nodes
    return graph


def write_bundle_files(
    path: str | os.PathLike[str],
    graph: Mapping[str, Any] | str,
    tensors: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a bundle directory from raw parts, atomically (a temporary directory, then a rename).

    ``graph`` is the graph.yaml mapping (or its text). No validation: use :func:`load_bundle` to
    check what was written. An existing directory at ``path`` is replaced.
    """
    dest = Path(path)
    tmp = staging_directory(dest)
    try:
        text = graph if isinstance(graph, str) else yaml.safe_dump(dict(graph), sort_keys=False)
        (tmp / GRAPH_FILE).write_text(text, encoding="utf-8")
        np.savez(tmp / TENSORS_FILE, **dict(tensors))
        if reference is not None:
            np.savez(tmp / REFERENCE_FILE, **dict(reference))
        replace_directory(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def save_bundle(bundle: Bundle, path: str | os.PathLike[str]) -> Path:
    """Write ``bundle`` to the directory ``path`` atomically (graph.yaml, tensors.npz, reference.npz)."""
    ref = bundle.reference.to_npz() if bundle.reference is not None else None
    return write_bundle_files(path, bundle_graph(bundle), bundle.consts, ref)


# ----------------------------------------------------------------------------------------------
# Network input
# ----------------------------------------------------------------------------------------------


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
    x = arr.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(bundle.meta.input_mean, dtype=np.float32)) / np.asarray(
        bundle.meta.input_std, dtype=np.float32
    )
    q = np.floor(x / np.float32(spec.scale) + np.float32(0.5))
    q = np.clip(q, spec.fmt.min, spec.fmt.max)
    return np.ascontiguousarray(q.astype(np.int64).transpose(0, 3, 1, 2))
