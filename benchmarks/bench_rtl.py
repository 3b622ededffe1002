"""Benchmark: simulated cycles/s of array_top (16x16) on a ResNet20 tile, Icarus vs Verilator, one run.

Place in the flow: measures rtl_models/ on both simulators with the testbench the tests use
(rtl_models/tb_array_top.py, which times the run from start to done); prints the figures for the
"RTL simulation speed" section of docs/performance.md, with Verilator's speed as a ratio to
Icarus's measured in the same run. Usage: ``.venv/bin/python benchmarks/bench_rtl.py [--rows M]``.
"""

from __future__ import annotations

import argparse
import json
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
    import importlib.util

    spec = importlib.util.spec_from_file_location("bundles", REPO / "tests" / "hwsim" / "bundles.py")
    assert spec is not None and spec.loader is not None
    bundles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundles)
    from hwsim.emulator import emulate
    from hwsim.gemm import im2col, weight_matrix
    from hwsim.ir import load_bundle

    bundle = load_bundle(bundles.random_resnet20_bundle(work / "bundle", w_bits=4, a_bits=4, seed=3))
    image = np.random.default_rng(5).integers(-127, 128, size=(1, 3, 32, 32))
    tensors = emulate(bundle, image).tensors
    node = bundle.node(LAYER)
    return im2col(tensors[node.input], node)[0][:rows], weight_matrix(node)[0], bundle.tensors[node.input].fmt


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

    hw = load_hw_config(REPO / "configs" / "hw" / "ws_16x16.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        a, w, a_fmt = resnet20_tile(args.rows, work)
        vs = make_vector_set(a, w, hw, a_fmt=a_fmt.int_format, w_fmt=IntFormat(4, True), name="tile")
        vectors = write_vectors(vs, work / "vectors")
        params = {**vs.parameters, "ADDR_BITS": vs.addr_bits}
        m, k, n = vs.shape
        print(
            f"# {LAYER} tile M={m} K={k} N={n} on 16x16 (a4w4, acc{hw.pe.acc_bits} {hw.pe.overflow}): "
            f"{vs.cycles} cycles; {platform.machine()}, Python {sys.version.split()[0]}"
        )
        rates = {}
        for sim in ("icarus", "verilator"):
            dump = work / sim
            dump.mkdir()
            t0 = time.perf_counter()
            result = run_testbench(
                "array_top",
                sim,
                params,
                "tb_array_top",
                testcase="array_top_vectors",
                config={"vectors": [str(vectors)], "dump": str(dump)},
                name="bench",
            )
            total = time.perf_counter() - t0
            if not result.passed:
                print(result.summary())
                return 1
            timing = json.loads((dump / "tile.timing.json").read_text())
            rates[sim] = timing["cycles_per_second"]
            print(
                f"{sim:9s}: {timing['cycles']} cycles in {timing['run_seconds']:.2f} s from start to done = "
                f"{timing['cycles_per_second']:,.0f} simulated cycles/s; "
                f"build + load + run + read-back {total:.1f} s"
            )
        print(f"verilator / icarus speed ratio: {rates['verilator'] / rates['icarus']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
