"""Brevitas models (random weights and a few calibration batches, or briefly trained) exported to QONNX.

Place in the flow: stands for networks trained with Brevitas rather than ``qat``; the QONNX
importer's tests (tests/interop/) and its benchmark (benchmarks/bench_qonnx_import.py) build
them, export them with ``brevitas.export.export_qonnx`` and run ``hwsim import-qonnx`` on the
files. Needs ``brevitas`` and ``onnxoptimizer`` (test dependencies). Every builder returns an
eval-mode ``torch.nn.Module`` whose input is a normalized float image ``[N, 3, 32, 32]``;
:func:`export` writes it as QONNX. Sizes are kept small so that export, import and emulation of
each take a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU, TruncAvgPool2d
from brevitas.quant import (
    Int8ActPerTensorFixedPoint,
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFixedPoint,
    Int8WeightPerTensorFloat,
    Int32Bias,
    SignedBinaryActPerTensorConst,
    SignedBinaryWeightPerTensorConst,
    Uint8ActPerTensorFixedPoint,
    Uint8ActPerTensorFloat,
)
from brevitas.quant.scaled_int import RoundTo8bit
from torch import nn

SHAPE = (1, 3, 32, 32)


class RoundTo6bit(RoundTo8bit):
    """Brevitas's ``RoundTo8bit`` truncation (rounding ``ROUND``) to 6 bits."""

    bit_width = 6


# -- building blocks ----------------------------------------------------------------------------


def _conv(c_in: int, c_out: int, k: int, stride: int, bits: int, pow2: bool, bias: bool = False) -> nn.Module:
    quant = Int8WeightPerTensorFixedPoint if pow2 else Int8WeightPerChannelFloat
    return QuantConv2d(
        c_in,
        c_out,
        k,
        stride=stride,
        padding=k // 2,
        bias=bias,
        weight_quant=quant,
        weight_bit_width=bits,
        return_quant_tensor=False,
    )


def _relu(bits: int, pow2: bool) -> nn.Module:
    quant = Uint8ActPerTensorFixedPoint if pow2 else Uint8ActPerTensorFloat
    return QuantReLU(act_quant=quant, bit_width=bits, return_quant_tensor=True)


def _input_quant(bits: int, pow2: bool) -> nn.Module:
    quant = Int8ActPerTensorFixedPoint if pow2 else Int8ActPerTensorFloat
    return QuantIdentity(act_quant=quant, bit_width=bits, return_quant_tensor=True)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> QuantReLU -> conv3x3 -> BN, + shortcut (identity or 1x1 conv + BN), -> QuantReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, bits: int, pow2: bool, bn: bool) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, stride, bits, pow2)
        self.bn1 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.relu1 = _relu(bits, pow2)
        self.conv2 = _conv(c_out, c_out, 3, 1, bits, pow2)
        self.bn2 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                _conv(c_in, c_out, 1, stride, bits, pow2), nn.BatchNorm2d(c_out) if bn else nn.Identity()
            )
        self.relu2 = _relu(bits, pow2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR ResNet (ResNet20 with ``blocks=3``): ``bits`` inside, ``edge_bits`` first and last."""

    def __init__(
        self,
        blocks: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
        bits: int = 4,
        edge_bits: int = 8,
        pow2: bool = False,
        bn: bool = True,
        trunc_pool: bool = False,
        classes: int = 10,
    ) -> None:
        super().__init__()
        self.inp = _input_quant(8, pow2)
        self.conv1 = _conv(3, widths[0], 3, 1, edge_bits, pow2)
        self.bn1 = nn.BatchNorm2d(widths[0]) if bn else nn.Identity()
        self.relu1 = _relu(bits, pow2)
        layers: list[nn.Module] = []
        c = widths[0]
        for stage, width in enumerate(widths):
            for i in range(blocks):
                layers.append(BasicBlock(c, width, 2 if (stage > 0 and i == 0) else 1, bits, pow2, bn))
                c = width
        self.layers = nn.Sequential(*layers)
        size = 32 // (2 ** (len(widths) - 1))
        self.pool: nn.Module
        if trunc_pool:
            self.pool = TruncAvgPool2d(kernel_size=size, trunc_quant=RoundTo6bit, return_quant_tensor=True)
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = QuantLinear(
            c,
            classes,
            bias=not pow2,
            weight_quant=Int8WeightPerChannelFloat if not pow2 else Int8WeightPerTensorFixedPoint,
            weight_bit_width=edge_bits,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(self.inp(x))))
        x = self.pool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


class ResidualNet8(nn.Module):
    """Shaped like this project's nets: conv -> BN -> residual add -> quantized ReLU, 8 bits throughout."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.inp = _input_quant(8, False)
        self.conv1 = _conv(3, 8, 3, 1, 8, False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = _relu(8, False)
        self.block1 = BasicBlock(8, 8, 1, 8, False, True)
        self.block2 = BasicBlock(8, 16, 2, 8, False, True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = QuantLinear(
            16, classes, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(self.inp(x))))
        x = self.pool(self.block2(self.block1(x)))
        return self.fc(torch.flatten(x, 1))


class BinaryNet(nn.Module):
    """A binary CNN: 8-bit input, BipolarQuant weights and activations, BN, MaxPool."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.inp = _input_quant(8, False)

        def bconv(c_in: int, c_out: int) -> nn.Module:
            return QuantConv2d(
                c_in,
                c_out,
                3,
                padding=1,
                bias=False,
                weight_quant=SignedBinaryWeightPerTensorConst,
                return_quant_tensor=True,
            )

        def bact() -> nn.Module:
            return QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)

        self.features = nn.Sequential(
            bconv(3, 16),
            nn.BatchNorm2d(16),
            bact(),
            nn.MaxPool2d(2),
            bconv(16, 32),
            nn.BatchNorm2d(32),
            bact(),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = QuantLinear(
            32, classes, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(self.inp(x)))
        return self.fc(torch.flatten(x, 1))


class BiasQuantNet(nn.Module):
    """conv -> BN -> QuantReLU -> pool -> QuantIdentity -> QuantLinear with an ``Int32Bias`` bias."""

    def __init__(self, per_channel: bool = False, classes: int = 10) -> None:
        super().__init__()
        self.inp = _input_quant(8, False)
        self.conv1 = _conv(3, 16, 3, 2, 8, False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = _relu(8, False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pooled = QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True)
        self.fc = QuantLinear(
            16,
            classes,
            bias=True,
            weight_quant=Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat,
            weight_bit_width=8,
            bias_quant=Int32Bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(self.inp(x))))
        x = self.pooled(torch.flatten(self.pool(x), 1))
        return self.fc(x)


# -- weights, calibration, export ---------------------------------------------------------------


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics and affine parameters (so BN is not the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    return model


def calibrate(model: nn.Module, seed: int, batches: int = 3, batch: int = 8) -> nn.Module:
    """A few training-mode forward passes on random images (activation scales are initialised from them)."""
    gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch, *SHAPE[1:], generator=gen))
    return model.eval()


def build(kind: str, seed: int = 0) -> nn.Module:
    """One of :data:`BUILDERS`, with random weights, calibrated, in eval mode."""
    torch.manual_seed(seed)
    model = BUILDERS[kind]()
    randomize(model, seed)
    return calibrate(model, seed)


def export(model: nn.Module, path: Path) -> Path:
    """``brevitas.export.export_qonnx`` at batch size 1."""
    with torch.no_grad():
        export_qonnx(model, torch.randn(*SHAPE), export_path=str(path))
    return path


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet20": lambda: ResNet(blocks=3),
    "pow2": lambda: ResNet(
        blocks=1, widths=(8, 16, 16), bits=4, edge_bits=8, pow2=True, bn=False, trunc_pool=True
    ),
    "residual8": ResidualNet8,
    "binary": BinaryNet,
    "biasquant": BiasQuantNet,
    "biasquant_pc": lambda: BiasQuantNet(per_channel=True),
}


# -- training on real images --------------------------------------------------------------------


def to_input(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 HWC images -> the normalized float32 NCHW input, ``(x/255 - mean) / std`` as the import does."""
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def train(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    epochs: int = 3,
    batch: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """A few epochs of Adam (cosine learning rate, random horizontal flips) on uint8 HWC ``images``.

    Seeded (shuffling, flips); returns ``model`` in eval mode. BN and the activation quantizers'
    scales train along with the weights, as in any Brevitas quantization-aware training.
    """
    gen = torch.Generator().manual_seed(seed)
    x_all = to_input(images, mean, std)
    y_all = torch.from_numpy(labels.astype(np.int64))
    steps = epochs * ((len(x_all) + batch - 1) // batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            x = x_all[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = nn.functional.cross_entropy(model(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def accuracy(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> float:
    """Brevitas's own top-1 on uint8 HWC ``images`` (eval mode, batches of 256)."""
    hits = 0
    with torch.no_grad():
        for start in range(0, len(images), 256):
            out = model(to_input(images[start : start + 256], mean, std))
            hits += int((out.argmax(1).numpy() == labels[start : start + 256]).sum())
    return hits / max(1, len(images))
