"""Mixed-precision assignment: ResNet20, 22 layers and 20 activation tensors at widths 2..8, sensitivities
given; how long the program takes to solve and verify, beside the greedy baseline, in one run.

Place in the flow: measures hwsim.assign (what ``hwsim assign --sweeps ...`` runs after reading the
sweep reports). The two sweeps (``w_bits``, ``act_bits``) are run first and not timed, as a user
reuses them; then timed: building the problem (every layer priced at every combination of its
widths), the search (each HiGHS solve plus one whole-network emulation per solution), and the
greedy baseline with its one verification, the cheap alternative a user would otherwise run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_assign.py \\
        [--bundle hwsim/pretrained/bundles/dorefa_a8w8] [--images 256] [--min-agreement 0.99]

Inputs: the CIFAR-10 train split of ``$CIFAR10_DIR`` when set, else the bundle's reference inputs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from machine import cpu_model

from hwsim import assign as A
from hwsim.bundle import load_bundle
from hwsim.commands.simulate import select_inputs
from hwsim.emulator import available_cores
from hwsim.hwconfig import load_hw_config
from hwsim.sweep import sweep_bundle

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "hwsim/pretrained/bundles/dorefa_a8w8")
    parser.add_argument("--hw", type=Path, default=ROOT / "configs/hw/ws_16x16.yaml")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--min-agreement", type=float, default=0.99)
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    data = os.environ.get("CIFAR10_DIR")
    images = args.images if data else min(args.images, bundle.reference.images)
    codes, labels = select_inputs(bundle, images, Path(data) if data else None, images, "train")
    widths = list(range(2, 9))
    t0 = time.perf_counter()
    sweeps = {
        w: sweep_bundle(bundle, w, widths, codes, labels=labels, jobs=available_cores()) for w in A.KINDS
    }
    sweep_s = time.perf_counter() - t0
    hw = load_hw_config(args.hw)

    t0 = time.perf_counter()
    problem = A.build_problem(bundle, hw, sweeps["w_bits"], sweeps["act_bits"])
    build_s = time.perf_counter() - t0
    inputs = A.inputs_for(bundle, codes, labels, None)
    t0 = time.perf_counter()
    result = A.assign(problem, inputs, "energy", args.min_agreement, baselines=False)
    search_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    greedy = A.verify(
        problem,
        inputs,
        "greedy",
        A.greedy(problem, "energy", A.first_noise_budget(problem, args.min_agreement)),
        args.min_agreement,
    )
    greedy_s = time.perf_counter() - t0

    options = sum(len(lo.options) for lo in problem.layers)
    print(f"machine: {cpu_model()}, {available_cores()} cores; bundle {args.bundle.name}, {images} images")
    print(f"units {len(problem.units)}, layer options {options}; sweeps (not timed) {sweep_s:.1f} s")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| build the problem (price every option) | {build_s:.2f} |")
    print(
        f"| search: {len(result.tries)} solves + verifications | {search_s:.2f} "
        f"(solve {result.seconds['solve']:.2f}, verify {result.seconds['verify']:.2f}) |"
    )
    print(f"| total, sensitivities given | {build_s + search_s:.2f} |")
    print(f"| greedy + one verification | {greedy_s:.2f} |")
    c = result.chosen
    print(
        f"assignment: energy {c.cost['energy']:.1f} uJ, agreement {c.agreement:.4f}; greedy at the first "
        f"budget: {greedy.cost['energy']:.1f} uJ, agreement {greedy.agreement:.4f}"
    )


if __name__ == "__main__":
    main()
