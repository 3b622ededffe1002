"""QONNX import speed: wall time of `hwsim import-qonnx` on a ResNet20-shaped Brevitas QONNX file vs
qonnx's own ``execute_onnx`` over the same images.

Place in the flow: measures hwsim.interop.qonnx_import (model.onnx -> bundle with a qonnx reference)
against what a user would run instead to get qonnx's outputs: load the file with qonnx's
``ModelWrapper``, clean it up (``cleanup_model``) and ``execute_onnx`` it on the same reference batch
(and, for ``--data``, on the whole test split, in batches). The import's figure includes its
reference batch (qonnx's full execution context, which it needs for the per-tensor codes) and, with
``--data``, qonnx's classification of the whole test split. The model is the random-weight
ResNet20 of qat/brevitas_models.py (4-bit per-channel weights, 4-bit activations, 8-bit
first and last layers), exported with ``brevitas.export.export_qonnx``; speed does not depend on
trained values. Without CIFAR10_DIR (or ``--data``) only the run without data is measured.
Prints a Markdown table for docs/performance.md.

    .venv/bin/python benchmarks/bench_qonnx_import.py [--data DIR] [--images 8] [--rounds 3]
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

from hwsim.cifar10 import CIFAR10_MEAN, CIFAR10_STD

MEAN, STD = CIFAR10_MEAN, CIFAR10_STD


def _normalize(images: np.ndarray) -> np.ndarray:
    from hwsim.interop.qonnx_import import normalize

    return normalize(images, MEAN, STD)


def qonnx_baseline(path: Path, batches: list[tuple[np.ndarray, bool]]) -> None:
    """Load and clean up ``path`` with qonnx, then ``execute_onnx`` each ``(batch, full context)``."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.util.cleanup import cleanup_model

    base = cleanup_model(ModelWrapper(str(path)))
    inp = base.graph.input[0].name
    models = {}
    for x, full in batches:
        if len(x) not in models:
            models[len(x)] = cleanup_model(base.transform(ChangeBatchSize(len(x))))
        execute_onnx(models[len(x)], {inp: x}, return_full_exec_context=full)


def timed(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Wall seconds of each function per round; rounds run the functions in turn (same load on each)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("CIFAR10_DIR") or None)
    parser.add_argument("--images", type=int, default=8, help="reference batch (the import's default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median kept)")
    args = parser.parse_args()

    import torch

    from hwsim.cifar10 import load_cifar10, synthetic_cifar10
    from hwsim.cli import main as hwsim_main
    from qat import brevitas_models

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        path = brevitas_models.export(brevitas_models.build("resnet20"), tmp / "resnet20.onnx")
        count = [0]
        norm = ["--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))]

        def import_cli(*extra: str) -> Callable[[], None]:
            def run() -> None:
                count[0] += 1
                argv = ["import-qonnx", str(path), "--out", str(tmp / f"b{count[0]}"), *norm]
                argv += ["--images", str(args.images), *extra]
                if hwsim_main(argv) != 0:
                    raise SystemExit("hwsim import-qonnx failed")

            return run

        ref_batch = _normalize(synthetic_cifar10(args.images, seed=0)[0])
        fns: dict[str, Callable[[], None]] = {
            "qonnx execute_onnx, reference batch": lambda: qonnx_baseline(path, [(ref_batch, True)]),
            "hwsim import-qonnx (synthetic reference batch)": import_cli(),
        }
        test_images = 0
        if args.data is not None:
            images, _ = load_cifar10(args.data, "test")
            test_images = len(images)
            batches = [(_normalize(images[: args.images]), True)]
            batches += [(_normalize(images[i : i + 256]), False) for i in range(0, len(images), 256)]
            fns["qonnx execute_onnx, reference batch + test split"] = lambda: qonnx_baseline(path, batches)
            fns["hwsim import-qonnx --data (+ test split top-1)"] = import_cli("--data", str(args.data))
        times = timed(fns, args.rounds)

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import qonnx

    print()
    print(
        f"Machine: {cpu}, {os.cpu_count()} cores (load average {load:.1f} at the end); "
        f"qonnx {getattr(qonnx, '__version__', '?')}, numpy {np.__version__}; reference batch "
        f"{args.images} images; test split {test_images or '-'} images; median of {args.rounds} "
        "interleaved rounds (min..max)."
    )
    print()
    print("| run | wall s (median) | min..max | vs qonnx alone |")
    print("|---|---:|---:|---:|")
    names = list(times)
    for i, name in enumerate(names):
        med = statistics.median(times[name])
        base = statistics.median(times[names[i - 1]]) if name.startswith("hwsim") else med
        ratio = "baseline" if not name.startswith("hwsim") else f"{med / base:.2f}x"
        print(f"| {name} | {med:.2f} | {min(times[name]):.2f}..{max(times[name]):.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
