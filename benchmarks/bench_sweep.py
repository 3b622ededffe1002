"""Sweep speed: the w_bits + a_bits sweep of a ResNet20 (every layer, widths 2..8) against one emulator pass.

Place in the flow: measures hwsim.sweep.sweep_bundle (what ``hwsim sweep`` runs) on a random
ResNet20-shaped bundle (hwsim.bundle.synthetic, a8w8: every width below 8 changes every layer's
codes, so nearly every point is re-run), with its baseline from the same run: one full pass of
hwsim.emulator over the same images. Times are wall-clock; CPU seconds (this process and its
workers) are printed too, since they depend less on what else shares the machine. Prints the
figures recorded in docs/performance.md ("MAC-array model").

    .venv/bin/python benchmarks/bench_sweep.py [--images 256] [--range 2..8] [--jobs 2,1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import cpu_model

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.emulator import emulate
from hwsim.sweep import SweepResult, default_jobs, parse_range, sweep_bundle

REPO = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """``(wall s, CPU s of this process and its finished children, result)`` of one call."""
    before, start = os.times(), time.perf_counter()
    result = fn()
    wall, after = time.perf_counter() - start, os.times()
    cpu = sum(after[:4]) - sum(before[:4])
    return wall, cpu, result


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--range", dest="widths", default="2..8")
    parser.add_argument(
        "--jobs",
        default=str(default_jobs()),
        help="worker counts to time, comma-separated (default: every core; e.g. 2,1 adds a serial run)",
    )
    args = parser.parse_args()
    widths = parse_range(args.widths)
    job_counts = [int(v) for v in args.jobs.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        path = random_resnet20_bundle(Path(tmp) / "rn20", 8, 8, seed=0, reference_images=args.images)
        bundle = load_bundle(path)
    codes = bundle.reference.input_codes
    layers = len(bundle.mac_nodes)
    loads = [load()]
    print(
        f"ResNet20 (random a8w8): {layers} MAC layers, {bundle.total_macs / 1e6:.1f} M MACs per image; "
        f"{codes.shape[0]} images; widths {widths[0]}..{widths[-1]}; load average {loads[0]:.1f}",
        flush=True,
    )

    def full_pass() -> object:
        return emulate(bundle, codes, keep=False)

    def sweep(jobs: int) -> list[SweepResult]:
        return [sweep_bundle(bundle, what, widths, codes, jobs=jobs) for what in ("w_bits", "a_bits")]

    full_pass()  # warm up
    passes: list[tuple[float, float]] = []
    runs: list[tuple[int, float, float, int, list[SweepResult]]] = []
    for jobs in job_counts:
        wall, cpu, _ = timed(full_pass)
        passes.append((wall, cpu))
        wall, cpu, results = timed(lambda jobs=jobs: sweep(jobs))
        assert isinstance(results, list)
        points = sum(p.changed for r in results for p in r.points)
        runs.append((jobs, wall, cpu, points, results))
        loads.append(load())
        print(f"jobs {jobs}: {wall:.1f} s wall, {cpu:.1f} s CPU, {points} re-run points", flush=True)
    wall, cpu, _ = timed(full_pass)
    passes.append((wall, cpu))
    loads.append(load())
    pass_wall = statistics.median(w for w, _ in passes)
    pass_cpu = statistics.median(c for _, c in passes)
    first = runs[0][4]
    for jobs, *_, results in runs[1:]:
        same = all(a.points == b.points for a, b in zip(first, results, strict=True))
        print(f"results with jobs {jobs} equal those with jobs {runs[0][0]}: {same}")
        if not same:
            return 1

    cpu_name = cpu_model()
    print()
    print(
        f"Machine: {cpu_name}, {os.cpu_count()} cores, numpy {np.__version__}; load average "
        f"{' -> '.join(f'{v:.1f}' for v in loads)} (start, after each run)."
    )
    print(
        f"Baseline: one full emulator pass on {codes.shape[0]} images: {pass_wall:.2f} s wall, "
        f"{pass_cpu:.2f} s CPU (median of {len(passes)}, taken around the sweeps)."
    )
    print()
    print(
        "| sweep w_bits + a_bits, all layers | re-run points | wall | CPU | wall / full pass | goal 300 s |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for jobs, wall, cpu, points, _ in runs:
        print(
            f"| {jobs} worker{'s' if jobs > 1 else ''} | {points} | {wall:.1f} s | {cpu:.1f} s | "
            f"{wall / pass_wall:.1f}x | {'met' if wall <= 300 else 'missed'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
