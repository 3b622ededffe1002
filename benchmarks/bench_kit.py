"""Benchmark: the verification kit's cost against the hand-written testbench, same array, same sets.

Place in the flow: measures ``rtl_models.kit`` (what ``python -m rtl_models.check`` runs) against
``rtl_models/tb_array_top.py`` (the testbench written for array_top's ports alone: what a user
would otherwise write) on the same GEMM vector sets of array_top, Verilator, warm builds; one run,
the ratio is the figure (the machine is shared). Prints wall seconds of each simulation run and
the kit's time as a multiple of the testbench's, for docs/performance.md.
Usage: ``.venv/bin/python benchmarks/bench_kit.py [--sets N] [--sim verilator|icarus]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=8, help="vector sets of M=64, K=144, N=16 (default 8)")
    parser.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    args = parser.parse_args()
    from hwsim.fixed import IntFormat
    from hwsim.hwconfig import load_hw_config
    from hwsim.vectors import address_bits, make_vector_set, write_vectors
    from rtl_models.kit.array_top import array_top_spec, set_item
    from rtl_models.kit.runner import NO_STRESS, build, judge, run_items
    from rtl_models.sim import run_testbench

    hw = load_hw_config(REPO / "configs" / "hw" / "ws_8x8.yaml")
    rng = np.random.default_rng(1)
    a_fmt, w_fmt = IntFormat(4, False), IntFormat(5, True)
    sets = [
        make_vector_set(
            rng.integers(0, 15, (64, 144), endpoint=True),
            rng.integers(-15, 15, (144, 16), endpoint=True),
            hw,
            a_fmt=a_fmt,
            w_fmt=w_fmt,
            name=f"s{i}",
        )
        for i in range(args.sets)
    ]
    params = {**sets[0].parameters, "ADDR_BITS": max(address_bits(*vs.shape, vs.parameters) for vs in sets)}
    cycles = sum(vs.cycles for vs in sets)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [str(write_vectors(vs, Path(tmp) / vs.name)) for vs in sets]
        spec = array_top_spec(params)
        items = [set_item(vs, i) for i, vs in enumerate(sets)]
        build_dir = build(spec, args.sim, Path(tmp) / "kit")
        times = {}
        for _ in range(2):  # the first round warms the testbench's build; the second is timed
            t = time.perf_counter()
            result = run_testbench(
                "array_top",
                args.sim,
                params,
                "tb_array_top",
                config={"vectors": dirs},
                testcase="array_top_vectors",
            )
            times["testbench"] = time.perf_counter() - t
            assert result.passed, result.summary()
            t = time.perf_counter()
            record = run_items(spec, items, args.sim, build_dir)
            times["kit"] = time.perf_counter() - t
            report = judge(spec, [], items, record, args.sim, NO_STRESS)
            assert report.passed, report.failure
    one, five, _ = os.getloadavg()
    print(
        f"{args.sets} vector sets (M=64, K=144, N=16) on an 8x8 ws array_top, {cycles} cycles, {args.sim}, "
        f"warm builds; load average {one:.1f}/{five:.1f} on {os.cpu_count()} cores"
    )
    print(f"  tb_array_top (hand-written for these ports): {times['testbench']:.2f} s")
    print(
        f"  verification kit (rtl_models.check):         {times['kit']:.2f} s "
        f"({times['kit'] / times['testbench']:.2f}x the testbench; simulation runs, builds done before)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
