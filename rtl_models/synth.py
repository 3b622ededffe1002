"""Synthesize the PE and a small array with Yosys over a grid of widths and dataflows: cells, FFs, area, path.

Place in the flow: reads the RTL of ``rtl_models/`` (each array top's files from ``rtl_models.sim.TOPS``,
its parameters from ``hwsim.hwconfig.verilog_parameters``) for every dataflow that the registry
``hwsim.dataflows.DATAFLOWS`` marks ``rtl``, runs Yosys (OS package, 0.23 on Debian) on each
configuration and writes a table (``synth.json``, ``synth.csv``, ``synth.md``) and a plot
(``synth.png``); ``hwsim.area`` reads ``synth.json`` as an optional area cost per configuration.

Per configuration (the PE alone, and a ``4 x 4`` array), Yosys runs::

    read_verilog -defer <files>; chparam -set ... <top>; synth -top <top> -flatten
    stat -json                      cells, cells per type, flip-flops (the cells of DFF types)
    ltp -noff                       the longest topological path, in cells, flip-flops excluded
    dfflegalize -cell $_DFF_P_ 01   every flip-flop a plain D flip-flop, enables and resets as gates
    stat -json -tech cmos           the area estimate: Yosys' transistor count of that netlist

No liberty file ships with the OS packages (Yosys' own ``cells.lib`` and its vendor ones hold no
areas), so the cells are Yosys' generic gates (``$_AND_``, ``$_XOR_``, ``$_SDFFE_PP0P_``, ...) and
the area is Yosys' generic CMOS transistor estimate (``stat -tech cmos``: NAND/NOR 4, AND/OR 6,
XOR/XNOR/MUX 12, D flip-flop 16, ...), not a process's area::

    python -m rtl_models.synth --out reports/synth --grid full --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hwsim.area import TABLE_FORMAT, TABLE_VERSION  # the reader owns the table's format
from hwsim.dataflows import DATAFLOWS
from hwsim.errors import UserError
from hwsim.fixed import OVERFLOW_MODES
from hwsim.hwconfig import HardwareConfig, verilog_parameters
from hwsim.output import add_output_arguments, claim, publish_directory, register_kind
from rtl_models.sim import TOPS, declared_parameters, sources_for, top_parameters

TABLE_FILE = "synth.json"
ARRAY_SIZE = (4, 4)  # rows x cols of the synthesized array (hwsim.area scales it per PE)
AREA_UNIT = "transistors"
AREA_METHOD = (
    "Yosys `stat -tech cmos` on the generic-gate netlist with every flip-flop a plain D flip-flop "
    "(`dfflegalize -cell $_DFF_P_ 01`); generic cells, no liberty file"
)
SYNTH_KIND = register_kind("synthesis table")
YOSYS_TIMEOUT_S = 1800
# Fine-grained flip-flop cells of Yosys (the latch types $_DLATCH_*, $_SR_* are refused instead).
FLIP_FLOP = re.compile(r"^\$_(DFF|DFFE|SDFF|SDFFE|SDFFCE|DFFSR|DFFSRE|ALDFF|ALDFFE)_")
LATCH = re.compile(r"^\$_(DLATCH|DLATCHSR|SR)_")


class SynthError(UserError):
    """Yosys is missing, or a registered RTL dataflow has no synthesizable top (exit status 2)."""


class YosysFailed(RuntimeError):
    """Yosys failed on the project's RTL, or its output lacks a figure (exit status 1)."""


Params = dict[str, int]


def _same(params: Params) -> Params:
    return dict(params)


def _swap_operands(params: Params) -> Params:
    """The input-stationary array is the weight-stationary one on the transposed GEMM: its streamed
    operand is W (``A_BITS`` <- ``W_BITS``), its stationary one A, each with its signedness."""
    swapped = dict(params)
    swapped["A_BITS"], swapped["W_BITS"] = params["W_BITS"], params["A_BITS"]
    # W_SIGNED is not in verilog_parameters: the RTL's default, 1 (weights are signed)
    swapped["A_SIGNED"], swapped["W_SIGNED"] = params.get("W_SIGNED", 1), params["A_SIGNED"]
    return swapped


@dataclass(frozen=True)
class RtlTarget:
    """The Verilog a dataflow synthesizes: its array top (a name in ``rtl_models.sim.TOPS``), its PE
    top (a module in the array's files, synthesized alone) and how their parameters follow from
    ``verilog_parameters`` (``transform``)."""

    pe_top: str
    array_top: str
    transform: Callable[[Params], Params] = _same


# The one place that says which Verilog top implements a dataflow's PE and array (rtl_models/array_top.v
# instantiates the same cores). Every dataflow that DATAFLOWS marks ``rtl`` needs an entry here whose
# array top is in rtl_models.sim.TOPS and whose PE top is a module of that top's files; the others
# are not synthesized.
RTL_TARGETS: dict[str, RtlTarget] = {
    "ws": RtlTarget("mac_pe", "systolic_array"),
    "os": RtlTarget("os_pe", "os_array"),
    "is": RtlTarget("mac_pe", "systolic_array", _swap_operands),
}


def rtl_dataflows() -> tuple[str, ...]:
    """The dataflows to synthesize: every one that DATAFLOWS marks ``rtl``, each checked to have its tops."""
    names = tuple(name for name, flow in DATAFLOWS.items() if flow.rtl)
    for name in names:
        target = RTL_TARGETS.get(name)
        if target is None:
            raise SynthError(
                f"dataflow {name!r} is marked rtl in hwsim.dataflows but rtl_models.synth.RTL_TARGETS "
                "names no Verilog top for it; add its PE and array tops there"
            )
        if target.array_top not in TOPS:
            raise SynthError(
                f"dataflow {name!r}: its array top {target.array_top} (rtl_models.synth.RTL_TARGETS) is "
                "not in rtl_models.sim.TOPS; add it there with its Verilog files"
            )
        try:
            declared_parameters(target.pe_top, sources_for(target.array_top))
        except UserError:
            raise SynthError(
                f"dataflow {name!r}: its PE top {target.pe_top} (rtl_models.synth.RTL_TARGETS) is not a "
                f"module of {target.array_top}'s files {list(TOPS[target.array_top])} (rtl_models.sim.TOPS)"
            ) from None
    return names


@dataclass(frozen=True)
class Grid:
    """The configurations to synthesize: (w_bits, a_bits) pairs x acc_bits x overflow modes x dataflows."""

    widths: tuple[tuple[int, int], ...]  # (w_bits, a_bits)
    acc_bits: tuple[int, ...]
    overflow: tuple[str, ...] = OVERFLOW_MODES


GRIDS: dict[str, Grid] = {
    "small": Grid(widths=((4, 4), (8, 8)), acc_bits=(24,)),
    "full": Grid(widths=tuple(itertools.product((2, 4, 8), repeat=2)), acc_bits=(16, 24, 32)),
}


@dataclass(frozen=True)
class SynthPoint:
    """One configuration: the PE alone (``design="pe"``, 1 x 1) or the array (``"array"``, rows x cols)."""

    design: str
    dataflow: str
    w_bits: int
    a_bits: int
    acc_bits: int
    overflow: str
    a_signed: bool = False  # activations unsigned (after ReLU), as the ws configurations run them
    rows: int = 1
    cols: int = 1

    def top(self) -> str:
        target = RTL_TARGETS[self.dataflow]
        return target.pe_top if self.design == "pe" else target.array_top

    def files(self) -> list[Path]:
        """The array top's Verilog files (rtl_models.sim.TOPS); they hold the PE too."""
        return sources_for(RTL_TARGETS[self.dataflow].array_top)

    def parameters(self) -> Params:
        """The top's Verilog parameters: verilog_parameters of the configuration, then the transform."""
        hw = HardwareConfig().with_overrides(
            rows=self.rows,
            cols=self.cols,
            dataflow=self.dataflow,
            acc_bits=self.acc_bits,
            overflow=self.overflow,
        )
        params = RTL_TARGETS[self.dataflow].transform(
            verilog_parameters(hw, a_bits=self.a_bits, w_bits=self.w_bits, a_signed=self.a_signed)
        )
        return top_parameters(self.top(), params, self.files())

    def label(self) -> str:
        size = "pe" if self.design == "pe" else f"{self.rows}x{self.cols}"
        return f"{self.dataflow}-{size}-w{self.w_bits}a{self.a_bits}-acc{self.acc_bits}-{self.overflow}"


@dataclass(frozen=True)
class SynthResult:
    """Yosys' figures for one configuration (generic cells; area in :data:`AREA_UNIT`)."""

    point: SynthPoint
    top: str
    parameters: tuple[tuple[str, int], ...]
    cells: int
    flip_flops: int
    transistors: int
    longest_path: int  # cells on the longest topological path (ltp -noff)
    cells_by_type: tuple[tuple[str, int], ...]
    seconds: float  # Yosys' wall time

    def row(self) -> dict[str, Any]:
        """The flat row of the table (CSV, JSON)."""
        return {
            **asdict(self.point),
            "top": self.top,
            "cells": self.cells,
            "flip_flops": self.flip_flops,
            "transistors": self.transistors,
            "longest_path": self.longest_path,
            "seconds": round(self.seconds, 2),
            "parameters": dict(self.parameters),
            "cells_by_type": dict(self.cells_by_type),
        }


@dataclass(frozen=True)
class SynthTable:
    """Every result of one run with what produced them."""

    yosys: str
    grid: str
    results: tuple[SynthResult, ...]
    wall_s: float
    jobs: int
    array_size: tuple[int, int] = ARRAY_SIZE
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SynthTable:
        """The table that :meth:`to_json` wrote (to render it again without running Yosys)."""
        if doc.get("format") != TABLE_FORMAT or doc.get("version") != TABLE_VERSION:
            raise UserError(f"not a {TABLE_FORMAT} table version {TABLE_VERSION}; write it with --out")
        point_fields = [f.name for f in fields(SynthPoint)]
        results = tuple(
            SynthResult(
                point=SynthPoint(**{k: row[k] for k in point_fields}),
                top=row["top"],
                parameters=tuple(sorted(row["parameters"].items())),
                cells=row["cells"],
                flip_flops=row["flip_flops"],
                transistors=row["transistors"],
                longest_path=row["longest_path"],
                cells_by_type=tuple(sorted(row["cells_by_type"].items())),
                seconds=row["seconds"],
            )
            for row in doc["results"]
        )
        size = doc["array_size"]
        return cls(
            doc["yosys"],
            doc["grid"],
            results,
            doc["wall_s"],
            doc["jobs"],
            (size[0], size[1]),
            tuple(doc["notes"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "yosys": self.yosys,
            "grid": self.grid,
            "array_size": list(self.array_size),
            "area_unit": AREA_UNIT,
            "area_method": AREA_METHOD,
            "liberty": None,
            "wall_s": round(self.wall_s, 1),
            "jobs": self.jobs,
            "notes": list(self.notes),
            "results": [r.row() for r in self.results],
        }


def grid_points(
    grid: Grid, dataflows: Sequence[str], array_size: tuple[int, int] = ARRAY_SIZE
) -> list[SynthPoint]:
    """The PE and the array at every configuration of ``grid``, for each dataflow."""
    rows, cols = array_size
    points = []
    for flow, (w, a), acc, ovf in itertools.product(dataflows, grid.widths, grid.acc_bits, grid.overflow):
        points.append(SynthPoint("pe", flow, w, a, acc, ovf))
        points.append(SynthPoint("array", flow, w, a, acc, ovf, rows=rows, cols=cols))
    return points


def yosys_version() -> str:
    """``Yosys 0.23 (git sha1 ...)``; a :class:`SynthError` with the fix when Yosys is not installed."""
    exe = shutil.which("yosys")
    if exe is None:
        raise SynthError(
            "yosys is not installed; run scripts/setup.sh --rtl (Debian/Ubuntu: apt-get install yosys)"
        )
    out = subprocess.run([exe, "-V"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SynthError(f"`yosys -V` failed (exit {out.returncode}): {out.stderr.strip()[:200]}")
    return out.stdout.strip()


def yosys_script(top: str, params: Mapping[str, int], files: Iterable[Path]) -> str:
    """The Yosys script of one configuration: it writes stat.json, ltp.txt and area.json (module doc)."""
    sets = " ".join(f"-set {name} {value}" for name, value in sorted(params.items()))
    chparam = f"chparam {sets} {top}\n" if sets else ""
    return (
        f"read_verilog -defer {' '.join(str(f) for f in files)}\n"
        f"{chparam}"
        f"synth -top {top} -flatten\n"
        "tee -q -o stat.json stat -json\n"
        "tee -q -o ltp.txt ltp -noff\n"
        "dfflegalize -cell $_DFF_P_ 01\n"
        "opt_clean\n"
        "tee -q -o area.json stat -json -tech cmos\n"
    )


def _design_stats(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())["design"]


def synthesize(point: SynthPoint) -> SynthResult:
    """Run Yosys on one configuration and read its figures."""
    top = point.top()
    params = point.parameters()
    files = point.files()
    exe = shutil.which("yosys")
    if exe is None:
        yosys_version()  # raises with the fix
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        work = Path(tmp)
        (work / "run.ys").write_text(yosys_script(top, params, files))
        start = time.perf_counter()
        try:
            out = subprocess.run(
                [str(exe), "-q", "-l", "yosys.log", "-s", "run.ys"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=YOSYS_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise YosysFailed(f"{point.label()}: Yosys ran past {YOSYS_TIMEOUT_S} s") from None
        seconds = time.perf_counter() - start
        if out.returncode != 0:
            log = (work / "yosys.log").read_text(errors="replace") if (work / "yosys.log").is_file() else ""
            tail = "\n".join((out.stderr or log).strip().splitlines()[-8:])
            raise YosysFailed(f"{point.label()}: Yosys failed (exit {out.returncode}) on {top}:\n{tail}")
        stat = _design_stats(work / "stat.json")
        area = _design_stats(work / "area.json")
        ltp = (work / "ltp.txt").read_text()
    by_type = {str(k): int(v) for k, v in stat["num_cells_by_type"].items()}
    latches = sorted(t for t in by_type if LATCH.match(t))
    if latches:
        raise YosysFailed(f"{point.label()}: Yosys inferred latches ({', '.join(latches)}) in {top}")
    found = re.search(r"\(length=(\d+)\)", ltp)
    if found is None:
        raise YosysFailed(f"{point.label()}: no path length in Yosys' ltp output: {ltp[:200]!r}")
    transistors = str(area["estimated_num_transistors"])
    if not transistors.isdigit():  # "1234+": some cell has no CMOS cost, the estimate is incomplete
        raise YosysFailed(f"{point.label()}: Yosys' transistor estimate is incomplete ({transistors})")
    return SynthResult(
        point=point,
        top=top,
        parameters=tuple(sorted(params.items())),
        cells=int(stat["num_cells"]),
        flip_flops=sum(n for t, n in by_type.items() if FLIP_FLOP.match(t)),
        transistors=int(transistors),
        longest_path=int(found.group(1)),
        cells_by_type=tuple(sorted(by_type.items())),
        seconds=seconds,
    )


def run_grid(points: Sequence[SynthPoint], jobs: int = 1) -> list[SynthResult]:
    """Synthesize ``points``, up to ``jobs`` Yosys processes at a time; results in the order of ``points``."""
    if jobs == 1:
        return [synthesize(p) for p in points]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(synthesize, points))


def synthesize_grid(grid_name: str, jobs: int = 1, array_size: tuple[int, int] = ARRAY_SIZE) -> SynthTable:
    """The whole table of one grid of :data:`GRIDS` for every RTL dataflow."""
    if grid_name not in GRIDS:
        raise SynthError(f"--grid {grid_name!r}: expected one of {', '.join(GRIDS)}")
    version = yosys_version()
    points = grid_points(GRIDS[grid_name], rtl_dataflows(), array_size)
    start = time.perf_counter()
    results = run_grid(points, jobs)
    return SynthTable(version, grid_name, tuple(results), time.perf_counter() - start, jobs, array_size)


# ---- rendering -------------------------------------------------------------------------------

CSV_COLUMNS = (
    "design",
    "dataflow",
    "rows",
    "cols",
    "w_bits",
    "a_bits",
    "a_signed",
    "acc_bits",
    "overflow",
    "top",
    "cells",
    "flip_flops",
    "transistors",
    "longest_path",
    "seconds",
)


def table_csv(table: SynthTable) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in table.results:
        writer.writerow(result.row())
    return buf.getvalue()


def table_markdown(table: SynthTable) -> str:
    """One line per configuration: the PE's and the array's figures side by side."""
    rows, cols = table.array_size
    head = (
        f"| dataflow | w_bits | a_bits | acc_bits | overflow | PE cells | PE FFs | PE transistors | PE path "
        f"| {rows}x{cols} cells | {rows}x{cols} FFs | {rows}x{cols} transistors | {rows}x{cols} path |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    pes = {_key(r.point): r for r in table.results if r.point.design == "pe"}
    lines = []
    for arr in (r for r in table.results if r.point.design == "array"):
        p, pe = arr.point, pes.get(_key(arr.point))
        if pe is None:
            continue
        lines.append(
            f"| {p.dataflow} | {p.w_bits} | {p.a_bits} | {p.acc_bits} | {p.overflow} | {pe.cells} | "
            f"{pe.flip_flops} | {pe.transistors} | {pe.longest_path} | {arr.cells} | {arr.flip_flops} | "
            f"{arr.transistors} | {arr.longest_path} |"
        )
    return head + "\n".join(lines) + "\n"


def _key(point: SynthPoint) -> tuple[object, ...]:
    return (point.dataflow, point.w_bits, point.a_bits, point.acc_bits, point.overflow, point.a_signed)


def plot_table(table: SynthTable, path: Path) -> Path:
    """Cells and transistors vs operand width (w_bits = a_bits) of the PE and the array: one line per
    dataflow, overflow mode and accumulator width."""
    from hwsim.plots import save_figure, subplots

    rows, cols = table.array_size
    fig, axes = subplots(2, 2, figsize=(11, 7.5), sharex=True)
    flows = sorted({r.point.dataflow for r in table.results}, key=list(DATAFLOWS).index)
    accs = sorted({r.point.acc_bits for r in table.results})
    colors = dict(zip(flows, ("#4C72B0", "#DD8452", "#55A868", "#C44E52"), strict=False))
    markers = dict(zip(accs, ("o", "s", "^", "D", "v"), strict=False))
    styles = {"wrap": "-", "saturate": "--"}
    for i, design in enumerate(("pe", "array")):
        for j, (metric, name) in enumerate(
            (("cells", "cells"), ("transistors", "transistors (CMOS estimate)"))
        ):
            ax = axes[i][j]
            for flow, ovf, acc in itertools.product(flows, OVERFLOW_MODES, accs):
                pts = sorted(
                    (r.point.w_bits, getattr(r, metric))
                    for r in table.results
                    if r.point.design == design
                    and r.point.dataflow == flow
                    and r.point.overflow == ovf
                    and r.point.acc_bits == acc
                    and r.point.w_bits == r.point.a_bits
                )
                if pts:
                    ax.plot(
                        *zip(*pts, strict=True),
                        color=colors.get(flow),
                        linewidth=3.5 - 1.2 * flows.index(flow),  # coinciding lines stay visible
                        markersize=8 - 2 * flows.index(flow),
                        linestyle=styles.get(ovf, ":"),
                        marker=markers.get(acc, "x"),
                        label=f"{flow} {ovf} acc{acc}",
                    )
            what = "PE" if design == "pe" else f"{rows}x{cols} array"
            ax.set_title(f"{what}: {name}", fontsize=10)
            ax.grid(alpha=0.3)
            if i == 1:
                ax.set_xlabel("operand width w_bits = a_bits")
    widths = sorted({r.point.w_bits for r in table.results})
    axes[1][0].set_xticks(widths)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(
        f"{table.yosys.split(' (')[0]} synthesis, generic cells (no liberty file); "
        f"transistors: Yosys stat -tech cmos",
        fontsize=11,
    )
    fig.text(
        0.5,
        -0.01,
        "w_bits = a_bits only (synth.csv has every pair); dataflows with equal figures overlap",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def write_table(table: SynthTable, directory: Path) -> list[Path]:
    """synth.json, synth.csv, synth.md and synth.png in ``directory``."""
    files = [directory / TABLE_FILE, directory / "synth.csv", directory / "synth.md"]
    files[0].write_text(json.dumps(table.to_json(), indent=1) + "\n")
    files[1].write_text(table_csv(table))
    files[2].write_text(
        f"{table.yosys}. Area in {AREA_UNIT}: {AREA_METHOD}.\n"
        f"Grid {table.grid!r}: {len(table.results)} syntheses, {table.jobs} jobs, "
        f"{table.wall_s:.1f} s wall.\n\n" + table_markdown(table)
    )
    return [*files, plot_table(table, directory / "synth.png")]


# ---- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtl_models.synth",
        description="synthesize the PE and a small array of every RTL dataflow with Yosys over a grid of "
        "widths; write cells, flip-flops, a generic area estimate and the longest path (table and plot)",
    )
    add_output_arguments(parser, SYNTH_KIND, "directory for synth.json, synth.csv, synth.md, synth.png")
    parser.add_argument(
        "--grid", default="small", help=f"configurations: {' or '.join(GRIDS)} (default small)"
    )
    parser.add_argument("--jobs", default="1", help="Yosys processes at a time (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.grid not in GRIDS:
            raise UserError(f"--grid {args.grid!r}: expected one of {', '.join(GRIDS)}")
        if not args.jobs.isdigit() or int(args.jobs) < 1:
            raise UserError(f"--jobs {args.jobs!r}: expected a whole number >= 1, e.g. --jobs 2")
        out = claim(args.out, SYNTH_KIND, force=args.force)
        yosys_version()
        table = synthesize_grid(args.grid, int(args.jobs))
        with publish_directory(out, SYNTH_KIND) as tmp:
            write_table(table, tmp)
    except UserError as err:
        print(f"rtl_models.synth: error: {err}", file=sys.stderr)
        return 2
    except YosysFailed as err:
        print(f"rtl_models.synth: {err}", file=sys.stderr)
        return 1
    print(f"{table.yosys}; generic cells, no liberty file ({AREA_UNIT}: Yosys stat -tech cmos)")
    print(
        f"{len(table.results)} syntheses in {table.wall_s:.1f} s wall ({table.jobs} jobs); wrote {args.out}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
