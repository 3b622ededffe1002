"""Execution backends: one ResNet20 w_bits + a_bits sweep serial, on a local pool and on Dask, in one run.

Place in the flow: measures hwsim.execute (what ``hwsim sweep --executor ...`` runs) on one sweep
of a random ResNet20-shaped a8w8 bundle (hwsim.bundle.synthetic) three ways, with the serial run as
the baseline a user would otherwise run: ``serial`` (one process), ``local`` (a process pool of
``--workers``) and ``dask`` (a Dask LocalCluster of ``--workers`` single-threaded worker processes
on 127.0.0.1; its start-up also timed apart). Checks that every backend's points equal the serial
ones, then prints the table in docs/scale-out.md: wall time, speed-up over serial, and Dask's cost
per task over the local pool.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_execute.py \\
        [--images 128] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_model

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.execute import ExecutorConfig, dask_client
from hwsim.sweep import SweepResult, sweep_bundle

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=REPO / "hwsim" / "pretrained" / "bundles" / "pact_a4w4"
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # a8w8: every width below 8 changes every layer
        bundle = load_bundle(
            random_resnet20_bundle(Path(tmp) / "rn20", 8, 8, seed=0, reference_images=args.images)
        )
    assert bundle.reference is not None
    codes = bundle.reference.input_codes
    widths = list(range(2, 9))
    print(f"ResNet20 (random a8w8), {codes.shape[0]} images, widths 2..8, w_bits + a_bits")

    def sweep(config: ExecutorConfig) -> tuple[float, list[SweepResult]]:
        start = time.perf_counter()
        results = [
            sweep_bundle(bundle, what, widths, codes, executor=config) for what in ("w_bits", "a_bits")
        ]
        return time.perf_counter() - start, results

    start = time.perf_counter()
    with dask_client(ExecutorConfig(kind="dask", workers=args.workers)):
        pass
    startup = time.perf_counter() - start
    rows = []
    for label, config in (
        ("serial", ExecutorConfig(kind="serial")),
        (f"local, {args.workers} processes", ExecutorConfig(kind="local", workers=args.workers)),
        (f"dask LocalCluster, {args.workers} workers", ExecutorConfig(kind="dask", workers=args.workers)),
    ):
        wall, results = sweep(config)
        rows.append((label, wall, results))
        print(f"{label}: {wall:.1f} s", flush=True)
        if config.kind == "dask":  # each sweep started its own cluster
            rows.append((f"{label}, the 2 cluster start-ups taken out", wall - 2 * startup, results))
    tasks = sum(p.changed for r in rows[0][2] for p in r.points)
    for label, _, results in rows[1:]:
        if not all(a.points == b.points for a, b in zip(rows[0][2], results, strict=True)):
            print(f"{label}: the points differ from the serial run's")
            return 1
    print()
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, numpy {np.__version__}; "
        f"{tasks} tasks (re-run points)."
    )
    print(f"Dask LocalCluster start-up ({args.workers} workers): {startup:.1f} s, once per command")
    print()
    print("| backend | wall | speed-up over serial | per task |")
    print("|---|---:|---:|---:|")
    serial = rows[0][1]
    for label, wall, _ in rows:
        print(f"| {label} | {wall:.1f} s | {serial / wall:.2f}x | {1000 * wall / tasks:.0f} ms |")
    local, dask = rows[1][1], rows[3][1]
    print()
    print(
        "Dask's cost per task over the local pool: "
        f"{1000 * (dask - local) / tasks * args.workers:+.0f} ms of worker time"
    )
    print("all backends' points equal the serial run's: True")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
