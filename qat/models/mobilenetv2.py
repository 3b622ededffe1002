"""MobileNetV2 for CIFAR-10 (Sandler et al. 2018; the common CIFAR variant), quantization-aware.

Place in the flow: built by ``qat.models.build_model("mobilenetv2", ...)``. CIFAR changes to the
ImageNet network: a 3x3 stride-1 stem and stride 1 in the second stage, so 32x32 inputs end at
4x4 (2,296,922 float parameters, as the widely used kuangliu/pytorch-cifar version).

One deliberate difference from the paper, for integer export: every tensor between layers must
be a quantized activation, and the activation quantizer (QAct) is unsigned (ReLU, PACT clip,
...), so a block's output -- the linear bottleneck ``bn3(conv3)`` plus the shortcut -- goes
through a QAct (``act3``), i.e. a ReLU after the add as in ResNet, where the paper keeps the
bottleneck linear. Depthwise convs are QConv2d with ``groups = channels``.

Names: ``quant_input``, ``conv1``/``bn1``/``act1`` (stem), ``layers.<i>`` (17 blocks:
``conv1`` 1x1 expand, ``bn1``, ``act1``, ``conv2`` 3x3 depthwise, ``bn2``, ``act2``, ``conv3`` 1x1
project, ``bn3``, ``shortcut`` (1x1 conv + BN when stride 1 and the width changes), ``act3``),
``conv2``/``bn2``/``act2`` (1x1 head to 1280), ``avgpool``, ``fc``, ``quant_logits``.
"""

from __future__ import annotations

import torch
from torch import nn

from qat.config import SpecSource
from qat.data import Normalization
from qat.layers import InputQuant, LogitQuant, QAct, QConv2d, QLinear
from qat.models.resnet20 import classifier_spec, init_weights

# (expansion, out_channels, blocks, stride) per stage; stride 1 in the second stage for CIFAR.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 project (+ shortcut when stride 1) -> act3."""

    def __init__(self, prefix: str, in_ch: int, out_ch: int, expansion: int, stride: int, specs: SpecSource):
        super().__init__()
        p = prefix
        mid = in_ch * expansion
        self.stride = stride
        self.conv1 = QConv2d(
            in_ch, mid, 1, bias=False, weight_spec=specs.weight(f"{p}.conv1", output=f"{p}.act1")
        )
        self.bn1 = nn.BatchNorm2d(mid)
        self.act1 = QAct(specs.activation(f"{p}.act1"))
        self.conv2 = QConv2d(
            mid,
            mid,
            3,
            stride=stride,
            padding=1,
            groups=mid,
            bias=False,
            weight_spec=specs.weight(f"{p}.conv2", output=f"{p}.act2"),
        )
        self.bn2 = nn.BatchNorm2d(mid)
        self.act2 = QAct(specs.activation(f"{p}.act2"))
        self.conv3 = QConv2d(
            mid, out_ch, 1, bias=False, weight_spec=specs.weight(f"{p}.conv3", output=f"{p}.act3")
        )
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Sequential | None = None
        if stride == 1 and in_ch != out_ch:
            spec = specs.weight(
                f"{p}.shortcut.0",
                listed=False,
                follows=f"{p}.conv1",
                no_output=(
                    f"the shortcut feeds the residual add, whose output is quantized by {p}.act3: "
                    f"set activation on {p}.conv3 or on {p}.act3"
                ),
            )
            self.shortcut = nn.Sequential(
                QConv2d(in_ch, out_ch, 1, bias=False, weight_spec=spec), nn.BatchNorm2d(out_ch)
            )
        self.act3 = QAct(specs.activation(f"{p}.act3"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 1:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.act3(out)


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2: 32-channel stem, 17 inverted residual blocks, 1280-channel head."""

    def __init__(self, specs: SpecSource, num_classes: int = 10, normalization: Normalization | None = None):
        super().__init__()
        norm = normalization or Normalization()
        self.quant_input = InputQuant(norm.mean, norm.std, bits=specs.input_bits)
        self.conv1 = QConv2d(
            3, 32, 3, stride=1, padding=1, bias=False, weight_spec=specs.weight("conv1", output="act1")
        )
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = QAct(specs.activation("act1"))
        blocks = []
        in_ch = 32
        for expansion, out_ch, count, first_stride in STAGES:
            for j in range(count):
                stride = first_stride if j == 0 else 1
                blocks.append(
                    InvertedResidual(f"layers.{len(blocks)}", in_ch, out_ch, expansion, stride, specs)
                )
                in_ch = out_ch
        self.layers = nn.Sequential(*blocks)
        self.conv2 = QConv2d(in_ch, 1280, 1, bias=False, weight_spec=specs.weight("conv2", output="act2"))
        self.bn2 = nn.BatchNorm2d(1280)
        self.act2 = QAct(specs.activation("act2"))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = QLinear(1280, num_classes, bias=True, weight_spec=classifier_spec(specs))
        self.quant_logits = LogitQuant(bits=specs.logits_bits)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant_input(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = self.act2(self.bn2(self.conv2(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.quant_logits(self.fc(x))
