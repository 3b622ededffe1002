"""Emulator speed: images/s of hwsim.emulator against PyTorch inference, at the same thread counts.

Place in the flow: measures hwsim.emulator (bundle -> integers) against its baselines in the same
run, on the same CPU and the same random images, at 1 thread and at every core:

* PyTorch float inference of the project's ResNet20 (``qat.models.build_model("resnet20")``,
  eval mode, no grad);
* PyTorch inference of the bundled QAT checkpoints (what ``qat eval`` runs:
  ``qat.checkpoint.load_model`` on each bundle's ``checkpoint.pt``, images normalized as its
  checkpoint says);
* ``hwsim.emulator.emulate`` on the same bundles (``threads`` = the thread count; BLAS on one
  thread inside each).

PyTorch gets the thread count through ``torch.set_num_threads`` and threadpoolctl. Timing rounds
interleave every function, so a load from elsewhere on the machine hits all of them alike; the
best of the rounds is kept. With ``--previous DIR`` (the previous commit's tree, e.g.
``git archive HEAD | tar -x -C DIR``), it also times ``hwsim demo`` (every bundled model, no data
set) and a 256-image w_bits + a_bits sweep of a random ResNet20 (a8w8, widths 2..8) with this
tree and with DIR, interleaved, and prints the ratio. Prints Markdown tables for
docs/performance.md. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from its environment (it
re-executes itself without them), so that OpenBLAS picks the kernel of the CPU it runs on.

    .venv/bin/python benchmarks/bench_emulator.py [--images 512] [--rounds 3] [--previous /tmp/prev]
"""

from __future__ import annotations

import os
import sys

_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if __name__ == "__main__" and any(name in os.environ for name in _UNSET):
    os.execve(
        sys.executable, [sys.executable, *sys.argv], {k: v for k, v in os.environ.items() if k not in _UNSET}
    )

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import cpu_model  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from hwsim.bundle import load_bundle, quantize_images  # noqa: E402
from hwsim.emulator import available_cores, emulate  # noqa: E402
from hwsim.pretrained import BUNDLES_DIR  # noqa: E402
from qat.checkpoint import load_model  # noqa: E402
from qat.data import Normalization  # noqa: E402
from qat.models import build_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# The sweep timed with --previous, run by each tree's own code (a fresh interpreter per run).
SWEEP_SCRIPT = """
import sys, tempfile, time
from pathlib import Path
import numpy as np
from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.sweep import sweep_bundle, default_jobs
with tempfile.TemporaryDirectory() as tmp:
    bundle = load_bundle(random_resnet20_bundle(Path(tmp) / "rn20", 8, 8, seed=0))
codes = np.random.default_rng(0).integers(-127, 128, size=(256, 3, 32, 32))
start = time.perf_counter()
for what in ("w_bits", "a_bits"):
    sweep_bundle(bundle, what, list(range(2, 9)), codes, jobs=default_jobs())
print(time.perf_counter() - start)
"""


def best_rates(fns: dict[str, Callable[[], None]], images: int, rounds: int) -> dict[str, float]:
    """Images/s of each function: rounds run the functions in turn; the best round of each is kept."""
    times: dict[str, float] = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - start)
    return {name: images / t for name, t in times.items()}


def blas_kernel() -> str:
    """The BLAS libraries numpy and torch loaded, as threadpoolctl names them (with their CPU kernel)."""
    seen = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        text = f"{info.get('internal_api')} {info.get('version') or ''}".strip()
        if info.get("architecture"):
            text += f" ({info['architecture']})"
        if text not in seen:
            seen.append(text)
    return ", ".join(seen) or "unknown"


def run_in(tree: Path, cmd: list[str]) -> tuple[float, str]:
    """``(wall seconds, stdout)`` of ``cmd`` in ``tree``, ``tree`` on PYTHONPATH, without CIFAR10_DIR."""
    env = {k: v for k, v in os.environ.items() if k not in ("CIFAR10_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tree)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} in {tree} failed:\n{done.stderr[-2000:]}")
    return wall, done.stdout


def compare_previous(previous: Path, rounds: int) -> list[tuple[str, float, float]]:
    """``(what, seconds with this tree, seconds with previous)``: the demo and the sweep, best of rounds."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[str, Callable[[Path, int], float]] = {
            "`hwsim demo` (10 models, no data set)": lambda tree, i: run_in(
                tree, [sys.executable, "-m", "hwsim.cli", "demo", "--out", f"{tmp}/demo{i}", "--no-progress"]
            )[0],
            "sweep w_bits + a_bits, 256 images, random ResNet20 a8w8": lambda tree, i: float(
                run_in(tree, [sys.executable, "-c", SWEEP_SCRIPT])[1].split()[-1]
            ),
        }
        for what, run in runs.items():
            now = before = float("inf")
            for i in range(rounds):
                before = min(before, run(previous, 2 * i))
                now = min(now, run(REPO, 2 * i + 1))
                print(f"{what}: this tree {now:.1f} s, previous {before:.1f} s (best so far)", flush=True)
            rows.append((what, now, before))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256, help="PyTorch batch size (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best kept)")
    parser.add_argument("--models", default="pact_a4w4,dorefa_a8w8", help="bundled models (comma-separated)")
    parser.add_argument(
        "--threads",
        default=f"1,{available_cores()}",
        help=f"thread counts, comma-separated (default: 1 and every core, here 1,{available_cores()})",
    )
    parser.add_argument("--previous", type=Path, help="the previous commit's tree: also time demo and sweep")
    args = parser.parse_args()
    thread_counts = list(dict.fromkeys(int(v) for v in args.threads.split(",")))
    models = args.models.split(",")

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    pixels = torch.from_numpy(images)
    fns: dict[str, Callable[[], None]] = {}

    def torch_run(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for start in range(0, args.images, args.batch):
                    model(x[start : start + args.batch])

        return run

    float_model = build_model("resnet20").eval()
    fns["PyTorch float ResNet20"] = torch_run(float_model, Normalization().apply(pixels))
    emulators: dict[str, Callable[[int], None]] = {}
    for name in models:
        directory = BUNDLES_DIR / name
        bundle = load_bundle(directory)
        qat_model, meta = load_model(directory / "checkpoint.pt")
        fns[f"PyTorch QAT {name} (`qat eval`)"] = torch_run(
            qat_model, meta["normalization_obj"].apply(pixels)
        )
        codes = quantize_images(images, bundle)
        emulators[name] = lambda threads, bundle=bundle, codes=codes: emulate(
            bundle, codes, keep=False, threads=threads
        )

    results: dict[int, dict[str, float]] = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        calls = dict(fns)
        for name, emu in emulators.items():
            calls[f"hwsim emulate {name}"] = lambda emu=emu, threads=threads: emu(threads)
        with threadpool_limits(limits=threads):
            for fn in calls.values():
                fn()  # warm up
            results[threads] = best_rates(calls, args.images, args.rounds)
        print(
            f"{threads} thread(s): " + ", ".join(f"{k} {v:.0f}" for k, v in results[threads].items()),
            flush=True,
        )

    previous = compare_previous(args.previous, args.rounds) if args.previous else []

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print()
    print(
        f"Machine: {cpu_model()}, {available_cores()} cores; BLAS {blas_kernel()}; numpy {np.__version__}, "
        f"torch {torch.__version__}; {args.images} random images, PyTorch batch {args.batch}; best of "
        f"{args.rounds} interleaved rounds; load average {load:.1f} at the end."
    )
    print()
    heads = [f"{t} thread{'s' if t > 1 else ''}" for t in thread_counts]
    print("| images/s | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    for what in results[thread_counts[0]]:
        print(f"| {what} | " + " | ".join(f"{results[t][what]:,.0f}" for t in thread_counts) + " |")
    float_name = "PyTorch float ResNet20"
    for name in models:
        emu, qat = f"hwsim emulate {name}", f"PyTorch QAT {name} (`qat eval`)"
        for base, label in ((float_name, "PyTorch float"), (qat, "PyTorch QAT")):
            ratios = " | ".join(f"{results[t][emu] / results[t][base]:.2f}x" for t in thread_counts)
            print(f"| emulator {name} / {label} | {ratios} |")
    if len(thread_counts) > 1:
        lo, hi = thread_counts[0], thread_counts[-1]
        for name in models:
            emu = f"hwsim emulate {name}"
            print(f"| emulator {name}: {hi} threads / {lo} | {results[hi][emu] / results[lo][emu]:.2f}x | |")
    if previous:
        print()
        print("| wall time | this tree | previous commit | speed-up |")
        print("|---|---:|---:|---:|")
        for what, now, before in previous:
            print(f"| {what} | {now:.1f} s | {before:.1f} s | {before / now:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
