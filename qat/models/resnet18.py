"""ResNet18 for CIFAR-10, quantization-aware: the "revised" variant (3x3 stride-1 stem, no max-pool).

Place in the flow: built by ``qat.models.build_model("resnet18", ...)``. Same block and naming
scheme as ResNet20 (``quant_input``, ``conv1``, ``bn1``, ``act1``, ``layer1``..``layer4`` of two
:class:`~qat.models.resnet20.BasicBlock` each at 64/128/256/512 channels, ``avgpool``, ``fc``,
``quant_logits``); 11,173,962 float parameters, as the common CIFAR ResNet18 (kuangliu/ZouJiu1).
"""

from __future__ import annotations

import torch
from torch import nn

from qat.config import SpecSource
from qat.data import Normalization
from qat.layers import InputQuant, LogitQuant, QAct, QConv2d, QLinear
from qat.models.resnet20 import BasicBlock, classifier_spec, init_weights


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 4 stages of 2 basic blocks, 64..512 channels, 1x1 projection shortcuts."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks_per_stage: int = 2

    def __init__(self, specs: SpecSource, num_classes: int = 10, normalization: Normalization | None = None):
        super().__init__()
        norm = normalization or Normalization()
        self.quant_input = InputQuant(norm.mean, norm.std, bits=specs.input_bits)
        self.conv1 = QConv2d(
            3, 64, 3, stride=1, padding=1, bias=False, weight_spec=specs.weight("conv1", output="act1")
        )
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = QAct(specs.activation("act1"))
        in_ch = 64
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
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.quant_logits(self.fc(x))
