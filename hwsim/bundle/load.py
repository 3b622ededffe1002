"""Validation: read a bundle directory (or a graph mapping and arrays in memory) and check every rule.

Place in the flow: ``qat export`` (and any other producer, through ``hwsim.bundle.build``) writes
``bundle/`` (docs/export-format.md, normative); :func:`load_bundle` turns it into the frozen
dataclasses of ``hwsim.bundle.graph`` that the emulator, the MAC-array model and ``hwsim compare``
read. Every rule of the format is checked here, once; anything malformed raises
:class:`~hwsim.bundle.graph.BundleError` naming the file, the node (or tensor), the field, what was
wrong, what was expected and the fix. Nothing downstream re-validates. The keys of every mapping
come from ``hwsim.bundle.schema``.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import limits
from hwsim.bundle.graph import (
    AvgPoolSumNode,
    Bundle,
    BundleError,
    BundleMeta,
    Conv2dNode,
    LinearNode,
    MaxPoolNode,
    Node,
    Reference,
    RequantInput,
    RequantNode,
    TensorSpec,
    window_output,
)
from hwsim.bundle.lowering import worst_case_acc_bits
from hwsim.bundle.schema import (
    FORMAT_KEYS,
    FORMAT_VERSIONS,
    GRAPH_FILE,
    INPUT_KEYS,
    NODE_KEYS,
    OPS,
    REFERENCE_FILE,
    REQUANT_FUNCTIONS,
    REQUANT_INPUT_KEYS,
    TENSOR_KEYS,
    TENSOR_KINDS,
    TENSORS_FILE,
    TOP_KEYS,
    op_since,
    required_and_optional,
)
from hwsim.errors import shown
from hwsim.fixed import (
    DEFAULT_ROUNDING,
    LATTICES,
    MAX_SHIFT,
    ROUNDING_MODES,
    CodeFormat,
    FormatError,
    IntFormat,
)
from hwsim.yaml_io import YamlError, is_finite_number, read_yaml

_FIX_GRAPH = "fix graph.yaml or re-export the bundle"
_FIX_TENSORS = "fix tensors.npz or re-export the bundle"
_FIX_REFERENCE = "fix reference.npz or re-export the bundle (reference.npz is optional for hwsim emulate)"
# Integer dtypes the spec allows for multipliers and biases (docs/export-format.md, tensors.npz)
_MULTIPLIER_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_BIAS_DTYPES = (np.dtype(np.int32),)
MAX_NAME_CHARS = 200  # node and tensor names
# An avgpool_sum's scale is scale_in / (H*W), a maxpool's scale_in, up to the decimal printing of graph.yaml
_SCALE_RTOL = 1e-9


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mapping(value: Any, where: _Where, fld: str | None, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.error(fld, f"got {type(value).__name__} {shown(value)}", f"a mapping ({expected})")
    for key in value:
        if not isinstance(key, str):
            raise where.error(fld, f"key {shown(key)} is not a string", f"a mapping ({expected})")
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
        raise where.error(fld, f"got {shown(value)}", f"an integer in {rng}")
    return int(value)


def _str(value: Any, where: _Where, fld: str) -> str:
    """A node or tensor name: a non-empty string short enough to quote whole in a message."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise where.error(
            fld, f"got {shown(value)}", f"a non-empty string of at most {MAX_NAME_CHARS} characters"
        )
    return value


def _float(value: Any, where: _Where, fld: str, positive: bool) -> float:
    if not is_finite_number(value):
        raise where.error(fld, f"got {shown(value)}", "a finite number")
    if positive and value <= 0:
        raise where.error(fld, f"got {value!r}", "a positive number")
    return float(value)


def _int_pair(value: Any, where: _Where, fld: str, lo: int) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2 or not all(_is_int(v) and v >= lo for v in value):
        raise where.error(fld, f"got {shown(value)}", f"a list of two integers >= {lo}")
    return int(value[0]), int(value[1])


def _code_format(value: Any, where: _Where, fld: str) -> CodeFormat:
    fmt = _mapping(value, where, fld, "bits, signed, nominal_bits?, lattice?")
    _keys(fmt, where, *required_and_optional(FORMAT_KEYS), prefix=f"{fld}.")
    bits = _int(fmt["bits"], where, f"{fld}.bits", 1, 64)
    if not isinstance(fmt["signed"], bool):
        raise where.error(f"{fld}.signed", f"got {shown(fmt['signed'])}", "true or false")
    nominal = fmt.get("nominal_bits", bits)
    nominal = _int(nominal, where, f"{fld}.nominal_bits", 1, 64)
    lattice = fmt.get("lattice", "full")
    if lattice not in LATTICES:
        raise where.error(f"{fld}.lattice", f"got {shown(lattice)}", f"one of {', '.join(LATTICES)}")
    try:
        return CodeFormat(bits, fmt["signed"], nominal, lattice)
    except FormatError as err:
        raise where.error(fld, str(err), "a consistent integer format (docs/export-format.md)") from None


class _Arrays:
    """The arrays of tensors.npz (or reference.npz) by key, each read on first use; errors are BundleError."""

    def __init__(self, names: Iterable[str], read: Callable[[str], np.ndarray], file: str, fix: str) -> None:
        self.file = file
        self.fix = fix
        self.names: tuple[str, ...] = tuple(names)
        self._read = read
        self.arrays: dict[str, np.ndarray] = {}  # the arrays read so far

    @staticmethod
    def memory(arrays: Mapping[str, Any], file: str, fix: str) -> _Arrays:
        """Arrays held in memory (``validate_bundle``)."""
        held = {str(k): np.asarray(v) for k, v in arrays.items()}
        return _Arrays(held, held.__getitem__, file, fix)

    @staticmethod
    @contextmanager
    def open(path: Path, fix: str) -> Iterator[_Arrays]:
        """The archive at ``path``, its directory checked (``_npz_members``); members are read on use."""
        try:
            archive = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise BundleError(
                f"{path}: missing; expected an .npz archive (numpy.savez); re-export the bundle"
            ) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as err:
            raise BundleError(
                f"{path}: not a readable .npz archive ({type(err).__name__}: {shown(str(err), 200)}); "
                f"expected a numpy.savez archive; {fix}"
            ) from None
        with archive:
            members = _npz_members(archive, path, fix)
            yield _Arrays(members, lambda key: _npz_array(archive, members[key], path, fix), str(path), fix)

    def array(self, key: str) -> np.ndarray:
        """The array ``key`` (one of :attr:`names`), read once."""
        if key not in self.arrays:
            self.arrays[key] = self._read(key)
        return self.arrays[key]

    def get(self, key: Any, where: _Where, fld: str) -> np.ndarray:
        if not isinstance(key, str) or not key:
            raise where.error(fld, f"got {shown(key)}", f"the name of an array in {TENSORS_FILE}")
        if key not in self.names:
            raise where.error(
                fld, f"array {shown(key)} is not in {self.file}", "a key of tensors.npz", self.fix
            )
        return self.array(key)

    def unread(self) -> list[str]:
        """The arrays nothing has asked for."""
        return [name for name in self.names if name not in self.arrays]


def _npz_members(archive: zipfile.ZipFile, path: Path, fix: str) -> dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members of an archive by array name, their declared sizes checked before any is read.

    The total uncompressed size is at most :data:`hwsim.limits.NPZ_BYTES`; a large member
    compressed more than :data:`hwsim.limits.NPZ_RATIO` to one is refused as a decompression bomb.
    """
    cap = limits.NPZ_BYTES.value()
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in archive.infolist():
        name = info.filename
        if info.is_dir() or not name.endswith(".npy"):
            raise BundleError(
                f"{path}: member {shown(name)} is not a .npy array; expected only the arrays of "
                f"numpy.savez; {fix}"
            )
        key = name[: -len(".npy")]
        if key in members:
            raise BundleError(f"{path}: member {shown(name)} appears twice; expected each array once; {fix}")
        size = info.file_size
        if size > limits.NPZ_RATIO_FLOOR and size > limits.NPZ_RATIO * max(info.compress_size, 1):
            raise BundleError(
                f"{path}: member {shown(name)} declares {size} bytes compressed into {info.compress_size} "
                f"(more than {limits.NPZ_RATIO}:1, a decompression bomb); expected arrays that compress "
                f"like real data; {fix}"
            )
        total += size
        if total > cap:
            raise BundleError(
                f"{path}: the members declare more than {cap} bytes uncompressed (at member {shown(name)}, "
                f"{size} bytes); expected a smaller archive; {limits.NPZ_BYTES.how_to_raise()}"
            )
        members[key] = info
    return members


def _npz_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, fix: str) -> np.ndarray:
    """One member read: its .npy header checked against the member's declared size, then its data."""
    name = shown(info.filename)
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version}, expected 1.0 or 2.0")
            data_bytes = info.file_size - f.tell()
        if dtype.hasobject:
            raise BundleError(
                f"{path}: member {name} holds Python objects (dtype {shown(dtype)}); expected plain "
                f"numeric arrays (nothing pickled); {fix}"
            )
        need = math.prod(shape) * dtype.itemsize
        if need > data_bytes:
            raise BundleError(
                f"{path}: member {name} declares shape {shown(list(shape))} of {dtype} ({need} bytes) but "
                f"holds {data_bytes} bytes; expected a complete .npy array; {fix}"
            )
        with archive.open(info) as f:
            return np.asarray(np.lib.format.read_array(f, allow_pickle=False))
    except BundleError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as err:
        raise BundleError(
            f"{path}: member {name} is not a readable array ({type(err).__name__}: {shown(str(err), 200)}); "
            f"expected a numpy.savez archive without pickled objects; {fix}"
        ) from None
    except Exception as err:  # zlib.error and other decoder failures of a corrupt archive
        raise BundleError(
            f"{path}: corrupt .npz archive at member {name} ({type(err).__name__}: {shown(str(err), 200)}); "
            f"expected a numpy.savez archive; {fix}"
        ) from None


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


def _dtype(arr: np.ndarray, where: _Where, fld: str, allowed: tuple[np.dtype, ...], expected: str) -> None:
    if arr.dtype not in allowed:
        raise where.error(
            fld,
            f"dtype {arr.dtype}",
            f"{expected} (docs/export-format.md, tensors.npz)",
            f"store the array as {' or '.join(d.name for d in allowed)}",
        )


def _weight_scale(
    npz: _Arrays, raw: Mapping[str, Any], where: _Where, channels: int
) -> tuple[np.ndarray, str]:
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
    npz: _Arrays, raw: Mapping[str, Any], where: _Where, shape: tuple[int, ...] | None, rank: int
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
    _str(name, _Where(file, "tensors"), "the name of a tensor")
    where = _Where(file, f"tensor '{name}'")
    spec = _mapping(raw, where, None, "shape, kind, format, scale")
    kind = spec.get("kind")
    if kind not in TENSOR_KINDS:
        raise where.error("kind", f"got {shown(kind)}", f"one of {', '.join(TENSOR_KINDS)}")
    _keys(spec, where, *required_and_optional(TENSOR_KEYS[kind]))
    shape = spec["shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(v) and v >= 1 for v in shape):
        raise where.error("shape", f"got {shown(shape)}", "a non-empty list of positive integers")
    if kind == "acc":
        return TensorSpec(name, "acc", tuple(shape), None, None)
    fmt = _code_format(spec["format"], where, "format")
    scale = _float(spec["scale"], where, "scale", positive=True)
    return TensorSpec(name, "codes", tuple(int(v) for v in shape), fmt, scale)


class _Loader:
    """One pass over graph.yaml in execution order, resolving arrays and checking every rule."""

    def __init__(self, gfile: str, graph: Any, arrays: _Arrays) -> None:
        self.gfile = gfile
        self.top = _Where(gfile)
        self.raw = graph
        self.npz = arrays

    def load(self, directory: Path | None) -> Bundle:
        graph = _mapping(
            self.raw, self.top, None, "the top level of graph.yaml: format_version, tensors, nodes, ..."
        )
        version = graph.get("format_version")
        if not _is_int(version) or version not in FORMAT_VERSIONS:
            raise self.top.error(
                "format_version",
                f"unsupported version {shown(version)}" if "format_version" in graph else "missing",
                f"one of {', '.join(map(str, FORMAT_VERSIONS))}",
                "re-export the bundle with this version of qat export",
            )
        self.version = int(version)
        _keys(graph, self.top, *required_and_optional(TOP_KEYS, self.version))
        self.rounding = self._rounding(graph["rounding"], self.top)
        self.acc_bits = _int(graph["acc_bits"], self.top, "acc_bits", 1, 64)
        self.mult_bits = _int(graph["mult_bits"], self.top, "mult_bits", 2, 63)
        model = graph.get("model", "")
        if not isinstance(model, str):
            raise self.top.error("model", f"got {shown(model)}", "a string")
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
        _keys(inp, in_where, *required_and_optional(INPUT_KEYS, self.version))
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

        raw_nodes = graph["nodes"]
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise self.top.error("nodes", f"got {shown(raw_nodes)}", "a non-empty list of nodes")
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
            self._check_working_size(node)
            produced[node.output] = f"node '{node.name}'"
            nodes.append(node)
        if output not in produced or output == input_tensor:
            raise self.top.error(
                "output",
                f"tensor '{output}' is not produced by any node",
                "the output of a node (the logits)",
            )
        self._check_acc_bits(nodes)
        unread = self.npz.unread()
        if unread:
            raise BundleError(
                f"{self.npz.file}: array {shown(unread[0])} is not named by any node of graph.yaml "
                f"({len(unread)} such array{'s' if len(unread) > 1 else ''}); expected only the arrays "
                "graph.yaml names (docs/export-format.md, tensors.npz); remove it or re-export the bundle"
            )
        meta = BundleMeta(
            self.version,
            model,
            self.rounding,
            self.acc_bits,
            self.mult_bits,
            input_tensor,
            mean,
            std,
            output,
            quant,
            ref_info,
        )
        consts = {key: self.npz.arrays[key] for key in self.npz.names}  # every one was read, in file order
        return Bundle(directory, meta, self.tensors, tuple(nodes), consts, None)

    def _rounding(self, value: Any, where: _Where, fld: str = "rounding") -> str:
        if self.version == 1:
            if value != DEFAULT_ROUNDING:
                raise where.error(
                    fld,
                    f"unsupported rounding {shown(value)}",
                    f"'{DEFAULT_ROUNDING}' (the only rule of format_version 1)",
                    "set rounding: half_up, or format_version: 2 for the other modes",
                )
            return DEFAULT_ROUNDING
        if not isinstance(value, str) or value not in ROUNDING_MODES:
            raise where.error(
                fld,
                f"unknown rounding mode {shown(value)}",
                f"one of {', '.join(ROUNDING_MODES)} (docs/export-format.md, Rounding)",
            )
        return value

    def _check_acc_bits(self, nodes: list[Node]) -> None:
        """``acc_bits`` must hold every accumulator the weights allow for legal inputs (capped at 64)."""
        worst, where = 0, ""
        for node in nodes:
            if isinstance(node, (Conv2dNode, LinearNode)):
                fmt = self.tensors[node.input].fmt
                assert fmt is not None
                bits = worst_case_acc_bits(node.weight, fmt)
                if bits > worst:
                    worst, where = bits, node.name
        need = min(worst, 64)
        if self.acc_bits < need:
            raise self.top.error(
                "acc_bits",
                f"{self.acc_bits} is narrower than the {need}-bit accumulator that node '{where}' can reach "
                "(worst case over its weights and every legal input code)",
                f"acc_bits >= {need}, the widest worst-case accumulator of the bundle",
                f"set acc_bits: {need} (a narrower accumulator is a run-time choice: --acc-bits)",
            )

    def _check_working_size(self, node: Node) -> None:
        """What ``node`` needs for one image (:func:`working_bytes`) must fit the working-size limit."""
        parts = working_bytes(node, self.tensors)
        need, cap = sum(parts.values()), limits.WORKING_BYTES.value()
        if need > cap:
            detail = ", ".join(
                f"{what} {size / 2**20:.1f} MiB" if size >= 2**20 else f"{what} {size / 2**10:.1f} KiB"
                for what, size in parts.items()
                if size
            )
            raise _Where(self.gfile, f"node '{node.name}'").error(
                None,
                f"needs {need} bytes ({need / 2**30:.1f} GiB) for one image ({detail}), more than the limit "
                f"of {cap} bytes",
                "a node whose inputs, output, padded input and im2col matrix fit the limit (the emulator "
                "holds at least one image at a time)",
                f"check the shapes and padding in graph.yaml, or {limits.WORKING_BYTES.how_to_raise()}",
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
            raise where.error(fld, f"got {shown(value)}", f"a list of {n} numbers (one per input channel)")
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
                f"unknown op {shown(op)}",
                f"one of {', '.join(OPS)}",
                "re-export the bundle with a matching version of qat export",
            )
        since = op_since(op)
        if since > self.version:
            raise where.error(
                "op",
                f"op '{op}' does not exist in format_version {self.version}",
                f"format_version >= {since} for op '{op}' (or one of "
                f"{', '.join(o for o in OPS if op_since(o) <= self.version)})",
                f"set format_version: {since} (every version-{self.version} node stays valid), "
                "or re-export the bundle",
            )
        _keys(node, where, *required_and_optional(NODE_KEYS[op], self.version))
        read = {
            "conv2d": self._conv,
            "linear": self._linear,
            "requant": self._requant,
            "avgpool_sum": self._avgpool,
            "maxpool": self._maxpool,
        }
        return read[op](name, node, where, produced)

    def _conv(
        self, name: str, node: Mapping[str, Any], where: _Where, produced: dict[str, str]
    ) -> Conv2dNode:
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
        h_out, w_out = window_output((h, w), (kh, kw), stride, padding)
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
        function = node["function"]
        if function not in REQUANT_FUNCTIONS:
            raise where.error("function", f"got {shown(function)}", f"one of {', '.join(REQUANT_FUNCTIONS)}")
        y = self._write(node["output"], where, produced, "codes")
        assert y.fmt is not None
        if function == "clamp" and y.fmt.lattice not in ("full", "narrow"):
            raise where.error(
                "output",
                f"a clamp cannot produce the {y.fmt.lattice} lattice of '{y.name}'",
                "an output format with lattice full or narrow (or function: sign)",
            )
        if function == "sign" and y.fmt.lattice != "binary":
            raise where.error(
                "output",
                f"a sign node produces -1 and +1, but '{y.name}' has format {y.fmt}",
                "the binary lattice, {bits: 2, signed: true, lattice: binary}",
                "declare the output tensor with the binary lattice",
            )
        rounding = self._rounding(node.get("rounding", self.rounding), where)
        channels = y.shape[0]
        raw_inputs = node["inputs"]
        if not isinstance(raw_inputs, list) or not raw_inputs:
            raise where.error(
                "inputs", f"got {shown(raw_inputs)}", "a non-empty list of {tensor, multiplier, bias?}"
            )
        inputs = []
        for i, raw in enumerate(raw_inputs):
            fld = f"inputs[{i}]"
            item = _mapping(raw, where, fld, "tensor, multiplier, bias?")
            _keys(item, where, *required_and_optional(REQUANT_INPUT_KEYS, self.version), prefix=f"{fld}.")
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
            _dtype(mult, where, f"{fld}.multiplier", _MULTIPLIER_DTYPES, "int32 or int64 multipliers")
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
                _dtype(bias, where, f"{fld}.bias", _BIAS_DTYPES, "int32 biases")
                _check_range(bias, where, f"{fld}.bias", -(1 << 31), (1 << 31) - 1, "int32 biases")
                bias = bias.astype(np.int64)
            inputs.append(RequantInput(x.name, mult.astype(np.int64), item["multiplier"], bias, bias_key))
        shift_key = node["shift"]
        shift = _int_array(self.npz.get(shift_key, where, "shift"), where, "shift", (channels,))
        _check_range(shift, where, "shift", 0, MAX_SHIFT, f"shifts in 0..{MAX_SHIFT}")
        offset = offset_key = None
        if "offset" in node:
            offset_key = node["offset"]
            offset = _int_array(self.npz.get(offset_key, where, "offset"), where, "offset", (channels,))
            _check_range(offset, where, "offset", -(1 << 63), (1 << 63) - 1, "int64 offsets")
            offset = offset.astype(np.int64)
        return RequantNode(
            name,
            tuple(inputs),
            shift.astype(np.int64),
            shift_key,
            function,
            y.name,
            offset,
            offset_key,
            rounding,
        )

    def _avgpool(
        self, name: str, node: Mapping[str, Any], where: _Where, produced: dict[str, str]
    ) -> AvgPoolSumNode:
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
        assert x.scale is not None and y.scale is not None
        want = x.scale / area
        if not math.isclose(y.scale, want, rel_tol=_SCALE_RTOL, abs_tol=0.0):
            raise _Where(self.gfile, f"tensor '{y.name}'").error(
                "scale",
                f"{y.scale!r} is not the scale of a sum over {x.shape[1]}x{x.shape[2]} of '{x.name}' "
                f"(scale {x.scale!r})",
                f"scale_in / (H*W) = {want!r} (the 1/(H*W) is folded into the next multiplier)",
                f"set the scale of '{y.name}' to {want!r}",
            )
        return AvgPoolSumNode(name, x.name, y.name)

    def _maxpool(
        self, name: str, node: Mapping[str, Any], where: _Where, produced: dict[str, str]
    ) -> MaxPoolNode:
        x = self._read(node["input"], where, "input", produced, ("codes",))
        if len(x.shape) != 3:
            raise where.error("input", f"tensor '{x.name}' has shape {list(x.shape)}", "shape [C, H, W]")
        kernel = _int_pair(node["kernel"], where, "kernel", 1)
        stride = _int_pair(node["stride"], where, "stride", 1)
        padding = _int_pair(node["padding"], where, "padding", 0)
        if padding[0] >= kernel[0] or padding[1] >= kernel[1]:
            raise where.error(
                "padding",
                f"{list(padding)} is not smaller than the kernel {list(kernel)}",
                "padding < kernel on each axis (a window of padding alone has no maximum)",
            )
        c, h, w = x.shape
        kh, kw = kernel
        if h + 2 * padding[0] < kh or w + 2 * padding[1] < kw:
            raise where.error(
                "kernel",
                f"the {kh}x{kw} kernel is larger than the padded {h}x{w} input (padding {list(padding)})",
                "a kernel that fits the padded input",
            )
        h_out, w_out = window_output((h, w), kernel, stride, padding)
        y = self._write(node["output"], where, produced, "codes")
        if y.shape != (c, h_out, w_out):
            raise where.error(
                "output",
                f"tensor '{y.name}' has shape {list(y.shape)}",
                f"[{c}, {h_out}, {w_out}] (C, (H + 2ph - kh) // sh + 1, (W + 2pw - kw) // sw + 1)",
            )
        assert x.fmt is not None and y.fmt is not None
        if y.fmt != x.fmt:
            raise _Where(self.gfile, f"tensor '{y.name}'").error(
                "format",
                f"{y.fmt} differs from the format {x.fmt} of the input '{x.name}'",
                "the input's format (a maxpool selects codes, it does not requantize)",
                f"declare '{y.name}' with the format of '{x.name}'",
            )
        assert x.scale is not None and y.scale is not None
        if not math.isclose(y.scale, x.scale, rel_tol=_SCALE_RTOL, abs_tol=0.0):
            raise _Where(self.gfile, f"tensor '{y.name}'").error(
                "scale",
                f"{y.scale!r} differs from the scale {x.scale!r} of the input '{x.name}'",
                "the input's scale (a maxpool selects codes, it does not rescale)",
                f"set the scale of '{y.name}' to {x.scale!r}",
            )
        return MaxPoolNode(name, x.name, y.name, kernel, stride, padding)


def working_bytes(node: Node, tensors: Mapping[str, TensorSpec]) -> dict[str, int]:
    """What ``node`` holds for one image, as int64 bytes by part (the emulator's widest element).

    Parts: ``inputs`` and ``output`` (the tensors it reads and writes), ``padded input`` (a conv or
    maxpool with padding: the zero-padded copy) and ``im2col`` (a conv: ``C_in * kh * kw`` columns
    for each of the ``H_out * W_out`` output positions). :data:`hwsim.limits.WORKING_BYTES` bounds the sum.
    """
    item = np.dtype(np.int64).itemsize
    parts = {
        "inputs": sum(math.prod(tensors[t].shape) for t in node.reads) * item,
        "output": math.prod(tensors[node.output].shape) * item,
        "padded input": 0,
        "im2col": 0,
    }
    if isinstance(node, (Conv2dNode, MaxPoolNode)):
        c, h, w = tensors[node.input].shape
        ph, pw = node.padding
        if ph or pw:
            parts["padded input"] = c * (h + 2 * ph) * (w + 2 * pw) * item
    if isinstance(node, Conv2dNode):
        kh, kw = node.kernel
        _, h_out, w_out = tensors[node.output].shape
        parts["im2col"] = tensors[node.input].shape[0] * kh * kw * h_out * w_out * item
    return parts


def _reference(npz: _Arrays, bundle: Bundle) -> Reference:
    """reference.npz checked against the bundle's tensors (keys as docs/export-format.md lists them)."""
    file = npz.file

    def err(key: str, problem: str, expected: str) -> BundleError:
        return BundleError(f"{file}: array {shown(key)}: {problem}; expected {expected}; {_FIX_REFERENCE}")

    for key in ("input_codes", "labels"):
        if key not in npz.names:
            raise err(key, "missing", "input_codes and labels (docs/export-format.md)")
    for key in npz.names:  # every name is one the format defines, before any array is read
        if key in ("input_codes", "labels", "device", "eval_predictions", "eval_labels"):
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
            raise err(key, f"{shown(tensor)} is not a codes tensor of graph.yaml", "a declared codes tensor")
    arrays = {key: npz.array(key) for key in npz.names}
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
    classes = bundle.output_spec.shape[0]
    outside = np.flatnonzero((labels < -1) | (labels >= classes))
    if outside.size:
        i = int(outside[0])
        raise err(
            "labels", f"label {int(labels[i])} at index {i}", f"-1 (unknown) or a class in 0..{classes - 1}"
        )
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
        tspec = bundle.tensors[tensor]
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
        for key, arr in (("eval_predictions", eval_pred), ("eval_labels", eval_labels)):
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= classes):
                raise err(key, "a class index out of range", f"classes in 0..{classes - 1}")
        eval_pred, eval_labels = eval_pred.astype(np.int64), eval_labels.astype(np.int64)
    return Reference(
        inp.astype(np.int64), labels.astype(np.int64), codes, floats, eval_pred, eval_labels, device
    )


def _read_graph(directory: Path) -> tuple[str, Any]:
    path = directory / GRAPH_FILE
    if not directory.is_dir():
        raise BundleError(
            f"{directory}: not a directory; expected a bundle directory holding "
            f"{GRAPH_FILE} and {TENSORS_FILE}; pass the directory that qat export wrote"
        )
    try:
        return str(path), read_yaml(path)
    except FileNotFoundError:
        raise BundleError(
            f"{path}: missing; expected the graph of the bundle (docs/export-format.md); "
            "pass the directory that qat export wrote"
        ) from None
    except OSError as err:
        raise BundleError(
            f"{path}: unreadable ({err.strerror}); expected UTF-8 YAML; re-export the bundle"
        ) from None
    except YamlError as err:
        raise BundleError(f"{err}; expected a YAML mapping; {_FIX_GRAPH}") from None


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and validate the bundle directory ``path``; :class:`BundleError` names the first broken rule."""
    directory = Path(path)
    gfile, graph = _read_graph(directory)
    _mapping(graph, _Where(gfile), None, "the top level of graph.yaml: format_version, tensors, nodes, ...")
    with _Arrays.open(directory / TENSORS_FILE, _FIX_TENSORS) as arrays:
        bundle = _Loader(gfile, graph, arrays).load(directory)
    ref_path = directory / REFERENCE_FILE
    if ref_path.exists():
        with _Arrays.open(ref_path, _FIX_REFERENCE) as ref:
            bundle = replace(bundle, reference=_reference(ref, bundle))
    return bundle


def validate_bundle(
    graph: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray] | None = None,
    label: str = "<bundle in memory>",
) -> Bundle:
    """The checks of :func:`load_bundle` on a graph.yaml mapping and arrays held in memory.

    Messages name ``label/graph.yaml`` (and ``tensors.npz``, ``reference.npz``) as if the bundle
    were on disk at ``label``; the returned :class:`Bundle` has no path.
    """
    base = Path(label)
    tensors = _Arrays.memory(arrays, str(base / TENSORS_FILE), _FIX_TENSORS)
    bundle = _Loader(str(base / GRAPH_FILE), graph, tensors).load(None)
    if reference is not None:
        ref = _reference(_Arrays.memory(reference, str(base / REFERENCE_FILE), _FIX_REFERENCE), bundle)
        bundle = replace(bundle, reference=ref)
    return bundle
