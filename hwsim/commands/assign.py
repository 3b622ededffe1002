"""`hwsim assign BUNDLE --hw HW.yaml --objective energy --min-agreement 0.99 --report DIR`: mixed precision.

Place in the flow: parses the command line, takes the sensitivities from `hwsim sweep` reports
(``--sweeps``: a ``w_bits`` and an ``act_bits`` sweep of the same bundle on the same inputs) or
runs those sweeps (hwsim.sweep), solves and verifies the assignment (hwsim.assign) and writes the
report: per layer the chosen widths and their cost, every candidate (the tries, the bundle, uniform
widths, greedy) with its cost and measured agreement, the Pareto plot, and ``assignment.yaml``, a
``qat train --quant`` config that fine-tunes the model at the chosen widths.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hwsim import plots
from hwsim.assign import (
    KINDS,
    MAX_TRIES,
    METRICS,
    Assignment,
    Candidate,
    assign,
    build_problem,
    inputs_for,
    predicted_sqnr_db,
    quant_config,
)
from hwsim.bundle import Bundle, load_bundle
from hwsim.cifar10 import SPLITS
from hwsim.commands.simulate import select_inputs
from hwsim.commands.sweep import read_sweep_report
from hwsim.errors import UserError
from hwsim.execute import add_executor_arguments, executor_from_args
from hwsim.flags import finite_float, positive_int
from hwsim.hwconfig import load_hw_config
from hwsim.journal import digest
from hwsim.output import REPORT, add_output_arguments, claim
from hwsim.report import Report, Row, fmt_value, write_report
from hwsim.sweep import SweepResult, parse_range, sweep_bundle

HELP = "choose per-layer weight and activation widths of least cost on an array, verified on the emulator"
DEFAULT_IMAGES = 256  # inputs the sensitivities and every verification are measured on


def _budget(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in METRICS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)} "
            f"(units: {', '.join(f'{m.name} {m.unit}' for m in METRICS.values())}), e.g. latency=450"
        )
    try:
        bound = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None
    if not math.isfinite(bound) or bound <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the bound must be a positive finite number")
    return name, bound


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (qat export)")
    parser.add_argument(
        "--hw", type=Path, required=True, help="hardware description (YAML) that prices each choice"
    )
    parser.add_argument(
        "--objective",
        choices=tuple(METRICS),
        default="energy",
        help="what to minimise: "
        + "; ".join(f"{m.name} ({m.unit}): {m.help}" for m in METRICS.values())
        + " (default energy)",
    )
    parser.add_argument(
        "--min-agreement",
        type=finite_float(0.0, 1.0),
        default=0.99,
        help="top-1 agreement the whole assigned network must keep, measured (default 0.99)",
    )
    parser.add_argument(
        "--budget",
        type=_budget,
        nargs="+",
        default=[],
        metavar="METRIC=VALUE",
        help="bounds on other costs, e.g. latency=450 (us) weight_bits=2e6",
    )
    parser.add_argument(
        "--sweeps",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="reports of `hwsim sweep --what w_bits` / `--what act_bits` on the same bundle and inputs "
        "(the sweeps not given are run)",
    )
    parser.add_argument(
        "--range", dest="widths", default="2..8", help="widths the sweeps run try (default 2..8)"
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=None,
        help=f"inputs of the sensitivities and the verification (default {DEFAULT_IMAGES}, or all the "
        "reference holds)",
    )
    parser.add_argument("--data", type=Path, default=None, help="CIFAR-10 directory: inputs from it")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="which split of --data (default train: keep the test split for reporting)",
    )
    parser.add_argument(
        "--tries",
        type=positive_int,
        default=MAX_TRIES,
        help=f"solutions verified at most (default {MAX_TRIES})",
    )
    add_executor_arguments(parser, what="sweep points")
    add_output_arguments(parser, REPORT, "report directory", flag="--report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _given_sweeps(paths: list[Path], bundle: Bundle, codes: np.ndarray) -> dict[str, SweepResult]:
    """The sweep reports given, checked to be of this bundle and these inputs, by kind."""
    found: dict[str, SweepResult] = {}
    bundle_digest, inputs_digest = digest(bundle), digest(codes)
    for path in paths:
        result, meta = read_sweep_report(path)
        if result.what not in KINDS:
            raise UserError(
                f"--sweeps {path}: a {result.what} sweep; assign takes {' and '.join(KINDS)} sweeps"
            )
        if result.what in found:
            raise UserError(f"--sweeps: two {result.what} sweeps given; give one of each kind")
        if meta.get("bundle_digest") != bundle_digest:
            raise UserError(
                f"--sweeps {path}: made from another bundle (or before it changed); sweep {bundle.path} again"
            )
        if meta.get("inputs_digest") != inputs_digest:
            raise UserError(
                f"--sweeps {path}: measured on other inputs than this run's; give assign the sweep's "
                "--images/--data/--split, or leave --sweeps out"
            )
        found[result.what] = result
    return found


def run(args: argparse.Namespace) -> int:
    out = claim(
        args.report,
        REPORT,
        flag="--report",
        force=args.force,
        inputs=(args.bundle, args.data, args.hw, *args.sweeps),
    )
    bundle = load_bundle(args.bundle)
    hw = load_hw_config(args.hw)
    widths = parse_range(args.widths, "w_bits")
    codes, labels = select_inputs(bundle, args.images, args.data, DEFAULT_IMAGES, args.split)
    reference = None
    if bundle.reference is not None and args.data is None and bundle.meta.output in bundle.reference.codes:
        reference = np.argmax(bundle.reference.codes[bundle.meta.output][: codes.shape[0]], axis=1)
    sweeps = _given_sweeps(args.sweeps, bundle, codes)
    executor = executor_from_args(args)
    for what in KINDS:
        if what not in sweeps:
            sweeps[what] = sweep_bundle(
                bundle,
                what,
                widths,
                codes,
                labels=labels,
                reference_predictions=reference,
                progress=not args.no_progress,
                executor=executor,
            )
    problem = build_problem(bundle, hw, sweeps["w_bits"], sweeps["act_bits"])
    inputs = inputs_for(bundle, codes, labels, reference)
    result = assign(problem, inputs, args.objective, args.min_agreement, dict(args.budget), tries=args.tries)
    _write(args, out, bundle, result, reference is not None)
    return 0


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


def _layer_rows(result: Assignment) -> list[Row]:
    problem = result.problem
    chosen = result.chosen.widths
    bundle_rows = problem.layer_results(problem.bundle_widths())
    rows = []
    for node, at, was in zip(
        problem.bundle.mac_nodes, problem.layer_results(chosen), bundle_rows, strict=True
    ):
        unit = problem.unit(f"weight:{node.name}")
        rows.append(
            {
                "name": node.name,
                "bundle_w_bits": was.w_bits,
                "w_bits": at.w_bits,
                "config_w_bits": at.w_bits - unit.offset,
                "bundle_a_bits": was.a_bits,
                "a_bits": at.a_bits,
                "w_drop_alone": unit.drop(chosen[unit.key]),
                "energy_nj": at.energy_nj,
                "bundle_energy_nj": was.energy_nj,
                "latency_us": at.latency_us,
                "bundle_latency_us": was.latency_us,
            }
        )
    return rows


def _units_csv(result: Assignment) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["unit", "kind", "bundle_bits", "bits", "config_bits", "choices", "drop_alone", "sqnr_db_alone"]
    )
    for u in result.problem.units:
        bits = result.chosen.widths[u.key]
        sqnr = predicted_sqnr_db(u.noise_at(bits))
        writer.writerow(
            [
                u.name,
                u.kind,
                u.bundle_bits,
                bits,
                bits - u.offset,
                " ".join(map(str, u.choices)),
                fmt_value(u.drop(bits)),
                fmt_value(sqnr),
            ]
        )
    return buf.getvalue()


def _candidates(result: Assignment) -> list[tuple[str, Candidate]]:
    return [
        ("assignment", result.chosen),
        *(("try", t) for t in result.tries),
        *(("baseline", b) for b in result.baselines),
    ]


def _candidates_csv(result: Assignment) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "label",
            "kind",
            *(f"{m.name}_{m.unit}" for m in METRICS.values()),
            "agreement",
            "sqnr_db",
            "predicted_sqnr_db",
            "top1",
            "passed",
        ]
    )
    for kind, c in _candidates(result):
        writer.writerow(
            [
                c.label,
                kind,
                *(fmt_value(c.cost[m]) for m in METRICS),
                fmt_value(c.agreement),
                fmt_value(c.sqnr_db),
                fmt_value(c.predicted_sqnr_db),
                fmt_value(c.top1),
                c.passed,
            ]
        )
    return buf.getvalue()


def _config_yaml(args: argparse.Namespace, bundle: Bundle, result: Assignment) -> str:
    c = result.chosen
    header = [
        f"# hwsim assign: {bundle.meta.model} from {bundle.path} on {args.hw}, least {result.objective}",
        f"# with top-1 agreement >= {result.floor} on {result.problem.images} images: measured "
        f"{c.agreement:.4f}, SQNR {c.sqnr_db:.1f} dB;",
        "# " + ", ".join(f"{m.name} {c.cost[m.name]:.6g} {m.unit}" for m in METRICS.values()) + ".",
        "# Widths narrowed from the bundle's are the `layers` entries (a weight's config width is its code",
        "# width minus the lattice's extra bit, e.g. DoReFa's); fine-tune with",
        "#   qat train --model <model> --quant assignment.yaml --init <float checkpoint> ...",
    ]
    config = quant_config(result)
    if "default" not in config:
        header.append("# The bundle records no quantization config: add a `default:` entry before training.")
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def _write(
    args: argparse.Namespace, out: Any, bundle: Bundle, result: Assignment, pytorch_reference: bool
) -> None:
    metric = METRICS[result.objective]
    c = result.chosen
    bundle_c = next((b for b in result.baselines if b.label == "bundle"), None)
    totals: dict[str, Any] = {
        "objective": result.objective,
        "min_agreement": result.floor,
        "budgets": result.budgets,
        "images": result.problem.images,
        "reference": "PyTorch reference predictions" if pytorch_reference else "unmodified emulator",
        "agreement": c.agreement,
        "sqnr_db": c.sqnr_db,
        "predicted_sqnr_db": c.predicted_sqnr_db,
        "top1": c.top1,
        **{f"{m.name}_{m.unit}": c.cost[m.name] for m in METRICS.values()},
        "tries": len(result.tries),
        "solve_seconds": result.seconds.get("solve"),
        "verify_seconds": result.seconds.get("verify"),
        "candidates": [
            {
                "label": x.label,
                "kind": kind,
                "cost": x.cost,
                "agreement": x.agreement,
                "sqnr_db": x.sqnr_db,
                "predicted_sqnr_db": x.predicted_sqnr_db,
                "top1": x.top1,
                "passed": x.passed,
            }
            for kind, x in _candidates(result)
        ],
    }
    if bundle_c is not None:
        totals["saving_vs_bundle"] = 1 - c.cost[result.objective] / bundle_c.cost[result.objective]
    notes = [
        "units: each MAC layer's weights and each activation tensor (the network input and every requantizer "
        "output a MAC layer reads); a unit's choices are the swept widths below its bundle width",
        "the program adds the units' measured noise powers (logits error over signal, one unit at a time) "
        "and bounds the sum; every solution is then emulated whole and kept only if its measured agreement "
        "holds the floor",
        "costs from the same model as hwsim simulate (timing, memory, energy) at each layer's weight, input "
        "and output widths; pools at the bundle's widths",
        *result.notes,
    ]
    points = [
        {"label": x.label, "kind": kind, "cost": x.cost[result.objective], "agreement": x.agreement}
        for kind, x in _candidates(result)
    ]
    figures = {
        "pareto.png": lambda rows, path, title: plots.plot_pareto(
            points,
            path,
            f"{title}: {metric.name} vs measured agreement",
            f"{metric.name} ({metric.unit})",
            result.floor,
        )
    }
    meta = {
        "bundle": str(bundle.path),
        "model": bundle.meta.model,
        "hw": str(args.hw),
        "objective": result.objective,
    }
    write_report(
        Report(
            f"hwsim assign {result.objective}: {bundle.meta.model}", meta, _layer_rows(result), totals, notes
        ),
        out,
        figures,
        extra_files={
            "assignment.yaml": _config_yaml(args, bundle, result),
            "units.csv": _units_csv(result),
            "candidates.csv": _candidates_csv(result),
        },
    )
    floor, images = result.floor, result.problem.images
    where = args.report / "report.html"
    print(f"assign {result.objective} with agreement >= {floor} on {images} images -> {where}")
    width = max(len(x.label) for _, x in _candidates(result))
    for kind, x in _candidates(result):
        if kind == "try":
            continue
        print(
            f"  {x.label:<{width}}  {metric.name} {x.cost[result.objective]:10.4g} {metric.unit}"
            f"  agreement {x.agreement:.4f}"
            f"  SQNR {x.sqnr_db:6.1f} dB{'' if x.passed else '  (below the floor)'}"
        )
    print(f"  {len(result.tries)} solutions verified; widths in {args.report / 'assignment.yaml'}")
