"""Benchmark: simulated cycles/s of array_top (16x16) on a ResNet20 tile, Icarus vs Verilator, one run.

Place in the flow: measures rtl_models/ on both simulators with the testbench the tests use
(rtl_models/tb_array_top.py, which times the run from start to done in wall and CPU seconds of
the simulator process); prints the figures for the "RTL simulation speed" section of
docs/performance.md, with Verilator's speed as a ratio to Icarus's measured in the same run, and
Icarus on an 8x8 array with the same tile as the per-PE baseline (PE-cycles per CPU second: a
simulator whose cost grows with the PE count keeps this figure constant). CPU seconds are the
figure to compare on a shared machine. Usage: ``.venv/bin/python benchmarks/bench_rtl.py [--rows M]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LAYER = "layer1.0.relu1.conv"


def resnet20_tile(rows: int, work: Path) -> tuple[np.ndarray, np.ndarray, object]:
    """The first ``rows`` output pixels of ResNet20's stage-1 conv (a4w4, K=144, N=16) as a GEMM tile."""
    from hwsim.bundle import load_bundle
    from hwsim.bundle.synthetic import random_resnet20_bundle
    from hwsim.emulator import emulate
    from hwsim.gemm import im2col, weight_matrix

    bundle = load_bundle(random_resnet20_bundle(work / "bundle", w_bits=4, a_bits=4, seed=3))
    image = np.random.default_rng(5).integers(-127, 128, size=(1, 3, 32, 32))
    tensors = emulate(bundle, image).tensors
    node = bundle.node(LAYER)
    return im2col(tensors[node.input], node)[0][:rows], weight_matrix(node)[0], bundle.tensors[node.input].fmt


def load() -> str:
    """The machine's load average (the other jobs sharing its cores) and its core count."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1024, help="output pixels (M) of the tile (default 1024: the whole layer)"
    )
    args = parser.parse_args()
    from hwsim.fixed import IntFormat
    from hwsim.hwconfig import load_hw_config
    from hwsim.vectors import make_vector_set, write_vectors
    from rtl_models.sim import run_testbench

    hw_dir = REPO / "configs" / "hw"
    runs = [("icarus", "ws_16x16.yaml"), ("verilator", "ws_16x16.yaml"), ("icarus", "ws_8x8.yaml")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        a, w, a_fmt = resnet20_tile(args.rows, work)
        print(f"# {LAYER} tile, a4w4; {platform.machine()}, Python {sys.version.split()[0]}, {load()}")
        rates: dict[tuple[str, str], float] = {}
        for sim, hw_file in runs:
            hw = load_hw_config(hw_dir / hw_file)
            size = f"{hw.array.rows}x{hw.array.cols}"
            vs = make_vector_set(a, w, hw, a_fmt=a_fmt.int_format, w_fmt=IntFormat(4, True), name="tile")
            vectors = write_vectors(vs, work / f"vectors-{size}")
            dump = work / f"{sim}-{size}"
            dump.mkdir()
            t0 = time.perf_counter()
            result = run_testbench(
                "array_top",
                sim,
                {**vs.parameters, "ADDR_BITS": vs.addr_bits},
                "tb_array_top",
                testcase="array_top_vectors",
                config={"vectors": [str(vectors)], "dump": str(dump)},
                name="bench",
            )
            total = time.perf_counter() - t0
            if not result.passed:
                print(result.summary())
                return 1
            t = json.loads((dump / "tile.timing.json").read_text())
            m, k, n = vs.shape
            rates[sim, size] = t["cycles_per_cpu_second"]
            pes = hw.array.rows * hw.array.cols
            print(
                f"{sim:9s} {size:5s} M={m} K={k} N={n} (acc{hw.pe.acc_bits} {hw.pe.overflow}): "
                f"{t['cycles']} cycles, "
                f"start to done {t['run_seconds']:.2f} s wall / {t['run_cpu_seconds']:.2f} s CPU = "
                f"{t['cycles_per_second']:,.0f} cycles/s wall, "
                f"{t['cycles_per_cpu_second']:,.0f} cycles/s CPU, "
                f"{t['cycles_per_cpu_second'] * pes / 1e3:,.0f}k PE-cycles/s CPU; "
                f"build + load + run + read-back {total:.1f} s wall"
            )
        ratio = rates["verilator", "16x16"] / rates["icarus", "16x16"]
        per_pe = (rates["icarus", "16x16"] * 256) / (rates["icarus", "8x8"] * 64)
        print(f"verilator / icarus speed ratio at 16x16 (CPU): {ratio:.1f}x")
        print(f"icarus PE-cycles/s at 16x16 / at 8x8 (CPU): {per_pe:.2f}")
        print(f"# {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
