"""`hwsim simulate BUNDLE --hw HW.yaml [...] --report DIR`: a bundle on one or more MAC arrays, per layer.

Place in the flow: parses the command line, loads the bundle and the hardware descriptions,
calls hwsim.simulate (cycles, memory, values, overflow) and hwsim.compare (against the PyTorch
reference, when the bundle has one) and writes the report with hwsim.report and hwsim.plots.
With several hardware descriptions (``--hw A.yaml B.yaml`` and/or ``--grid``), each gets its own
report under ``DIR/<name>/`` and ``DIR/`` compares them; the configurations are tasks of
hwsim.execute (``--executor``: this process, a local pool, or Dask), and an interrupted run keeps
the finished ones for ``--resume`` (hwsim.journal).
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import plots, results
from hwsim.bundle import Bundle, load_bundle
from hwsim.compare import compare_bundle
from hwsim.emulator import EmulatorConfig
from hwsim.errors import UserError
from hwsim.execute import add_executor_arguments, executor_from_args, run_tasks
from hwsim.flags import batch_int, check_int, positive_int
from hwsim.hwconfig import HardwareConfig, load_hw_config
from hwsim.journal import digest, journal_for
from hwsim.output import (
    DESIGN_SPACE_REPORT,
    REPORT,
    Output,
    add_output_arguments,
    claim,
    publish_directory,
    safe_name,
)
from hwsim.report import PlotFn, Report, Row, results_report, write_report, write_report_files
from hwsim.results import MacLayerResult
from hwsim.simulate import Simulation, simulate_bundle

HELP = "simulate a bundle on a MAC array: cycles, memory, overflow and errors per layer"

GRID_KEYS = ("rows", "cols", "dataflow", "acc_bits", "overflow", "timing")
MAX_GRID = 1024  # hardware configurations one --grid may expand to
DEFAULT_IMAGES = 8  # inputs of the value statistics when --images is not given


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (qat export)")
    parser.add_argument(
        "--hw",
        type=Path,
        nargs="+",
        required=True,
        metavar="HW.yaml",
        help="hardware description(s), e.g. configs/hw/ws_16x16.yaml",
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="KEY=V1,V2",
        help=f"vary the first --hw over a grid, e.g. rows=8,16 dataflow=ws,os; keys: {', '.join(GRID_KEYS)}",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=None,
        help=f"inputs that feed the value, overflow and error statistics (default {DEFAULT_IMAGES}, or "
        "all of the reference if it holds fewer)",
    )
    parser.add_argument(
        "--batch",
        type=batch_int,
        default=1,
        help="images per inference for cycles and latency (default 1)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="CIFAR-10 directory: take the inputs from its test split instead of the bundle's reference",
    )
    add_output_arguments(
        parser,
        REPORT,
        "report directory (e.g. reports/sim16); with several configurations a design-space report",
        flag="--report",
    )
    add_executor_arguments(parser, what="hardware configurations")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_grid(items: Sequence[str]) -> list[dict[str, Any]]:
    """``["rows=8,16", "dataflow=ws,os"]`` -> every combination as override dicts."""
    axes: list[tuple[str, list[Any]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in GRID_KEYS or not values:
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2 with KEY one of {', '.join(GRID_KEYS)}")
        parsed: list[Any] = []
        for v in values.split(","):
            if key in ("rows", "cols", "acc_bits"):
                try:
                    parsed.append(int(v))
                except ValueError:
                    raise UserError(f"--grid {item!r}: {v!r} is not an integer") from None
            else:
                parsed.append(v)
        axes.append((key, parsed))
    count = math.prod(len(v) for _, v in axes)
    if count > MAX_GRID:
        raise UserError(
            f"--grid: {count} combinations; at most {MAX_GRID} configurations are simulated in one "
            "call; split the grid"
        )
    return [
        dict(zip([k for k, _ in axes], combo, strict=True))
        for combo in itertools.product(*[v for _, v in axes])
    ]


def hardware_list(paths: Sequence[Path], grid: Sequence[str]) -> list[HardwareConfig]:
    configs = [load_hw_config(p) for p in paths]
    if grid:
        base = configs[0]
        configs = [base.with_overrides(**o).with_overrides(name="") for o in parse_grid(grid)] + configs[1:]
    labels = [c.label for c in configs]
    if len(set(labels)) != len(labels):
        configs = [c.with_overrides(name=f"{c.label}-{i}") for i, c in enumerate(configs)]
    return configs


def select_inputs(
    bundle: Bundle, images: int | None, data: Path | None, default: int = 8, split: str = "test"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``images`` inputs (codes) and their labels: from ``data``'s ``split`` or the reference.

    ``images`` None takes ``default`` or all there are if fewer; more than there are is an error.
    """
    if images is not None:
        check_int("--images", images, 1)
    if data is not None:
        from hwsim.bundle import quantize_images
        from hwsim.cifar10 import load_cifar10

        pixels, labels = load_cifar10(data, split)  # type: ignore[arg-type]
        count = min(default, pixels.shape[0]) if images is None else images
        if count > pixels.shape[0]:
            raise UserError(
                f"--images {count}: {data} holds only {pixels.shape[0]} {split} images; "
                f"pass --images {pixels.shape[0]} or less"
            )
        return quantize_images(pixels[:count], bundle), labels[:count]
    ref = bundle.reference
    if ref is None:
        raise UserError(f"{bundle.path}: no reference.npz to take inputs from; pass --data CIFAR10_DIR")
    count = min(default, ref.images) if images is None else images
    if count > ref.images:
        raise UserError(
            f"--images {count}: the bundle's reference holds {ref.images} inputs; "
            f"pass --images {ref.images} or less, or --data CIFAR10_DIR for more"
        )
    return ref.input_codes[:count], ref.labels[:count]


def merge_comparison(sim: Simulation, bundle: Bundle) -> list[str]:
    """Join hwsim.compare's per-requantizer errors (at the array's accumulator) and top-1 to ``sim``."""
    if bundle.reference is None:
        return ["the bundle has no reference.npz: no comparison with the PyTorch model"]
    comparison = compare_bundle(
        bundle, EmulatorConfig(acc_bits=sim.hw.pe.acc_bits, overflow=sim.hw.pe.overflow)
    )
    sim.rows = results.with_errors(sim.rows, comparison.layers)
    for key, value in comparison.totals.items():
        if key not in sim.totals and key not in ("overflow_count", "macs_per_image"):
            sim.totals[key] = value
    return comparison.notes


def _plots(sim: Simulation) -> dict[str, PlotFn]:
    hw = sim.hw
    return {
        "latency.png": plots.plot_latency,
        "energy.png": plots.plot_energy,
        "utilization.png": plots.plot_utilization,
        "overflow.png": plots.plot_overflow,
        "error.png": plots.plot_error,
        "roofline.png": lambda rows, path, title: plots.plot_roofline(
            rows, hw.array.pes, hw.dram_bytes_per_cycle, path, title
        ),
    }


def write_simulation(
    sim: Simulation, bundle: Bundle, directory: Path | Output, notes: list[str], whole: bool = True
) -> None:
    """The report of one simulation: published as ``directory`` whole, or (``whole`` False) written
    into ``directory``, a sub-report inside a design-space report being published."""
    hw = sim.hw
    meta = {
        "bundle": str(bundle.path),
        "model": bundle.meta.model,
        "hw": hw.label,
        "array": f"{hw.array.rows}x{hw.array.cols}",
        "dataflow": hw.array.dataflow,
        "acc_bits": hw.pe.acc_bits,
        "overflow": hw.pe.overflow,
        "timing": hw.timing,
        "clock_mhz": hw.clock_mhz,
        "dram_bytes_per_cycle": hw.dram_bytes_per_cycle,
        "buffers_kb": f"{hw.buffers.ifmap_kb}/{hw.buffers.weight_kb}/{hw.buffers.ofmap_kb}",
        "batch": sim.totals["batch"],
        "images": sim.totals["images"],
    }
    notes = [
        f"cycles and latency are per inference of {sim.totals['batch']} image(s); value, overflow and error "
        f"statistics use {sim.totals['images']} input(s)",
        "rows are the MAC layers; error columns are those of the requantizer each feeds (hwsim compare)",
        f"energy columns (nJ per inference) are first-order estimates from the technology table "
        f"{hw.energy} (docs/energy.md; the YAML's energy: section)",
        *notes,
    ]
    pools = [r.name for r in sim.rows if r.type == "maxpool"]
    if pools:
        notes.insert(
            2,
            f"maxpool rows ({', '.join(pools)}) run on the vector unit of {hw.array.cols} lanes "
            "(docs/dataflow.md): no MACs, ceil(outputs / cols) * kh * kw cycles, input read and output "
            "written once",
        )
    if sim.totals["overflowing_layers"]:
        notes.append(
            f"layers that overflow at {hw.pe.acc_bits} bits: {', '.join(sim.totals['overflowing_layers'])}"
        )
    title = f"hwsim simulate: {bundle.meta.model} on {hw.label}"
    writer = write_report if whole else write_report_files
    writer(results_report(title, meta, sim.rows, sim.totals, notes), directory, _plots(sim))


def run(args: argparse.Namespace) -> int:
    configs = hardware_list(args.hw, args.grid)
    several = len(configs) > 1
    out = claim(
        args.report,
        DESIGN_SPACE_REPORT if several else REPORT,
        flag="--report",
        force=args.force,
        inputs=(args.bundle, *args.hw, args.data),
    )
    names = [
        safe_name(hw.label, "--hw: a hardware name (its YAML's field 'name', or the file's stem)")
        for hw in configs
    ]
    bundle = load_bundle(args.bundle)
    codes, _labels = select_inputs(bundle, args.images, args.data, DEFAULT_IMAGES)
    progress = not args.no_progress
    shared = _SimulateInputs(bundle, tuple(configs), codes, args.batch, progress and not several)
    fingerprint = digest("simulate", bundle, configs, codes, args.batch)
    with ExitStack() as stack:
        # the journal goes only once the report is published
        journal = stack.enter_context(
            journal_for(out, fingerprint, resume=args.resume, what="hwsim simulate")
        )
        # several configurations: one design-space report, its sub-reports included, published whole
        staged = stack.enter_context(publish_directory(out, DESIGN_SPACE_REPORT)) if several else None
        parts = run_tasks(
            simulate_task,
            shared,
            list(range(len(configs))),
            executor_from_args(args),
            journal=journal,
            desc="simulate",
            progress=progress and several,
        )
        summaries = [
            _write_one(args, bundle, hw, part, out if staged is None else staged / name, name)
            for hw, name, part in zip(configs, names, parts, strict=True)
        ]
        if staged is not None:
            best = min(summaries, key=lambda s: s["latency_us"])
            write_report_files(
                Report(
                    f"hwsim simulate: {bundle.meta.model}, design space",
                    {"bundle": str(bundle.path), "batch": args.batch},
                    summaries,
                    {
                        "configurations": len(summaries),
                        "fastest": best["hw"],
                        "fastest_latency_us": best["latency_us"],
                    },
                ),
                staged,
                {"design_space.png": lambda rows, path, title: plots.plot_design_space(rows, path, title)},
            )
    if several:
        print(f"design space ({len(summaries)} configurations) -> {args.report / 'report.html'}")
    return 0


@dataclass(frozen=True, eq=False)
class _SimulateInputs:
    """What every configuration's task reads (sent once per worker)."""

    bundle: Bundle
    configs: tuple[HardwareConfig, ...]
    codes: np.ndarray
    batch: int
    progress: bool


def simulate_task(inputs: _SimulateInputs, index: int) -> dict[str, Any]:
    """One configuration (a task of hwsim.execute): its rows, totals and comparison notes."""
    sim = simulate_bundle(
        inputs.bundle, inputs.configs[index], inputs.codes, batch=inputs.batch, progress=inputs.progress
    )
    notes = merge_comparison(sim, inputs.bundle)
    return {"rows": [results.to_data(r) for r in sim.rows], "totals": sim.totals, "notes": notes}


def _write_one(
    args: argparse.Namespace,
    bundle: Bundle,
    hw: HardwareConfig,
    part: dict[str, Any],
    directory: Path | Output,
    name: str,
) -> Row:
    """Write the report of ``hw``'s simulation to ``directory`` and return its design-space row."""
    rows = [MacLayerResult.from_data(r) for r in part["rows"]]
    sim = Simulation(hw=hw, rows=rows, totals=part["totals"], emulation=None)
    whole = isinstance(directory, Output)
    shown = args.report if whole else args.report / name
    write_simulation(sim, bundle, directory, part["notes"], whole=whole)
    t = sim.totals
    print(
        f"{hw.label}: {t['cycles']} cycles, {t['latency_us']:.1f} us, "
        f"{t['energy_nj'] / 1000:.1f} uJ per inference, "
        f"utilization {100 * t['utilization']:.1f} %, overflowing layers: {len(t['overflowing_layers'])} "
        f"-> {shown / 'report.html'}"
    )
    return {
        "name": hw.label,
        "acc_bits": hw.pe.acc_bits,
        "cycles": t["cycles"],
        "latency_us": t["latency_us"],
        "utilization": t["utilization"],
        "overflow_count": t["overflow_count"],
        "hw": hw.label,
        "rows": hw.array.rows,
        "cols": hw.array.cols,
        "dataflow": hw.array.dataflow,
        "timing": hw.timing,
        "stall_cycles": t["stall_cycles"],
        "memory_bound_layers": len(t["memory_bound_layers"]),
        "energy_nj": t["energy_nj"],
        "edp_nj_us": t["edp_nj_us"],
        "report": str(shown),
    }
