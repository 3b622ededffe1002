"""`hwsim compare`: emulate a bundle's reference batch and report, per layer, how it differs from PyTorch.

Place in the flow: bundle/ (with reference.npz) -> hwsim.compare -> hwsim.report -> reports/<run>/.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hwsim.bundle import load_bundle
from hwsim.commands import add_emulator_arguments
from hwsim.compare import compare_bundle
from hwsim.emulator import EmulatorConfig
from hwsim.output import REPORT, add_output_arguments, claim
from hwsim.report import fmt_value, results_report, write_report

HELP = "compare the emulator with the PyTorch reference per layer and write a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory written by qat export")
    add_output_arguments(parser, REPORT, "directory for the report files", flag="--report")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="CIFAR-10 batches directory: also emulate the whole test set (default: $CIFAR10_DIR)",
    )
    add_emulator_arguments(parser)


def run(args: argparse.Namespace) -> int:
    data = args.data
    if data is None and os.environ.get("CIFAR10_DIR"):
        data = Path(os.environ["CIFAR10_DIR"])
    out = claim(args.report, REPORT, flag="--report", force=args.force, inputs=(args.bundle, data))
    bundle = load_bundle(args.bundle)
    config = EmulatorConfig(acc_bits=args.acc_bits, overflow=args.overflow)
    result = compare_bundle(bundle, config, data, batch_size=args.batch_size, progress=args.progress)
    written = write_report(
        results_report(result.title, result.meta, result.layers, result.totals, result.notes), out
    )
    cols = ("name", "type", "overflow_count", "peak_acc_abs", "mismatch_rate", "max_abs_err_lsb", "sqnr_db")
    table = [list(cols)] + [[fmt_value(getattr(r, c)) for c in cols] for r in result.layers]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    t = result.totals
    print(
        f"top-1 on the {t['top1_source']}: reference {fmt_value(t['top1_reference']) or 'n/a'}, "
        f"emulator {fmt_value(t['top1_emulator']) or 'n/a'}, agreement {fmt_value(t['top1_agreement'])}"
    )
    print(
        f"first layer diverging by more than 1 LSB: {t['first_divergent_layer'] or 'none'}; "
        f"overflow events: {t['overflow_count']}"
    )
    print(f"report: {written['report.html'].parent}/ ({', '.join(sorted(written))})")
    return 0
