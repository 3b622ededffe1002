"""Emulator speed: images/s of hwsim.emulator on ResNet20-shaped bundles vs PyTorch fake-quant inference.

Place in the flow: measures hwsim.emulator (bundle -> integers) against its baseline in the same
run, on the same CPU: a PyTorch ResNet20 of the same shapes doing what a QAT model does at
inference (conv, BatchNorm, ReLU, residual add, fake-quantized weights and activations with
``floor(x / s + 0.5)``). The emulator's bundles are random but valid (hwsim.bundle.synthetic),
since speed does not depend on trained values. Prints a Markdown table for docs/performance.md.

    .venv/bin/python benchmarks/bench_emulator.py [--images 512] [--batch 256] [--rounds 3]
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
import torch
from machine import cpu_model
from torch import nn

from hwsim.bundle import load_bundle, quantize_images
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.emulator import EmulatorConfig, emulate

REPO = Path(__file__).resolve().parent.parent


def fake_quant(x: torch.Tensor, scale: float, lo: int, hi: int) -> torch.Tensor:
    """``clamp(floor(x / s + 0.5), lo, hi) * s``: the fake-quant of the QAT model (round half up)."""
    return torch.clamp(torch.floor(x / scale + 0.5), lo, hi) * scale


class QConv(nn.Module):
    """Conv with per-output-channel fake-quantized weights (quantized at every forward, as in QAT)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, w_bits: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)
        self.qmax = max(1, (1 << (w_bits - 1)) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        s = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8) / self.qmax
        wq = torch.clamp(torch.floor(w / s + 0.5), -self.qmax, self.qmax) * s
        return nn.functional.conv2d(x, wq, None, self.conv.stride, self.conv.padding)


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, w_bits: int, a_bits: int) -> None:
        super().__init__()
        self.c1, self.b1 = QConv(c_in, c_out, 3, stride, w_bits), nn.BatchNorm2d(c_out)
        self.c2, self.b2 = QConv(c_out, c_out, 3, 1, w_bits), nn.BatchNorm2d(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(QConv(c_in, c_out, 1, stride, w_bits), nn.BatchNorm2d(c_out))
        self.amax = (1 << a_bits) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = fake_quant(torch.relu(self.b1(self.c1(x))), 0.1, 0, self.amax)
        y = self.b2(self.c2(h)) + (x if self.short is None else self.short(x))
        return fake_quant(torch.relu(y), 0.1, 0, self.amax)


class FakeQuantResNet20(nn.Module):
    """ResNet20 for CIFAR-10 with fake-quantized input, weights, activations and logits."""

    def __init__(self, w_bits: int, a_bits: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = QConv(3, 16, 3, 1, w_bits), nn.BatchNorm2d(16)
        blocks, c = [], 16
        for stage, ch in enumerate((16, 32, 64)):
            for i in range(3):
                blocks.append(Block(c, ch, 2 if stage and i == 0 else 1, w_bits, a_bits))
                c = ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10, bias=False)
        self.amax = (1 << a_bits) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fake_quant(x, 2.2 / 127, -127, 127)
        x = fake_quant(torch.relu(self.bn1(self.conv1(x))), 0.1, 0, self.amax)
        x = self.blocks(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return fake_quant(self.fc(x), 0.01, -32768, 32767)


def interleaved_rates(fns: dict[str, Callable[[], None]], images: int, rounds: int) -> dict[str, float]:
    """Images/s of each function: rounds run the functions in turn; the median time is kept.

    Interleaving makes the ratio fair when other work shares the machine (both sides see the same load).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: images / statistics.median(t) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median kept)")
    parser.add_argument("--widths", default="4x4,8x8,2x2,1x1", help="w_bits x a_bits list")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.widths.split(","):
            w_bits, a_bits = (int(v) for v in spec.split("x"))
            bundle = load_bundle(random_resnet20_bundle(Path(tmp) / spec, w_bits, a_bits, seed=0))
            codes = quantize_images(images, bundle)
            model = FakeQuantResNet20(w_bits, a_bits).eval()
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)

            def run_torch(model: nn.Module = model, x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    for start in range(0, args.images, args.batch):
                        model(x[start : start + args.batch])

            def run_emulator(bundle: object = bundle, codes: np.ndarray = codes) -> None:
                emulate(bundle, codes, EmulatorConfig(), keep=False, batch_size=args.batch)  # type: ignore[arg-type]

            run_torch(), run_emulator()  # warm up both
            rates = interleaved_rates(
                {"torch": run_torch, "emulator": run_emulator}, args.images, args.rounds
            )
            torch_rate, emu_rate = rates["torch"], rates["emulator"]
            rows.append((spec, bundle.total_macs, emu_rate, torch_rate))
            print(
                f"{spec}: emulator {emu_rate:.1f} img/s, PyTorch {torch_rate:.1f} img/s, "
                f"ratio {emu_rate / torch_rate:.2f}",
                flush=True,
            )

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print()
    print(
        f"Machine: {cpu}, {os.cpu_count()} cores (load average {load:.1f} at the end); "
        f"numpy {np.__version__}, torch {torch.__version__} ({threads} threads); "
        f"{args.images} images, batch {args.batch}, median of {args.rounds} interleaved rounds."
    )
    print()
    print("| w_bits x a_bits | MACs/image | emulator img/s | PyTorch fake-quant img/s | emulator / PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for spec, macs, emu, ref in rows:
        print(f"| {spec} | {macs / 1e6:.1f} M | {emu:.1f} | {ref:.1f} | {emu / ref:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
