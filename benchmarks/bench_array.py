"""Benchmark of the MAC-array model on ResNet20: analytic latency and the value-computing array run.

Prints the figures recorded in docs/performance.md ("MAC-array model"); every speed is also given
as a ratio to a baseline measured in the same run. Run from the repository root:

    .venv/bin/python benchmarks/bench_array.py

The bundle is a random ResNet20 (hwsim.bundle.synthetic, a8w8), so the numbers do not depend on a
trained checkpoint. The bit-width sweep has its own benchmark, benchmarks/bench_sweep.py.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.emulator import emulate
from hwsim.gemm import im2col, weight_matrix
from hwsim.hwconfig import load_hw_config
from hwsim.mapping import fold_plan, gemm_shape, layer_from_node
from hwsim.simulate import timing_rows
from hwsim.systolic import execute_gemm, run_gemm_cycles
from hwsim.timing import ZERO, fold_cycles

REPO = Path(__file__).resolve().parents[1]

GOLDENS = REPO / "tests" / "hwsim" / "goldens" / "scalesim_resnet20.csv"


def best_of(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = random_resnet20_bundle(Path(tmp) / "rn20", w_bits=8, a_bits=8, seed=0, reference_images=1)
        bundle = load_bundle(path)
    hw = load_hw_config(REPO / "configs" / "hw" / "ws_16x16.yaml")
    macs = bundle.mac_nodes
    print(f"ResNet20 (random a8w8): {len(macs)} MAC layers, {bundle.total_macs / 1e6:.1f} M MACs per image")

    # 1. Analytic latency (cycles + memory) of every layer, against enumerating the folds one by one.
    analytic = best_of(lambda: timing_rows(bundle, hw))

    def enumerate_folds() -> None:
        for node in macs:
            gemm = gemm_shape(layer_from_node(node, bundle))
            total = ZERO
            for fold in fold_plan(gemm, hw.array):
                total = total + fold_cycles(fold, gemm, hw)

    folds = best_of(enumerate_folds)
    scalesim_s = None
    if GOLDENS.is_file():
        with GOLDENS.open() as f:
            runs = {
                row["seconds"]
                for row in csv.DictReader(f)
                if (row["rows"], row["cols"], row["dataflow"]) == ("16", "16", "ws")
            }
        scalesim_s = float(runs.pop()) if runs else None
    print(
        f"analytic latency, all layers, 16x16 ws: {analytic * 1e3:.2f} ms "
        f"(fold enumeration {folds * 1e3:.2f} ms, x{folds / analytic:.1f})"
    )
    if scalesim_s:
        print(
            f"  SCALE-Sim 3.0.0, same network and array (recorded with the goldens): {scalesim_s:.1f} s "
            f"-> x{scalesim_s / analytic:,.0f}"
        )

    # 2. The value-computing array model on one image, all layers, against the emulator on that image.
    codes = bundle.reference.input_codes[:1]
    run = emulate(bundle, codes)
    operands = [(im2col(run.tensors[n.input], n), weight_matrix(n)) for n in macs]
    array = best_of(lambda: [execute_gemm(a, w, hw) for a, w in operands], repeat=3)
    emu = best_of(lambda: emulate(bundle, codes, keep=False), repeat=3)
    print(
        f"array model (fold executor, values + overflow + cycles), 1 image, all layers: {array:.2f} s "
        f"(emulator {emu:.2f} s, ratio x{array / emu:.1f})"
    )
    # The register-level model, one clock at a time, on the smallest conv's first 32 output pixels.
    node = min((n for n in macs if n.op == "conv2d"), key=lambda n: bundle.macs(n.name))
    a, w = operands[macs.index(node)]
    part = a[0][:32]
    start = time.perf_counter()
    tile = run_gemm_cycles(part, w[0], hw)
    reg = time.perf_counter() - start
    per_cycle = reg / tile.total_cycles
    fast = best_of(lambda: execute_gemm(part, w[0], hw), repeat=3)
    total_cycles = sum(r.array_cycles for r in timing_rows(bundle, hw))
    print(
        f"register-level model: {per_cycle * 1e6:.0f} us per cycle ({node.name}, 32 pixels: {reg:.2f} s, "
        f"fold executor {fast * 1e3:.1f} ms, x{reg / fast:.0f}); whole network would take "
        f"~{per_cycle * total_cycles:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
