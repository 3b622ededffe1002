"""ResNet20 for CIFAR-10 (He et al. 2016, section 4.2), quantization-aware: the primary model.

Place in the flow: built by ``qat.models.build_model("resnet20", ...)``; ``qat export`` relies on
its module names and order, which are the bundle's node names:

``quant_input`` (InputQuant) -> ``conv1`` (3->16, 3x3) -> ``bn1`` -> ``act1`` -> ``layer1``..``layer3``
(3 :class:`BasicBlock` each, widths 16/32/64, the first block of layers 2 and 3 with stride 2)
-> ``avgpool`` -> flatten -> ``fc`` (64->10, bias) -> ``quant_logits`` (LogitQuant).

Shortcuts where the shape changes are 1x1 conv + BN projections (``shortcut.0``, ``shortcut.1``),
as in the pytorchcv CIFAR ResNet20 (272,474 parameters, the same count as this model's float
parameters). BN is never folded into the weights; every conv/linear is a QConv2d/QLinear and every
ReLU a QAct. Also home of :class:`BasicBlock` and :func:`init_weights`, shared with ResNet18.
"""

from __future__ import annotations

import torch
from torch import nn

from qat.config import SpecSource
from qat.data import Normalization
from qat.layers import InputQuant, LogitQuant, QAct, QConv2d, QLinear
from qat.quantizers import QuantSpec


def init_weights(model: nn.Module) -> None:
    """He-normal conv weights (fan-out), BN at identity; linear layers keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``; modules registered in that order."""

    def __init__(self, prefix: str, in_ch: int, out_ch: int, stride: int, specs: SpecSource) -> None:
        super().__init__()
        p = prefix
        self.conv1 = QConv2d(
            in_ch,
            out_ch,
            3,
            stride=stride,
            padding=1,
            bias=False,
            weight_spec=specs.weight(f"{p}.conv1", output=f"{p}.act1"),
        )
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = QAct(specs.activation(f"{p}.act1"))
        self.conv2 = QConv2d(
            out_ch,
            out_ch,
            3,
            stride=1,
            padding=1,
            bias=False,
            weight_spec=specs.weight(f"{p}.conv2", output=f"{p}.act2"),
        )
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            spec = specs.weight(
                f"{p}.shortcut.0",
                listed=False,
                follows=f"{p}.conv1",
                no_output=(
                    f"the shortcut feeds the residual add, whose output is quantized by {p}.act2: "
                    f"set activation on {p}.conv2 or on {p}.act2"
                ),
            )
            self.shortcut = nn.Sequential(
                QConv2d(in_ch, out_ch, 1, stride=stride, padding=0, bias=False, weight_spec=spec),
                nn.BatchNorm2d(out_ch),
            )
        self.act2 = QAct(specs.activation(f"{p}.act2"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.act2(out + identity)


def classifier_spec(specs: SpecSource, name: str = "fc") -> QuantSpec:
    """The classifier's weight spec (its output is the logits, quantized by ``quant_logits``)."""
    return specs.weight(
        name,
        output=None,
        no_output="the classifier's output is the logits: set their format with `logits: {bits: N}`",
    )


class CifarResNet(nn.Module):
    """A CIFAR ResNet of basic blocks: 3x3 stem, one stage per width, 1x1 projection shortcuts.

    Subclasses set ``widths`` and ``blocks_per_stage``; the first block of every stage after the
    first has stride 2. Module names: ``quant_input``, ``conv1``, ``bn1``, ``act1``,
    ``layer<stage>.<block>``, ``avgpool``, ``fc``, ``quant_logits``.
    """

    widths: tuple[int, ...] = ()
    blocks_per_stage: int = 0

    def __init__(self, specs: SpecSource, num_classes: int = 10, normalization: Normalization | None = None):
        super().__init__()
        norm = normalization or Normalization()
        stem = self.widths[0]
        self.quant_input = InputQuant(norm.mean, norm.std, bits=specs.input_bits)
        self.conv1 = QConv2d(
            3, stem, 3, stride=1, padding=1, bias=False, weight_spec=specs.weight("conv1", output="act1")
        )
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = QAct(specs.activation("act1"))
        in_ch = stem
        for stage, width in enumerate(self.widths, start=1):
            blocks = []
            for i in range(self.blocks_per_stage):
                stride = 2 if (i == 0 and stage > 1) else 1
                blocks.append(BasicBlock(f"layer{stage}.{i}", in_ch, width, stride, specs))
                in_ch = width
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = QLinear(in_ch, num_classes, bias=True, weight_spec=classifier_spec(specs))
        self.quant_logits = LogitQuant(bits=specs.logits_bits)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant_input(x)
        x = self.act1(self.bn1(self.conv1(x)))
        for stage in range(1, len(self.widths) + 1):
            x = getattr(self, f"layer{stage}")(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.quant_logits(self.fc(x))


class ResNet20(CifarResNet):
    """CIFAR ResNet-20: 3 stages of 3 basic blocks, 16/32/64 channels, 1x1 projection shortcuts."""

    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 3
