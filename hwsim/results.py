"""Typed per-layer results: a MAC layer's (hwsim.simulate), a requantizer's (hwsim.compare), their join.

Place in the flow: the analyses (``hwsim.simulate``, ``hwsim.compare``, the demo) return these
frozen dataclasses; the commands turn them into report rows (:func:`table`) for ``hwsim.report``.
Every field that is a report column is declared with :func:`column`: its unit and help text
travel with it, so the columns of layers.csv / report.json, the column notes of report.md and
the tables of reports/README.md are all derived from the fields. A new column is a new field
here plus the code that computes its value; nothing else lists it.

Two granularities:

* :class:`MacLayerResult`: one per ``conv2d``/``linear`` node (the array) and per ``maxpool``
  (the vector unit), in execution order: shapes, cycles, memory, energy, the array model's values.
* :class:`RequantResult`: one per requantizer: its MAC node(s)' accumulator statistics and its
  codes' errors against the PyTorch reference.

They meet in one place: a requantizer names the MAC nodes feeding it (``mac_nodes``), and
:func:`fed_by` turns that into ``MAC node -> requantizer``. :func:`with_errors` gives each MAC
layer the errors of the requantizer it feeds (``hwsim simulate``'s rows; the requantizer's fields
declared ``joined``), :func:`join_layers` gives each requantizer the cost of its MAC nodes on
each hardware configuration (the demo's rows, :class:`JoinedLayer`; the MAC fields declared with
a ``join`` rule, those also ``per_hw`` for every further configuration as ``<column>@<hw>``).
A column that is empty (None) in every row of a table is left out: not measured in that run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Join = Callable[[Sequence["MacLayerResult"], int], Any]  # (the MAC layers, PEs of the array) -> value
_MISSING: Any = dataclasses.MISSING


def column(
    help: str,
    unit: str = "",
    *,
    default: Any = _MISSING,
    total: bool = False,
    join: Join | None = None,
    joined: bool = False,
    per_hw: bool = False,
) -> Any:
    """A dataclass field that is a report column.

    ``help``/``unit``: what the reader sees (report.md, reports/README.md); ``total``: summed into
    a simulation's network totals; ``join``: how a requantizer's row combines the MAC layers
    feeding it (see :func:`summed`); ``per_hw``: the demo also shows it for every further
    hardware configuration; ``joined`` (a :class:`RequantResult` field): shown on the rows of the
    MAC layers that feed the requantizer.
    """
    meta = {"help": help, "unit": unit, "total": total, "join": join, "joined": joined, "per_hw": per_hw}
    return field(default=default, metadata=meta)


def summed(name: str) -> Join:
    """The join of an additive column: the sum over the MAC layers."""
    return lambda parts, pes: sum(getattr(p, name) for p in parts)


def _utilization(parts: Sequence[MacLayerResult], pes: int) -> float | None:
    cycles = sum(p.cycles for p in parts)
    return sum(p.macs for p in parts) / (cycles * pes) if cycles else None


def _bound(parts: Sequence[MacLayerResult], pes: int) -> str:
    return "memory" if any(p.bound == "memory" for p in parts) else "compute"


def _edp(parts: Sequence[MacLayerResult], pes: int) -> float:
    return sum(p.energy_nj for p in parts) * sum(p.latency_us for p in parts)


@dataclass(frozen=True)
class Column:
    """One report column: its name, unit and help."""

    name: str
    unit: str
    help: str


def _columns(cls: type, *, where: Callable[[dataclasses.Field[Any]], bool] = lambda f: True) -> list[Column]:
    return [
        Column(f.name, f.metadata["unit"], f.metadata["help"])
        for f in dataclasses.fields(cls)
        if "help" in f.metadata and where(f)
    ]


def _values(result: Any, where: Callable[[dataclasses.Field[Any]], bool] = lambda f: True) -> dict[str, Any]:
    return {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if "help" in f.metadata and where(f)
    }


# ----------------------------------------------------------------------------------------------
# A requantizer (hwsim.compare)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequantResult:
    """A requantizer: its MAC node(s)' accumulator statistics and its output codes' errors."""

    name: str = column("the requantizer whose codes are compared (named as in the PyTorch model)")
    type: str = column(
        "the MAC op(s) feeding it; '+add' marks a residual (codes) input, '+sign' binary codes"
    )
    macs: int = column("multiply-accumulates per image of the MAC node(s) feeding it", "MAC")
    w_bits: int | None = column(
        "nominal weight width (w_bits_stored: the storage width when the lattice needs more)", "bits"
    )
    a_bits: int | None = column("width of the activation codes entering the MAC", "bits")
    acc_bits: int = column("accumulator width of this run", "bits")
    overflow_count: int = column("accumulator outputs changed by wrap/saturate, over all images")
    peak_acc_abs: int = column("largest |exact accumulator sum| seen")
    min_safe_acc_bits: int | None = column(
        "narrowest accumulator safe for any input (weights x input range)", "bits"
    )
    mismatch_rate: float | None = column(
        "fraction of output codes differing from the reference", "0..1", joined=True
    )
    max_abs_err_lsb: int | None = column(
        "largest |emulator - reference| in output LSBs (codes)", "LSB", joined=True
    )
    sqnr_db: float | None = column(
        "10 log10(sum ref^2 / sum (emu*scale - ref)^2) against the reference float values; "
        "inf (null in JSON) when identical",
        "dB",
        joined=True,
    )
    mac_nodes: tuple[str, ...] = column("the conv2d/linear node(s) whose accumulators feed this requantizer")
    w_bits_stored: int | None = column(
        "storage width of a weight code (more than w_bits when the lattice needs it: odd, binary, ternary)",
        "bits",
    )
    out_bits: int | None = column("width of the requantizer's output codes", "bits")
    elements: int | None = column("output codes compared with the reference")
    acc_elements: int = column("accumulator outputs seen")
    min_safe_acc_bits_observed: int | None = column("narrowest accumulator holding every sum seen", "bits")
    exact_match_rate: float | None = column(
        "fraction of output codes equal to the reference (1 - mismatch_rate)", "0..1", joined=True
    )
    mean_abs_err_lsb: float | None = column("mean |emulator - reference| in output LSBs", "LSB", joined=True)
    within_1lsb: float | None = column("fraction of output codes within 1 LSB of the reference", "0..1")
    isolated_mismatch_rate: float | None = column(
        "mismatch_rate when the layer runs alone on the reference's own input codes", "0..1"
    )
    isolated_max_abs_err_lsb: int | None = column(
        "max_abs_err_lsb when the layer runs alone on the reference's own input codes", "LSB"
    )
    isolated_within_1lsb: float | None = column(
        "within_1lsb when the layer runs alone on the reference's own input codes", "0..1"
    )
    overflow_rate: float = column("overflow_count / accumulator outputs", "0..1")
    min_acc_bits: int | None = column(
        "smallest swept accumulator width (this layer's accumulators alone narrowed) from which every "
        "wider one keeps top-1 agreement >= the threshold with the unmodified network (hwsim demo)",
        "bits",
        default=None,
    )
    min_w_bits: int | None = column(
        "smallest swept weight width (this layer alone re-quantized) keeping the agreement threshold "
        "(hwsim demo)",
        "bits",
        default=None,
    )
    min_a_bits: int | None = column(
        "smallest swept input-activation width (this layer alone) keeping the agreement threshold "
        "(hwsim demo)",
        "bits",
        default=None,
    )

    @classmethod
    def columns(cls) -> list[Column]:
        return _columns(cls)

    def row(self) -> dict[str, Any]:
        return _values(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RequantResult:
        """The inverse of :func:`to_data` (a journaled task result back to its type)."""
        return cls(**{**data, "mac_nodes": tuple(data["mac_nodes"])})


# ----------------------------------------------------------------------------------------------
# A MAC layer or maxpool (hwsim.simulate)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacLayerResult:
    """A ``conv2d``/``linear`` node on the array, or a ``maxpool`` on the vector unit, per inference.

    The value fields (``overflow_count`` .. ``array_value_mismatches``) are None until
    ``hwsim.simulate.simulate_bundle`` has executed the layer; ``compared`` is the requantizer this
    layer feeds (:func:`with_errors`), None without a reference.
    """

    name: str = column("the conv2d, linear or maxpool node (named as in the bundle)")
    type: str = column("the node's op; '(depthwise)' marks a depthwise convolution")
    macs: int = column(
        "multiply-accumulates per inference (batch images); 0 for a maxpool",
        "MAC",
        total=True,
        join=summed("macs"),
    )
    w_bits: int | None = column("storage width of a weight code (empty for a maxpool)", "bits")
    w_bits_nominal: int | None = column("nominal weight width (the method's)", "bits")
    a_bits: int = column("width of the activation codes entering the layer", "bits")
    acc_bits: int | None = column("accumulator width of the array (empty for a maxpool)", "bits")
    gemm_m: int | None = column("GEMM rows: output pixels x batch")
    gemm_k: int | None = column("GEMM depth: kernel height x width x input channels (per group)")
    gemm_n: int | None = column("GEMM columns: output channels (per group)")
    groups: int | None = column("convolution groups (one GEMM each)")
    folds: int = column("passes of the array (or vector unit) over the layer's tiles")
    compute_cycles: int = column(
        "cycles the array computes (one per GEMM row per fold)",
        "cycles",
        total=True,
        join=summed("compute_cycles"),
    )
    preload_cycles: int = column(
        "cycles loading stationary operands into the array",
        "cycles",
        total=True,
        join=summed("preload_cycles"),
    )
    fill_drain_cycles: int = column(
        "cycles filling and draining the array's skew", "cycles", total=True, join=summed("fill_drain_cycles")
    )
    array_cycles: int = column("compute + preload + fill/drain cycles", "cycles")
    stall_cycles: int = column("cycles waiting for DRAM", "cycles", total=True, join=summed("stall_cycles"))
    cycles: int = column(
        "clock cycles per inference: compute + preload + fill/drain + memory stall",
        "cycles",
        total=True,
        join=summed("cycles"),
    )
    latency_us: float = column("cycles / clock", "us", join=summed("latency_us"), per_hw=True)
    bound: str = column(
        "'memory' when the layer waits for DRAM (the overlapped transfers outlast the array's work), "
        "else 'compute'",
        join=_bound,
    )
    dram_read_bytes: int = column(
        "bytes read from DRAM (inputs once per output-channel split, weights per fetch)", "B"
    )
    dram_write_bytes: int = column("bytes written to DRAM (the output codes)", "B")
    dram_bytes: int = column("dram_read_bytes + dram_write_bytes", "B", total=True)
    dram_cycles: int = column("cycles DRAM needs for dram_bytes at its bandwidth", "cycles")
    buffer_bytes: int = column("bytes the array reads from and writes to its on-chip buffers", "B")
    ifmap_bytes: int = column("the input feature map (packed codes)", "B")
    weight_bytes: int = column("the weights (packed codes)", "B")
    psum_bytes: int = column("the partial sums at acc_bits", "B")
    m_tiles: int = column("passes over output rows forced by the buffers' capacity")
    weight_fetches: int = column("times the weights are read from DRAM")
    utilization: float = column(
        "MACs / (cycles x PEs), memory stalls included", "0..1", join=_utilization, per_hw=True
    )
    array_utilization: float = column("MACs / (array cycles x PEs), without memory stalls", "0..1")
    arithmetic_intensity: float = column("MACs per DRAM byte", "MAC/B")
    compute_energy_nj: float = column(
        "MAC energy: macs x (multiply at w_bits x a_bits + add at acc_bits); a maxpool's comparisons "
        "(docs/energy.md)",
        "nJ",
        total=True,
        join=summed("compute_energy_nj"),
    )
    buffer_energy_nj: float = column(
        "on-chip buffer energy: each buffer's bytes at its capacity's cost per access",
        "nJ",
        total=True,
        join=summed("buffer_energy_nj"),
    )
    dram_energy_nj: float = column(
        "DRAM energy: dram_bytes at the cost of a 64-bit access",
        "nJ",
        total=True,
        join=summed("dram_energy_nj"),
    )
    static_energy_nj: float = column(
        "static (leakage) energy: static power x latency_us",
        "nJ",
        total=True,
        join=summed("static_energy_nj"),
    )
    energy_nj: float = column(
        "compute + buffer + DRAM + static energy per inference (a first-order estimate)",
        "nJ",
        total=True,
        join=summed("energy_nj"),
        per_hw=True,
    )
    edp_nj_us: float = column("energy-delay product: energy_nj x latency_us", "nJ*us", join=_edp)
    overflow_count: int | None = column(
        "accumulator outputs changed by wrap/saturate, over all images", default=None
    )
    overflow_events: int | None = column(
        "partial sums that left the accumulator's range during the folds", default=None
    )
    overflow_rate: float | None = column("overflow_count / accumulator outputs", "0..1", default=None)
    peak_acc_abs: int | None = column("largest |exact accumulator sum| seen", default=None)
    min_safe_acc_bits: int | None = column(
        "narrowest accumulator safe for any input (weights x input range)", "bits", default=None
    )
    min_safe_acc_bits_observed: int | None = column(
        "narrowest accumulator holding every partial sum seen on the array", "bits", default=None
    )
    array_value_mismatches: int | None = column(
        "values of the array model differing from the emulator's (0: equal)", default=None
    )
    compared: RequantResult | None = None

    @classmethod
    def columns(cls) -> list[Column]:
        """This row's columns: its own, then those of the requantizer it feeds (:func:`with_errors`)."""
        return [*_columns(cls), COMPARED_TENSOR, *_columns(RequantResult, where=_joined)]

    def row(self) -> dict[str, Any]:
        joined = {c.name: None for c in _columns(RequantResult, where=_joined)}
        if self.compared is not None:
            joined = _values(self.compared, _joined)
        return {
            **_values(self),
            COMPARED_TENSOR.name: None if self.compared is None else self.compared.name,
            **joined,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> MacLayerResult:
        """The inverse of :func:`to_data` (a journaled task result back to its type)."""
        compared = data.get("compared")
        return cls(**{**data, "compared": None if compared is None else RequantResult.from_data(compared)})


COMPARED_TENSOR = Column(
    "compared_tensor", "", "the requantizer this layer feeds, whose error columns the row shows"
)


def _joined(f: dataclasses.Field[Any]) -> bool:
    return bool(f.metadata.get("joined"))


def _has_join(f: dataclasses.Field[Any]) -> bool:
    return f.metadata.get("join") is not None


def _per_hw(f: dataclasses.Field[Any]) -> bool:
    return bool(f.metadata.get("per_hw"))


def to_data(result: Any) -> dict[str, Any]:
    """A result as plain data (dicts, lists, numbers), for a task's journal (hwsim.journal)."""
    return dataclasses.asdict(result)


def totals(results: Sequence[MacLayerResult]) -> dict[str, Any]:
    """The network totals of the columns declared ``total``: their sums over the layers."""
    return {
        f.name: sum(getattr(r, f.name) for r in results)
        for f in dataclasses.fields(MacLayerResult)
        if f.metadata.get("total")
    }


# ----------------------------------------------------------------------------------------------
# The join
# ----------------------------------------------------------------------------------------------


def fed_by(requants: Iterable[RequantResult]) -> dict[str, RequantResult]:
    """``MAC node name -> the requantizer it feeds``: the one key between the two granularities."""
    return {mac: r for r in requants for mac in r.mac_nodes}


def with_errors(layers: Sequence[MacLayerResult], requants: Iterable[RequantResult]) -> list[MacLayerResult]:
    """Each MAC layer with the requantizer it feeds (its ``joined`` columns: the errors)."""
    feeds = fed_by(requants)
    return [dataclasses.replace(r, compared=feeds.get(r.name)) for r in layers]


@dataclass(frozen=True)
class JoinedLayer:
    """A requantizer with the cost of the MAC node(s) feeding it on each hardware configuration.

    ``parts[i]`` are those MAC layers on configuration ``hw[i]`` (labels) of ``pes[i]`` PEs; the
    first configuration's figures are the plain columns, every further one's ``per_hw`` columns
    are ``<column>@<label>``. A ``maxpool`` (no requantizer) has ``requant`` None and its own
    result as its one part: the requantizer's columns it shares by name are its own.
    """

    requant: RequantResult | None
    parts: tuple[tuple[MacLayerResult, ...], ...]
    hw: tuple[str, ...]
    pes: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.requant.name if self.requant is not None else self.parts[0][0].name

    @staticmethod
    def columns(hw: Sequence[str] = ()) -> list[Column]:
        """The requantizer's columns, its MAC layers' joined ones, and the ``per_hw`` ones of ``hw[1:]``."""
        cols = [
            *RequantResult.columns(),
            *[
                Column(c.name, c.unit, f"{c.help}; of the MAC node(s) feeding it together")
                for c in _columns(MacLayerResult, where=_has_join)
            ],
        ]
        for label in hw[1:]:
            cols += [
                Column(f"{c.name}@{label}", c.unit, f"{c.help}, on hardware configuration {label}")
                for c in _columns(MacLayerResult, where=_per_hw)
            ]
        return cols

    def row(self) -> dict[str, Any]:
        if self.requant is not None:
            out = self.requant.row()
        else:
            own = self.parts[0][0]
            out = {c.name: getattr(own, c.name, None) for c in RequantResult.columns()}
            out["mac_nodes"] = ()
        joins = [f for f in dataclasses.fields(MacLayerResult) if _has_join(f)]
        for i, (parts, pes) in enumerate(zip(self.parts, self.pes, strict=True)):
            for f in joins:
                if i == 0 or _per_hw(f):
                    key = f.name if i == 0 else f"{f.name}@{self.hw[i]}"
                    out[key] = f.metadata["join"](parts, pes) if parts else None
        return out


def join_layers(
    requants: Sequence[RequantResult],
    layers: Sequence[Sequence[MacLayerResult]],
    hw: Sequence[tuple[str, int]],
    order: Sequence[str],
) -> list[JoinedLayer]:
    """The demo's rows: each requantizer with its MAC layers' results on each configuration.

    ``layers[i]``: one simulation's results on ``hw[i]`` (label, PEs); ``order``: the bundle's
    node names in execution order, which places the maxpools (rows of their own) among the
    requantizers.
    """
    by_name = [{r.name: r for r in sim} for sim in layers]
    labels, pes = tuple(h for h, _ in hw), tuple(p for _, p in hw)
    rows = [
        JoinedLayer(r, tuple(tuple(b[m] for m in r.mac_nodes) for b in by_name), labels, pes)
        for r in requants
    ]
    rows += [
        JoinedLayer(None, tuple((b[r.name],) for b in by_name), labels, pes)
        for r in layers[0]
        if r.type == "maxpool"
    ]
    position = {name: i for i, name in enumerate(order)}
    return sorted(rows, key=lambda row: position.get(row.name, -1))


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def table(
    results: Sequence[Any], columns: Sequence[Column] | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Report rows (one dict per result, columns in field order) and each column's help with its unit.

    ``columns``: the results' columns (default: their type's ``columns()``). A column empty in
    every row is left out.
    """
    rows = [r.row() for r in results]
    cols = list(columns if columns is not None else (type(results[0]).columns() if results else []))
    for row in rows:  # a row may hold columns the list does not name (min_<what>, <column>@<hw>)
        for key in row:
            if key not in {c.name for c in cols}:
                cols.append(Column(key, "", ""))
    kept = [c for c in cols if any(row.get(c.name) is not None for row in rows)]
    return (
        [{c.name: row.get(c.name) for c in kept} for row in rows],
        {c.name: describe(c) for c in kept if c.help},
    )


def describe(c: Column) -> str:
    """``help (unit)``: a column's line in report.md and reports/README.md."""
    return f"{c.help} ({c.unit})" if c.unit else c.help
