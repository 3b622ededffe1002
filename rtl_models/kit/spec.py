"""The description of a design under test: ports, protocol, clock and reset, widths, what is compared.

Place in the flow: the edge. ``python -m rtl_models.check --dut dut.yaml`` (and tests) read a YAML
file with :func:`load_spec` (through hwsim's one YAML reader) into a frozen :class:`DutSpec`,
validated on construction; ``rtl_models.kit.work`` cuts layers into its tiles, the runner builds
its sources, and inside the simulator ``rtl_models.kit.tb`` drives it by its protocol, one of
:data:`PROTOCOLS` (each a spec class here and a driver in ``rtl_models.kit.protocols``). A wrong
field is a :class:`~hwsim.errors.UserError` naming the file, the field, what was expected and the fix.

Matrices: the design computes a tile of ``Y[M, N] = A[M, K] @ W[K, N]``. Each port or stream
carries one matrix in one orientation (:data:`MATRICES`: ``a``, ``a_t`` = A transposed, ``w``,
``w_t``, ``y``, ``y_t``) cut into beats by a :class:`~rtl_models.kit.layout.BlockLayout`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim.errors import UserError
from hwsim.fixed import OVERFLOW_MODES, IntFormat
from hwsim.yaml_io import read_yaml
from rtl_models.kit.layout import BlockLayout

MATRICES: dict[str, str] = {
    "a": "A [M, K], the activation codes (im2col rows)",
    "a_t": "A transposed [K, M]",
    "w": "W [K, N], the weight codes",
    "w_t": "W transposed [N, K] (one row per output channel)",
    "y": "Y [M, N], the accumulators",
    "y_t": "Y transposed [N, M]",
}
INPUT_MATRICES = ("a", "a_t", "w", "w_t")
OUTPUT_MATRICES = ("y", "y_t")
CYCLE_MODELS: tuple[str, ...] = ("none", "hwsim", "formula")


@dataclass(frozen=True)
class Operand:
    """A design's operand port: width, signedness, and the offset added to every code (zero point).

    ``zero_point`` lets an unsigned-only datapath take signed codes: the design receives
    ``code + zero_point`` and the kit removes the correction term exactly (rtl_models.kit.work).
    """

    bits: int
    signed: bool
    zero_point: int = 0

    @property
    def fmt(self) -> IntFormat:
        return IntFormat(self.bits, self.signed)


@dataclass(frozen=True)
class Gemm:
    """The arithmetic: operand ports, the accumulator, and the tile one work item fills.

    ``tile_m``/``tile_k``/``tile_n``: the design's fixed sizes (``None``: it takes any size up to
    the layer's, and an item spans the whole dimension or ``max_m``/``max_k``/``max_n`` of it).
    A layer's K longer than the tile is cut into K blocks that the host adds up outside the design.
    """

    a: Operand
    w: Operand
    acc_bits: int
    overflow: str = "wrap"
    tile_m: int | None = None
    tile_k: int | None = None
    tile_n: int | None = None

    def __post_init__(self) -> None:
        IntFormat(self.acc_bits, True)
        if self.overflow not in OVERFLOW_MODES:
            raise UserError(f"gemm.overflow: {self.overflow!r} is not one of {OVERFLOW_MODES}")
        if self.overflow == "saturate" and (self.a.zero_point or self.w.zero_point):
            raise UserError(
                "gemm: zero points need a wrapping accumulator (a saturated sum cannot be corrected "
                "exactly); set overflow: wrap or zero_point: 0"
            )

    @property
    def acc(self) -> IntFormat:
        return IntFormat(self.acc_bits, True)


@dataclass(frozen=True)
class Stream:
    """A valid/ready stream carrying one matrix per work item (``last`` on its final beat, if wired)."""

    name: str
    matrix: str
    layout: BlockLayout
    data: str
    valid: str
    ready: str | None = None
    last: str | None = None
    axis: bool = False  # AXI-Stream names <name>_tdata, _tvalid, _tready, _tlast (cocotbext-axi's bus)

    @property
    def is_input(self) -> bool:
        return self.matrix in INPUT_MATRICES


@dataclass(frozen=True)
class StreamProtocol:
    """Streams in and out: every input stream's beats of an item, then the output beats, in order;
    items may overlap (the next item's inputs while the last one's outputs are still due)."""

    streams: tuple[Stream, ...]

    def __post_init__(self) -> None:
        if not any(s.is_input for s in self.streams) or not any(not s.is_input for s in self.streams):
            raise UserError("protocol stream: needs at least one input stream and one output stream")


@dataclass(frozen=True)
class PortMatrix:
    """A port that carries a whole matrix (or its beats in successive loads) in one word."""

    port: str
    matrix: str
    layout: BlockLayout


@dataclass(frozen=True)
class ParallelProtocol:
    """All operands presented at once with an input strobe, results with a result-valid strobe."""

    inputs: tuple[PortMatrix, ...]
    outputs: tuple[PortMatrix, ...]
    in_valid: str
    out_valid: str
    in_ready: str | None = None


@dataclass(frozen=True)
class BuffersProtocol:
    """Operand buffers written through ports, a start pulse, done, results read back (array_top's way).

    The buffer layouts are hwsim's (``hwsim.vectors.BUFFER_LAYOUTS``) of the array's dataflow.
    """

    rows: int
    cols: int
    dataflow: str = "ws"
    cycle_counter: str | None = "cycles"

    def hardware(self, gemm: Gemm) -> Any:
        """hwsim's description of this array (``hwsim.hwconfig.HardwareConfig``): its model of cycles,
        overflow events and where each output is made."""
        from hwsim.hwconfig import ArrayConfig, HardwareConfig, PEConfig

        return HardwareConfig(
            ArrayConfig(self.rows, self.cols, self.dataflow), PEConfig(gemm.acc_bits, gemm.overflow)
        )


PROTOCOLS: dict[str, type] = {
    "stream": StreamProtocol,
    "parallel": ParallelProtocol,
    "buffers": BuffersProtocol,
}


@dataclass(frozen=True)
class Clock:
    port: str
    period_ns: int = 10


@dataclass(frozen=True)
class Reset:
    port: str
    active: str = "high"  # "high" or "low"
    kind: str = "sync"  # "sync" or "async"
    cycles: int = 4

    def __post_init__(self) -> None:
        if self.active not in ("high", "low") or self.kind not in ("sync", "async"):
            raise UserError(
                f"reset: active {self.active!r} / kind {self.kind!r}; expected high|low, sync|async"
            )


@dataclass(frozen=True)
class CycleCheck:
    """How cycles are judged: a model (``none``, ``hwsim``'s native timing, or a ``formula`` of the
    item's ``m``, ``k``, ``n`` and the design's parameters), a relative ``tolerance``, and whether a
    difference fails the run (``enforce``) or is only reported (the default)."""

    model: str = "none"
    formula: str | None = None
    tolerance: float = 0.0
    enforce: bool = False

    def __post_init__(self) -> None:
        if self.model not in CYCLE_MODELS:
            raise UserError(f"compare.cycles.model: {self.model!r} is not one of {CYCLE_MODELS}")
        if (self.model == "formula") != (self.formula is not None):
            raise UserError("compare.cycles: give formula: <expression> exactly when model is formula")


@dataclass(frozen=True)
class Compare:
    cycles: CycleCheck = CycleCheck()
    overflow_counter: str | None = None  # a port counting overflowing outputs, compared when given


@dataclass(frozen=True)
class DutSpec:
    """Everything the kit needs to know about a design (module docstring)."""

    top: str
    sources: tuple[Path, ...]
    clock: Clock
    reset: Reset
    gemm: Gemm
    protocol: StreamProtocol | ParallelProtocol | BuffersProtocol
    parameters: Mapping[str, int] = field(default_factory=dict)
    includes: tuple[Path, ...] = ()
    defines: Mapping[str, str] = field(default_factory=dict)
    build_args: tuple[str, ...] = ()
    plusargs: tuple[str, ...] = ()
    prepare: Path | None = None  # a Python file whose sources(sources, build_dir) gives what is built
    ties: Mapping[str, int] = field(default_factory=dict)
    compare: Compare = Compare()
    timeout_cycles: int = 10_000
    source_file: str = "<spec>"

    @property
    def protocol_name(self) -> str:
        return next(k for k, v in PROTOCOLS.items() if isinstance(self.protocol, v))

    def ports(self) -> list[tuple[str, str]]:
        """``(field, port)`` of every port the description names, to check against the design."""
        out = [("clock.port", self.clock.port), ("reset.port", self.reset.port)]
        out += [(f"ties.{p}", p) for p in self.ties]
        p = self.protocol
        if isinstance(p, StreamProtocol):
            for s in p.streams:
                out += [
                    (f"streams.{s.name}.{k}", v)
                    for k in ("data", "valid", "ready", "last")
                    if (v := getattr(s, k)) is not None
                ]
        elif isinstance(p, ParallelProtocol):
            out += [(f"inputs.{x.matrix}", x.port) for x in p.inputs]
            out += [(f"outputs.{x.matrix}", x.port) for x in p.outputs]
            out += [("in_valid", p.in_valid), ("out_valid", p.out_valid)]
            if p.in_ready:
                out.append(("in_ready", p.in_ready))
        if self.compare.overflow_counter:
            out.append(("compare.overflow_counter", self.compare.overflow_counter))
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain data for the testbench (paths as strings); :func:`spec_from_json` reads it back."""
        data = dataclasses.asdict(self)
        data["protocol_name"] = self.protocol_name
        return _plain(data)


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


# --- reading -----------------------------------------------------------------------------------


class _Reader:
    """Typed access to a mapping of the YAML file; every error names the file and the field."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, Mapping):
            self.fail(f"expected a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.used: set[str] = set()

    def fail(self, problem: str) -> None:
        raise UserError(f"{self.source}: {self.where or 'top level'}: {problem}")

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., what: str = "") -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                self.fail(f"missing field '{key}' ({what or _type_name(kind)})")
            return default
        value = self.data[key]
        if value is None and default is None:
            return None
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, (int,)))
        if not ok:
            raise UserError(f"{self.source}: {self._key(key)}: {value!r} is not {what or _type_name(kind)}")
        return value

    def sub(self, key: str, default: Any = ...) -> _Reader:
        value = self.get(key, Mapping, {} if default is not ... else ..., "a mapping")
        return _Reader(value, self._key(key), self.source)

    def choice(self, key: str, choices: tuple[str, ...] | list[str], default: Any = ...) -> Any:
        value = self.get(key, str, default, f"one of {', '.join(choices)}")
        if value is not None and value not in choices:
            raise UserError(f"{self.source}: {self._key(key)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def done(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            known = ", ".join(sorted(self.used))
            self.fail(f"unknown field(s) {', '.join(extra)}; known here: {known}")


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        int: "an integer",
        str: "a string",
        bool: "true or false",
        float: "a number",
        list: "a list",
        Mapping: "a mapping",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _positive(r: _Reader, key: str, default: Any = ...) -> Any:
    value = r.get(key, int, default, "a positive integer")
    if value is not None and value is not ... and value < 1:
        r.fail(f"{key}: {value} is not a positive integer")
    return value


def _operand(r: _Reader) -> Operand:
    op = Operand(
        r.get("bits", int, what="the port's width in bits"),
        r.get("signed", bool),
        r.get("zero_point", int, 0),
    )
    try:
        op.fmt  # noqa: B018  (validates the width)
    except UserError as err:
        r.fail(str(err))
    r.done()
    return op


def _layout(r: _Reader, key: str) -> BlockLayout:
    sub = r.sub(key)
    block = sub.get("block", list, what="[rows, cols] of one beat's block")
    if len(block) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in block):
        sub.fail(f"block: {block!r} is not [rows, cols]")
    layout = BlockLayout(
        block[0],
        block[1],
        sub.choice("order", ["row", "col"], "row"),
        sub.choice("lanes", ["row", "col"], "row"),
        sub.choice("lane0", ["lsb", "msb"], "lsb"),
    )
    sub.done()
    return layout


def _stream(r: _Reader) -> Stream:
    name = r.get("name", str, what="the stream's name or port prefix")
    axis = r.get("axis", bool, False)  # AXI-Stream names: <name>_tdata, _tvalid, _tready, _tlast
    pre = "t" if axis else ""
    default = lambda s: f"{name}_{pre}{s}"  # noqa: E731
    s = Stream(
        name=name,
        matrix=r.choice("matrix", list(MATRICES)),
        layout=_layout(r, "layout"),
        data=r.get("data", str, default("data")),
        valid=r.get("valid", str, default("valid")),
        ready=r.get("ready", str, default("ready")) if r.get("has_ready", bool, True) else None,
        last=r.get("last", str, None),
        axis=axis,
    )
    r.done()
    return s


def _protocol(r: _Reader, name: str) -> StreamProtocol | ParallelProtocol | BuffersProtocol:
    if name == "stream":
        items = r.get("streams", list, what="a list of streams")
        streams = tuple(_stream(_Reader(s, f"streams[{i}]", r.source)) for i, s in enumerate(items))
        return StreamProtocol(streams)
    if name == "parallel":

        def ports(key: str, allowed: tuple[str, ...]) -> tuple[PortMatrix, ...]:
            out = []
            for i, x in enumerate(r.get(key, list, what="a list of {port, matrix, layout}")):
                pr = _Reader(x, f"{key}[{i}]", r.source)
                out.append(
                    PortMatrix(pr.get("port", str), pr.choice("matrix", list(allowed)), _layout(pr, "layout"))
                )
                pr.done()
            return tuple(out)

        return ParallelProtocol(
            ports("inputs", INPUT_MATRICES),
            ports("outputs", OUTPUT_MATRICES),
            r.get("in_valid", str),
            r.get("out_valid", str),
            r.get("in_ready", str, None),
        )
    sub = r.sub("array")
    from hwsim.dataflows import DATAFLOWS

    p = BuffersProtocol(
        _positive(sub, "rows"),
        _positive(sub, "cols"),
        sub.choice("dataflow", list(DATAFLOWS), "ws"),
        sub.get("cycle_counter", str, "cycles"),
    )
    sub.done()
    return p


def parse_spec(data: Any, source: str, base: Path) -> DutSpec:
    """A :class:`DutSpec` from plain data (a parsed YAML file); relative paths are taken from ``base``."""
    r = _Reader(data, "", source)
    top = r.get("top", str, what="the design's top module name")
    sources = tuple(base / s for s in r.get("sources", list, what="a list of Verilog files"))
    for i, s in enumerate(sources):
        if not s.is_file():
            r.fail(f"sources[{i}]: {s} does not exist; paths are relative to the description's directory")
    includes = tuple(base / s for s in r.get("includes", list, []))
    params = r.get("parameters", Mapping, {}, "a mapping of parameter names to integers")
    for k, v in params.items():
        if not isinstance(v, int) or isinstance(v, bool):
            r.fail(f"parameters.{k}: {v!r} is not an integer")
    defines = {str(k): str(v) for k, v in r.get("defines", Mapping, {}).items()}
    build_args = tuple(str(a) for a in r.get("build_args", list, []))
    plusargs = tuple(str(a) for a in r.get("plusargs", list, []))
    prepare = r.get("prepare", str, None)
    if prepare is not None and not (base / prepare).is_file():
        r.fail(f"prepare: {base / prepare} does not exist; give a Python file beside the description")
    ties = r.get("ties", Mapping, {}, "a mapping of input ports to constant values")
    c = r.sub("clock")
    clock = Clock(c.get("port", str, "clk"), _positive(c, "period_ns", 10))
    c.done()
    rs = r.sub("reset")
    reset = Reset(
        rs.get("port", str, "rst"),
        rs.choice("active", ["high", "low"], "high"),
        rs.choice("kind", ["sync", "async"], "sync"),
        _positive(rs, "cycles", 4),
    )
    rs.done()
    g = r.sub("gemm")
    tile = g.sub("tile", {})
    gemm = Gemm(
        _operand(g.sub("a")),
        _operand(g.sub("w")),
        g.get("acc_bits", int),
        g.choice("overflow", list(OVERFLOW_MODES), "wrap"),
        _positive(tile, "m", None),
        _positive(tile, "k", None),
        _positive(tile, "n", None),
    )
    tile.done()
    g.done()
    pname = r.choice("protocol", list(PROTOCOLS))
    protocol = _protocol(r, pname)
    cmp_ = r.sub("compare", {})
    cyc = cmp_.sub("cycles", {})
    tol = cyc.get("tolerance", (int, float), 0.0)
    cycles = CycleCheck(
        cyc.choice("model", list(CYCLE_MODELS), "none"),
        cyc.get("formula", str, None),
        float(tol),
        cyc.get("enforce", bool, False),
    )
    cyc.done()
    compare = Compare(cycles, cmp_.get("overflow_counter", str, None))
    cmp_.done()
    timeout = _positive(r, "timeout_cycles", 10_000)
    r.done()
    return DutSpec(
        top,
        sources,
        clock,
        reset,
        gemm,
        protocol,
        dict(params),
        includes,
        defines,
        build_args,
        plusargs,
        None if prepare is None else base / prepare,
        dict(ties),
        compare,
        timeout,
        source,
    )


def load_spec(path: str | os.PathLike[str]) -> DutSpec:
    """Read a design description (YAML); paths inside are relative to its directory."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"{p}: no such description file; pass the YAML that describes your design (docs/rtl.md)"
        )
    return parse_spec(read_yaml(p), str(p), p.resolve().parent)


def spec_from_json(data: Mapping[str, Any]) -> DutSpec:
    """The inverse of :meth:`DutSpec.to_json` (inside the simulator)."""
    d = dict(data)
    name = d.pop("protocol_name")
    proto = d.pop("protocol")

    def lay(x: Mapping[str, Any]) -> BlockLayout:
        return BlockLayout(**x)

    if name == "stream":
        protocol: Any = StreamProtocol(
            tuple(Stream(**{**s, "layout": lay(s["layout"])}) for s in proto["streams"])
        )
    elif name == "parallel":
        protocol = ParallelProtocol(
            tuple(PortMatrix(x["port"], x["matrix"], lay(x["layout"])) for x in proto["inputs"]),
            tuple(PortMatrix(x["port"], x["matrix"], lay(x["layout"])) for x in proto["outputs"]),
            proto["in_valid"],
            proto["out_valid"],
            proto["in_ready"],
        )
    else:
        protocol = BuffersProtocol(**proto)
    g = d.pop("gemm")
    gemm = Gemm(Operand(**g.pop("a")), Operand(**g.pop("w")), **g)
    c = d.pop("compare")
    compare = Compare(CycleCheck(**c["cycles"]), c["overflow_counter"])
    return DutSpec(
        top=d["top"],
        sources=tuple(Path(s) for s in d["sources"]),
        clock=Clock(**d["clock"]),
        reset=Reset(**d["reset"]),
        gemm=gemm,
        protocol=protocol,
        parameters=d["parameters"],
        includes=tuple(Path(s) for s in d["includes"]),
        defines=d["defines"],
        build_args=tuple(d["build_args"]),
        plusargs=tuple(d["plusargs"]),
        prepare=None if d["prepare"] is None else Path(d["prepare"]),
        ties=d["ties"],
        compare=compare,
        timeout_cycles=d["timeout_cycles"],
        source_file=d["source_file"],
    )
