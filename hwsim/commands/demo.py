"""`hwsim demo [--out reports/demo]`: the whole flow on the bundled ResNet20s, a report each and an index.

Place in the flow: parses the command line at the edge into a hwsim.demo.DemoConfig and calls
hwsim.demo.run_demo (emulate, compare with PyTorch, simulate on two arrays, sweep accumulator and
bit widths; no training, no data set, no network needed). Prints where the index is.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hwsim.demo import ACC_WIDTHS, DEMO, PRECISION_SCOPES, PRECISION_WIDTHS, DemoConfig, run_demo
from hwsim.execute import add_executor_arguments, executor_from_args
from hwsim.flags import finite_float, positive_int
from hwsim.hwconfig import load_hw_config
from hwsim.output import add_output_arguments
from hwsim.sweep import parse_range

HELP = "run the whole flow on the bundled quantized ResNet20s and write one report per model plus an index"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_output_arguments(parser, DEMO, "report directory", default=Path("reports/demo"))
    parser.add_argument(
        "--models", nargs="+", default=None, metavar="NAME", help="only these bundled models (default: all)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="CIFAR-10 batches directory: also run the emulator on its test split (default: $CIFAR10_DIR; "
        "without either the demo runs on the bundles' reference images)",
    )
    parser.add_argument(
        "--test-images",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --data: only the first N test images",
    )
    parser.add_argument(
        "--bundles",
        type=Path,
        default=None,
        metavar="DIR",
        help="a directory of bundles (one <name>/ each, optional MANIFEST.yaml) instead of the bundled ones",
    )
    parser.add_argument(
        "--hw",
        type=Path,
        nargs="+",
        default=None,
        metavar="HW.yaml",
        help="hardware descriptions to simulate (default: 16x16 weight- and output-stationary, "
        "as configs/hw/ws_16x16.yaml and os_16x16.yaml); the first one's accumulator sets the "
        "overflow figures",
    )
    parser.add_argument(
        "--sim-images",
        type=positive_int,
        default=1,
        metavar="N",
        help="images whose every fold the array model executes and checks against the emulator (default 1)",
    )
    parser.add_argument(
        "--sweep-images",
        type=positive_int,
        default=16,
        metavar="N",
        help="images per sweep point (default 16)",
    )
    parser.add_argument(
        "--acc-widths",
        default=",".join(map(str, ACC_WIDTHS)),
        help=f"accumulator widths of the sweep, LO..HI or a list (default {','.join(map(str, ACC_WIDTHS))})",
    )
    parser.add_argument(
        "--precision-widths",
        default=",".join(map(str, PRECISION_WIDTHS)),
        help="widths of the w_bits/a_bits sweeps (default " + ",".join(map(str, PRECISION_WIDTHS)) + ")",
    )
    parser.add_argument(
        "--precision-sweep",
        choices=PRECISION_SCOPES,
        default="primary",
        help="which models get the w_bits/a_bits sweeps: the manifest's primary model (default), all, none",
    )
    parser.add_argument(
        "--threshold",
        type=finite_float(0.0, 1.0),
        default=0.99,
        help="top-1 agreement a width must keep to count as safe (default 0.99)",
    )
    add_executor_arguments(parser, what="models and sweeps")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="keep only the Markdown pages and PNGs (e.g. reports/example/, which is kept in git)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    data = args.data
    if data is None and os.environ.get("CIFAR10_DIR"):
        data = Path(os.environ["CIFAR10_DIR"])
    config = DemoConfig(
        out=args.out,
        models=tuple(args.models) if args.models else None,
        bundles_dir=args.bundles,
        data=data,
        test_images=args.test_images,
        **({"hw": tuple(load_hw_config(p) for p in args.hw)} if args.hw else {}),
        sim_images=args.sim_images,
        sweep_images=args.sweep_images,
        acc_widths=tuple(parse_range(args.acc_widths, "acc_bits")),
        precision_widths=tuple(parse_range(args.precision_widths, "w_bits")),
        precision_scope=args.precision_sweep,
        threshold=args.threshold,
        executor=executor_from_args(args),
        resume=args.resume,
        progress=not args.no_progress,
        markdown_only=args.markdown_only,
        force=args.force,
    )
    result = run_demo(config)
    for s in result.summaries:
        agree = s.get("top1_agreement")
        print(
            f"  {s['name']:<14} agreement {100 * agree:5.1f} %  "
            + "  ".join(f"{h.label} {s[f'latency_us@{h.label}']:.0f} us" for h in config.hw)
            + f"  -> {config.out / s['name'] / 'report.html'}"
        )
    print(f"demo of {len(result.summaries)} models in {result.seconds:.0f} s")
    html = "" if config.markdown_only else f" (and {result.index.with_suffix('.html')})"
    print(f"index: {result.index}{html}")
    return 0
