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
import dataclasses
import random
import sys
from pathlib import Path

import numpy as np

from hwsim.errors import UserError
from hwsim.gemm import gemm_exact
from rtl_models.kit.runner import KIT_TEST_MODULE, build_and_run, judge
from rtl_models.kit.spec import load_spec
from rtl_models.kit.stress import DEFAULT_PAUSE, Stress
from rtl_models.kit.work import LayerWork, gemm_work, layer_work, random_items

# --image and --seed are shared with --network (rtl_models/network.py), with the same meaning
KIT_OPTIONS = ("bundle", "layer", "rows", "stress", "pause_valid", "pause_ready", "random", "test_module")


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
        "--pause-valid",
        type=float,
        metavar="P",
        help=f"with --stress: how often an input holds its beat back, per cycle (default {DEFAULT_PAUSE})",
    )
    g.add_argument(
        "--pause-ready",
        type=float,
        metavar="P",
        help=f"with --stress: how often the output's ready is low, per cycle (default {DEFAULT_PAUSE})",
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
        if args.sources:  # the same description on other files (your design's next revision, say)
            missing = [str(s) for s in args.sources if not s.is_file()]
            if missing:
                raise UserError(f"--sources {', '.join(missing)}: no such file")
            spec = dataclasses.replace(spec, sources=tuple(s.resolve() for s in args.sources))
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
        if (args.pause_valid is not None or args.pause_ready is not None) and not args.stress:
            raise UserError("--pause-valid and --pause-ready set how hard --stress pushes: add --stress")
        stress = Stress(
            args.stress,
            seed,
            DEFAULT_PAUSE if args.pause_valid is None else args.pause_valid,
            DEFAULT_PAUSE if args.pause_ready is None else args.pause_ready,
        )
        if args.bundle is None and (args.layer or args.rows is not None):
            raise UserError("--layer and --rows choose layers of --bundle BUNDLE: give the bundle")
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

            for d in args.vectors:  # the set's GEMM at the design's accumulator (its own may differ)
                vs = read_vectors(d)
                if vs.carry is not None:
                    raise UserError(
                        f"{d}: an accumulating set (Y = C + A @ W, carry_obuf.hex); a described design's "
                        "tiles start from zero: check it on array_top with `rtl_models.check` without --dut"
                    )
                expected = gemm_exact(vs.a, vs.w, spec.gemm.acc, spec.gemm.overflow).acc
                works.append(gemm_work(vs.name, vs.a, vs.w, expected, spec.gemm, len(items)))
                items += works[-1].items
        else:
            raise UserError(
                "--dut needs --bundle BUNDLE (its layers) or vector directories of `hwsim vectors`"
            )
        extra = random_items(spec.gemm, args.random, np.random.default_rng(seed), first_index=len(items))
        print(
            f"{spec.top} on {args.sim}: {len(items) + len(extra)} work items, {stress.describe()}", flush=True
        )
        record = build_and_run(spec, items + extra, args.sim, stress=stress, test_module=args.test_module)
        if record.kind == "ports":
            raise UserError(f"{args.dut}: {record.failure}")
        if not record.ran_kit:  # your own testbench without the kit's items: cocotb's verdict
            verdict = "PASS" if record.result.passed else "FAIL"
            print(f"{verdict} on {args.sim}: {args.test_module} on {spec.top}: {record.result.summary()}")
            return 0 if record.result.passed else 1
        report = judge(spec, works, extra, record, args.sim, stress)
    except UserError as err:
        print(f"rtl_models.check: error: {err}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.passed else 1
