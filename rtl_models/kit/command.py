"""``python -m rtl_models.check --dut dut.yaml``: a network's layers, or vector sets, through your design.

Place in the flow: the command-line edge of the kit (rtl_models/check.py hands over when ``--dut``
is given). It reads the description (``rtl_models.kit.spec``), makes the work items of the chosen
layers of ``--bundle`` for one image (``rtl_models.kit.work``) or of ``hwsim vectors`` directories,
adds ``--random`` stress items, builds and runs (``rtl_models.kit.runner``) and prints the verdict.
Exit status: 0 every output equal (and cycles within the model where enforced), 1 a mismatch, a
hang or an enforced cycle difference, 2 bad input (the description, a port the design lacks, codes
that do not fit, a build failure).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from hwsim.errors import UserError
from rtl_models.kit.runner import KIT_TEST_MODULE, build, judge, run_items
from rtl_models.kit.spec import load_spec
from rtl_models.kit.work import LayerWork, layer_work, random_items, tiles

# --image and --seed are shared with --network (rtl_models/network.py), with the same meaning
KIT_OPTIONS = ("bundle", "layer", "rows", "stress", "random", "test_module")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "your design through the verification kit (docs/rtl.md, 'Your RTL in 40 lines')"
    )
    g.add_argument("--dut", type=Path, help="the YAML that describes your design (ports, protocol, widths)")
    g.add_argument("--bundle", type=Path, help="with --dut: the network whose layers become work items")
    g.add_argument(
        "--layer", action="append", help="with --dut: a MAC layer (repeat, or comma-separate; default: all)"
    )
    g.add_argument("--rows", type=int, help="with --dut: only the first ROWS rows of each layer's GEMM")
    g.add_argument(
        "--stress", action="store_true", help="with --dut: random valid/ready pauses and idle gaps"
    )
    g.add_argument(
        "--random", type=int, default=0, metavar="N", help="with --dut: N more items of random codes"
    )
    g.add_argument("--test-module", default=KIT_TEST_MODULE, help="with --dut: your own cocotb test module")


def misplaced(args: argparse.Namespace) -> list[str]:
    """Kit options given without ``--dut``."""
    defaults = {"stress": False, "random": 0, "test_module": KIT_TEST_MODULE}
    return [
        f"--{k.replace('_', '-')}" for k in KIT_OPTIONS if getattr(args, k) not in (None, defaults.get(k))
    ]


def main_kit(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.dut)
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
        works: list[LayerWork] = []
        items = []
        if args.bundle is not None:
            if args.vectors:
                raise UserError("--bundle or vector directories, not both")
            from hwsim.bundle import load_bundle
            from hwsim.vectors import choose_image

            bundle = load_bundle(args.bundle)
            image = choose_image(bundle, args.image or 0)
            names = [x for arg in args.layer for x in arg.split(",")] if args.layer else None
            names = names or [n.name for n in bundle.mac_nodes]
            for name in names:
                works.append(layer_work(bundle, name.strip(), image, spec.gemm, args.rows, len(items)))
                items += works[-1].items
        elif args.vectors:
            from hwsim.vectors import read_vectors

            for d in args.vectors:
                vs = read_vectors(d)
                made = tiles(vs.a, vs.w, spec.gemm, vs.name, len(items))
                items += made
        else:
            raise UserError(
                "--dut needs --bundle BUNDLE (its layers) or vector directories of `hwsim vectors`"
            )
        extra = random_items(spec.gemm, args.random, np.random.default_rng(seed), first_index=len(items))
        print(
            f"{spec.top} on {args.sim}: {len(items) + len(extra)} work items, stress "
            f"{'on' if args.stress else 'off'}, seed {seed}",
            flush=True,
        )
        build_dir = build(spec, args.sim)
        record = run_items(
            spec,
            items + extra,
            args.sim,
            build_dir,
            stress=args.stress,
            seed=seed,
            test_module=args.test_module,
        )
        if record.kind == "ports":
            raise UserError(f"{args.dut}: {record.failure}")
        loose = [] if works else items
        report = judge(spec, works, loose + extra, record, args.sim, seed, args.stress)
    except UserError as err:
        print(f"rtl_models.check: error: {err}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.passed else 1
