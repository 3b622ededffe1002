"""Training throughput: images/s of a ResNet20 training step, float vs each QAT method (fake-quant overhead).

Place in the flow: measures ``qat train``'s inner step (forward, cross-entropy plus quantizer
regularization, backward, SGD step; BN in train mode) for the float ResNet20 (the baseline) and
for each quantization method, in one run, on the same in-memory synthetic batches, so the ratios
compare like with like. Data loading is left out (it is the same for every method). Rounds are
interleaved (every method once per round) and the median step time is kept, which makes the
ratios robust to other work on the machine. Prints a Markdown table for docs/performance.md.

    .venv/bin/python benchmarks/bench_train.py [--batch 128] [--steps 3] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch
from machine import cpu_model
from torch import nn

from hwsim.cifar10 import synthetic_cifar10
from qat.config import config_from_dict
from qat.data import Normalization
from qat.models import build_model
from qat.quantizers import regularization_loss
from qat.train import resolve_device

GOAL_RATIO = 1.5  # users' goal: a QAT step costs at most 1.5x a float step


@dataclass(frozen=True)
class Case:
    name: str
    weight: dict
    activation: dict

    def label(self, spec: dict) -> str:
        return "float" if spec["method"] == "float" else f"{spec['method']} {spec['bits']}b"


CASES: tuple[Case, ...] = (
    Case("float", {"method": "float"}, {"method": "float"}),
    Case("dorefa", {"method": "dorefa", "bits": 4}, {"method": "dorefa", "bits": 4}),
    Case("pact", {"method": "dorefa", "bits": 4}, {"method": "pact", "bits": 4}),
    Case("xnor", {"method": "xnor", "bits": 1}, {"method": "xnor", "bits": 1}),
    Case("ternary", {"method": "ternary", "bits": 2}, {"method": "pact", "bits": 8}),
    Case("lsq", {"method": "lsq", "bits": 4}, {"method": "lsq", "bits": 4}),
    Case("uniform", {"method": "uniform", "bits": 8}, {"method": "uniform", "bits": 8}),
)


def machine() -> str:
    threads = torch.get_num_threads()
    return f"{cpu_model()}, nproc {os.cpu_count()}, torch {torch.__version__}, {threads} thread(s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="images per step (default 128, as qat train)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median step time is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    images, labels = synthetic_cifar10(args.batch * args.steps, seed=0)
    x_all = Normalization().apply(torch.from_numpy(images)).to(device)
    y_all = torch.from_numpy(labels).to(device)
    batches = [
        (x_all[i * args.batch : (i + 1) * args.batch], y_all[i * args.batch : (i + 1) * args.batch])
        for i in range(args.steps)
    ]

    models = {}
    for case in CASES:
        torch.manual_seed(0)
        cfg = config_from_dict({"default": {"weight": case.weight, "activation": case.activation}}, case.name)
        model = build_model("resnet20", cfg).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        models[case.name] = (model, opt)

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        reg = regularization_loss(model)
        if reg is not None:
            loss = loss + reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for model, opt in models.values():  # warm-up (first-call allocations, LSQ/EMA initialization)
        step(model, opt, *batches[0])
    sync()
    times: dict[str, list[float]] = {c.name: [] for c in CASES}
    for _ in range(args.rounds):
        for case in CASES:
            model, opt = models[case.name]
            for x, y in batches:
                start = time.perf_counter()
                step(model, opt, x, y)
                sync()
                times[case.name].append(time.perf_counter() - start)

    base = statistics.median(times["float"])
    print(f"Machine: {machine()}; device {device.type}")
    print(
        f"ResNet20 training step, batch {args.batch}, median of {args.rounds} x {args.steps} steps per method"
    )
    print()
    print("| method | weights | activations | ms/step | images/s | time vs float | <= 1.5x |")
    print("|---|---|---|---:|---:|---:|---|")
    for case in CASES:
        t = statistics.median(times[case.name])
        ratio = t / base
        ok = "baseline" if case.name == "float" else ("yes" if ratio <= GOAL_RATIO else "no")
        print(
            f"| {case.name} | {case.label(case.weight)} | {case.label(case.activation)} | {1000 * t:.0f} | "
            f"{args.batch / t:.0f} | {ratio:.2f}x | {ok} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
