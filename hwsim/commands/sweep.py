"""`hwsim sweep BUNDLE --what w_bits|a_bits|act_bits|acc_bits [--range 2..8] --report DIR`: sensitivity.

Place in the flow: parses the command line, calls hwsim.sweep (one layer re-quantized at a time,
run on the emulator) and writes the report with hwsim.report: one row per layer (the smallest
width keeping top-1 agreement >= the threshold, and the metrics at every width), the heatmaps
(layer x bits) as PNGs, and ``sweep.csv`` with every (layer, width) point. The points are tasks
of hwsim.execute (``--executor``: this process, a local pool on every core, or Dask); the results
do not depend on where they ran. An interrupted sweep keeps its finished points (hwsim.journal) and
``--resume`` runs only the rest.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import plots
from hwsim.bundle import Bundle, load_bundle
from hwsim.cifar10 import SPLITS
from hwsim.commands.simulate import select_inputs
from hwsim.errors import UserError
from hwsim.execute import add_executor_arguments, executor_from_args
from hwsim.fixed import OVERFLOW_MODES
from hwsim.flags import finite_float, positive_int
from hwsim.journal import digest, journal_for
from hwsim.output import REPORT, Output, add_output_arguments, claim
from hwsim.report import Report, Row, fmt_value, write_report
from hwsim.sweep import (
    DEFAULT_RANGES,
    WHATS,
    WIDTH_LIMITS,
    SweepPoint,
    SweepResult,
    parse_range,
    sweep_bundle,
    sweep_fingerprint,
)

DEFAULT_IMAGES = 64  # inputs per point when --images is not given (at most what there are)
HELP = (
    "bit-width sensitivity: re-quantize one layer (w_bits, a_bits, acc_bits) or one activation tensor "
    "(act_bits) at a time and measure the loss"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (qat export)")
    parser.add_argument("--what", choices=WHATS, required=True, help="which width to sweep")
    parser.add_argument(
        "--range",
        dest="widths",
        default=None,
        help="widths, LO..HI or a list (default 2..8; acc_bits: 8..24); legal: "
        + ", ".join(f"{w} {lo}..{hi}" for w, (lo, hi) in WIDTH_LIMITS.items()),
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=None,
        help=f"inputs evaluated per point (default {DEFAULT_IMAGES}, or all of the reference if it holds "
        "fewer; more than there are is an error)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="CIFAR-10 directory: inputs and labels from it instead of the reference",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="which split of --data (default test; `hwsim assign` measures on train by default)",
    )
    parser.add_argument(
        "--threshold",
        type=finite_float(0.0, 1.0),
        default=0.99,
        help="top-1 agreement a width must keep to count as safe (default 0.99)",
    )
    parser.add_argument(
        "--layers",
        nargs="+",
        default=None,
        help="only these MAC layers (activation tensors for --what act_bits; default: all)",
    )
    parser.add_argument(
        "--overflow",
        choices=OVERFLOW_MODES,
        default="wrap",
        help="how accumulators narrow, the swept one of --what acc_bits included (default wrap)",
    )
    add_executor_arguments(parser, what="points")
    add_output_arguments(parser, REPORT, "report directory", flag="--report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def bundle_width(bundle: Bundle, what: str, layer: str) -> int:
    """The width ``layer`` has in the bundle: its weight codes', input codes' or accumulator's; for
    ``act_bits`` ``layer`` is a tensor and this its codes' width."""
    if what == "act_bits":
        fmt = bundle.tensors[layer].fmt
        assert fmt is not None
        return int(fmt.bits)
    node = bundle.node(layer)
    if what == "w_bits":
        return int(node.weight_format.bits)
    if what == "a_bits":
        fmt = bundle.tensors[node.input].fmt
        assert fmt is not None
        return int(fmt.bits)
    return int(bundle.meta.acc_bits)


def layer_rows(result: SweepResult, bundle: Bundle) -> list[Row]:
    minimum = result.min_bits()
    agreement, sqnr, top1 = result.grid("agreement"), result.grid("sqnr_db"), result.grid("top1")
    rate = result.grid("overflow_rate")
    rows = []
    for i, name in enumerate(result.layers):
        row: Row = {
            "name": name,
            f"bundle_{result.what}": bundle_width(bundle, result.what, name),
            f"min_{result.what}": minimum[name],
        }
        for j, b in enumerate(result.widths):
            row[f"agreement@{b}"] = float(agreement[i, j])
        for j, b in enumerate(result.widths):
            row[f"sqnr_db@{b}"] = float(sqnr[i, j])
        if result.what == "acc_bits":
            for j, b in enumerate(result.widths):
                row[f"overflow_rate@{b}"] = float(rate[i, j])
        if result.baseline.get("top1") is not None:
            for j, b in enumerate(result.widths):
                row[f"top1@{b}"] = float(top1[i, j])
        rows.append(row)
    return rows


def _points_csv(result: SweepResult) -> str:
    buf = io.StringIO()
    points = result.rows()
    writer = csv.DictWriter(buf, fieldnames=list(points[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: fmt_value(v) if isinstance(v, float) else v for k, v in p.items()} for p in points)
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold {args.threshold}: expected a fraction in [0, 1]")
    out = claim(args.report, REPORT, flag="--report", force=args.force, inputs=(args.bundle, args.data))
    bundle = load_bundle(args.bundle)
    lo, hi = DEFAULT_RANGES[args.what]
    widths = parse_range(args.widths or f"{lo}..{hi}", args.what)
    codes, labels = select_inputs(bundle, args.images, args.data, DEFAULT_IMAGES, args.split)
    reference = None
    if bundle.reference is not None and args.data is None and bundle.meta.output in bundle.reference.codes:
        reference = np.argmax(bundle.reference.codes[bundle.meta.output][: codes.shape[0]], axis=1)
    executor = executor_from_args(args)
    fingerprint = sweep_fingerprint(bundle, args.what, widths, codes, args.overflow, args.layers)
    with journal_for(out, fingerprint, resume=args.resume, what="hwsim sweep") as journal:
        result = sweep_bundle(
            bundle,
            args.what,
            widths,
            codes,
            labels=labels,
            reference_predictions=reference,
            threshold=args.threshold,
            layers=args.layers,
            progress=not args.no_progress,
            overflow=args.overflow,
            executor=executor,
            journal=journal,
        )
        _write(args, out, bundle, result, reference, digest(codes))
    return 0


def _write(
    args: argparse.Namespace,
    out: Output,
    bundle: Bundle,
    result: SweepResult,
    reference: Any,
    inputs_digest: str,
) -> None:
    what = args.what
    layers, bits = result.layers, result.widths
    figures = {
        f"sensitivity_{what}_agreement.png": lambda rows, path, title: plots.plot_heatmap(
            result.grid("agreement"), layers, bits, path, f"{title}: top-1 agreement", "top-1 agreement", 0, 1
        ),
        f"sensitivity_{what}_sqnr.png": lambda rows, path, title: plots.plot_heatmap(
            result.grid("sqnr_db"),
            layers,
            bits,
            path,
            f"{title}: output SQNR",
            "SQNR (dB); = identical",
        ),
    }
    if what == "acc_bits":
        figures[f"sensitivity_{what}_overflow.png"] = lambda rows, path, title: plots.plot_heatmap(
            result.grid("overflow_rate"),
            layers,
            bits,
            path,
            f"{title}: overflow rate",
            "outputs overflowed",
            0,
            1,
        )
    minimum = result.min_bits()
    totals = {
        "what": what,
        "widths": bits,
        "threshold": args.threshold,
        "images": result.baseline["images"],
        "baseline_agreement": result.baseline["agreement"],
        "baseline_top1": result.baseline["top1"],
        "reference": "PyTorch reference predictions" if reference is not None else "unmodified emulator",
        "layers_safe_at_min_width": sum(1 for v in minimum.values() if v == bits[0]),
        "layers_never_safe": [k for k, v in minimum.items() if v is None],
    }
    notes = [
        "each row narrows only that activation tensor, for every reader (MAC layers, residual adds, pools); "
        "the others keep the bundle's widths"
        if what == "act_bits"
        else f"each row re-quantizes only that layer's {what}; the others keep the bundle's widths",
        f"min_{what}: the smallest width from which every wider one keeps agreement >= {args.threshold}",
        "sweep.csv lists every (layer, width) point; 'changed' is false where the codes stayed as they were",
        f"bundle_{what}: the layer's width in the bundle; a min_{what} equal to it means the layer cannot "
        "lose a bit",
    ]
    if what in ("w_bits", "a_bits", "act_bits"):
        notes.append(
            "widths are the codes' stored two's-complement widths: a signed b-bit code holds "
            "±(2^(b-1) - 1), so a lattice such as DoReFa's odd k-bit weights (±1, ±3, ..., ±(2^k - 1)) "
            "is stored in k + 1 bits"
        )
    if what == "acc_bits":
        notes.append(
            "accumulators wrap (two's complement) at the swept width; overflow rate = exact sums outside it"
            if args.overflow == "wrap"
            else "accumulators saturate at the swept width, one clamp per product in the dataflow's order; "
            "overflow rate = outputs where a clamp happened"
        )
    meta = {
        "bundle": str(bundle.path),
        "model": bundle.meta.model,
        "what": what,
        "range": f"{bits[0]}..{bits[-1]}",
        "overflow": args.overflow,
        "bundle_digest": digest(bundle),
        "inputs_digest": inputs_digest,
    }
    title = f"hwsim sweep {what}: {bundle.meta.model}"
    write_report(
        Report(title, meta, layer_rows(result, bundle), totals, notes),
        out,
        figures,
        extra_files={"sweep.csv": _points_csv(result)},
    )
    print(
        f"sweep {what} over {len(layers)} layers x {len(bits)} widths on {result.baseline['images']} images "
        f"-> {args.report / 'report.html'}"
    )
    for name, b in minimum.items():
        shown = b if b is not None else f"> {bits[-1]}"
        print(f"  {name}: min {what} {shown} (bundle: {bundle_width(bundle, what, name)})")


def read_sweep_report(directory: Path) -> tuple[SweepResult, dict[str, Any]]:
    """A sweep report written by :func:`run` read back: its result (the grids' metrics; JSON's nulls are
    the infinite SQNRs of unchanged logits) and its meta (``bundle_digest``, ``inputs_digest``)."""
    path = Path(directory) / "report.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        meta, totals, rows = doc["meta"], doc["totals"], doc["layers"]
        what, widths = str(meta["what"]), [int(b) for b in totals["widths"]]
        result = SweepResult(
            what,
            widths,
            [str(r["name"]) for r in rows],
            [],
            float(totals["threshold"]),
            {
                "agreement": float(totals["baseline_agreement"]),
                "top1": totals.get("baseline_top1"),
                "images": int(totals["images"]),
            },
        )
        for r in rows:
            for b in widths:
                sqnr = r[f"sqnr_db@{b}"]
                top1 = r.get(f"top1@{b}")
                result.points.append(
                    SweepPoint(
                        str(r["name"]),
                        b,
                        True,
                        math.inf if sqnr is None else float(sqnr),
                        float(r[f"agreement@{b}"]),
                        None if top1 is None else float(top1),
                    )
                )
    except FileNotFoundError:
        raise UserError(
            f"{directory}: no report.json; expected a report directory of `hwsim sweep`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path}: not a report of `hwsim sweep` ({type(err).__name__}: {err}); run the sweep again"
        ) from None
    if what not in WHATS:
        raise UserError(f"{path}: meta.what {what!r} is not one of {', '.join(WHATS)}")
    return result, meta
