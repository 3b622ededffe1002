"""ToyNet: a small ConvNeXt-style CIFAR-10 network (after louvinci/PACT-Quantization), quantization-aware.

Place in the flow: built by ``qat.models.build_model("toynet", ...)``. About 0.20 M parameters
(203,722 float) and 25 M MACs per image: stem 3x3 conv (16) -> 10 blocks in 4 stages
(1, 3, 3, 3 blocks; 16, 32, 32, 64 channels; strides 1, 2, 1, 2) -> 1x1 header conv (512) ->
global average pool -> fc.

A block (``layer<s>.<i>``): when the stride or the width changes, ``down_conv`` (kernel = stride,
stride = stride) -> ``down_bn`` -> ``down_act`` first; then ``conv1`` (3x3 depthwise) -> ``bn1`` ->
``act1`` -> ``conv2`` (1x1, 4x expansion) -> ``act2`` -> ``conv3`` (1x1 projection) -> add the
block input -> ``act3``. Differences from the reference, for integer export (every tensor
between layers is an unsigned quantized activation, and BN is carried by the requantizer after
a conv): the downsampling BN sits after its conv instead of before it, and the block output
is an unsigned QAct (the reference used an unsigned fixed-scale PACT there in its early
versions and a signed "modified PACT" later; a signed activation quantizer is not available).
"""

from __future__ import annotations

import torch
from torch import nn

from qat.config import SpecSource
from qat.data import Normalization
from qat.layers import InputQuant, LogitQuant, QAct, QConv2d, QLinear
from qat.models.resnet20 import classifier_spec, init_weights

BLOCKS: tuple[int, ...] = (1, 3, 3, 3)
WIDTHS: tuple[int, ...] = (16, 32, 32, 64)
STRIDES: tuple[int, ...] = (1, 2, 1, 2)
STEM = 16
HEADER = 512
EXPANSION = 4


class ConvNeXtBlock(nn.Module):
    """[down_conv, down_bn, down_act] -> dw conv1 -> bn1 -> act1 -> conv2 -> act2 -> conv3 (+ x) -> act3."""

    def __init__(self, prefix: str, in_ch: int, out_ch: int, stride: int, specs: SpecSource) -> None:
        super().__init__()
        p = prefix
        self.down_conv: QConv2d | None = None
        if stride != 1 or in_ch != out_ch:
            self.down_conv = QConv2d(
                in_ch,
                out_ch,
                stride,
                stride=stride,
                padding=0,
                bias=False,
                weight_spec=specs.weight(f"{p}.down_conv", output=f"{p}.down_act"),
            )
            self.down_bn = nn.BatchNorm2d(out_ch)
            self.down_act = QAct(specs.activation(f"{p}.down_act"))
        self.conv1 = QConv2d(
            out_ch,
            out_ch,
            3,
            padding=1,
            groups=out_ch,
            bias=False,
            weight_spec=specs.weight(f"{p}.conv1", output=f"{p}.act1"),
        )
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = QAct(specs.activation(f"{p}.act1"))
        self.conv2 = QConv2d(
            out_ch,
            out_ch * EXPANSION,
            1,
            bias=False,
            weight_spec=specs.weight(f"{p}.conv2", output=f"{p}.act2"),
        )
        self.act2 = QAct(specs.activation(f"{p}.act2"))
        self.conv3 = QConv2d(
            out_ch * EXPANSION,
            out_ch,
            1,
            bias=False,
            weight_spec=specs.weight(f"{p}.conv3", output=f"{p}.act3"),
        )
        self.act3 = QAct(specs.activation(f"{p}.act3"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_conv is not None:
            x = self.down_act(self.down_bn(self.down_conv(x)))
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.conv2(out))
        return self.act3(self.conv3(out) + x)


class ToyNet(nn.Module):
    """The ConvNeXt-style toy network: stem, blocks (1, 3, 3, 3), 1x1 header, fc."""

    def __init__(self, specs: SpecSource, num_classes: int = 10, normalization: Normalization | None = None):
        super().__init__()
        norm = normalization or Normalization()
        self.quant_input = InputQuant(norm.mean, norm.std, bits=specs.input_bits)
        self.conv1 = QConv2d(
            3, STEM, 3, padding=1, bias=False, weight_spec=specs.weight("conv1", output="act1")
        )
        self.bn1 = nn.BatchNorm2d(STEM)
        self.act1 = QAct(specs.activation("act1"))
        in_ch = STEM
        for stage, (count, width, stride) in enumerate(zip(BLOCKS, WIDTHS, STRIDES, strict=True), start=1):
            blocks = []
            for i in range(count):
                blocks.append(
                    ConvNeXtBlock(f"layer{stage}.{i}", in_ch, width, stride if i == 0 else 1, specs)
                )
                in_ch = width
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.conv2 = QConv2d(in_ch, HEADER, 1, bias=False, weight_spec=specs.weight("conv2", output="act2"))
        self.bn2 = nn.BatchNorm2d(HEADER)
        self.act2 = QAct(specs.activation("act2"))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = QLinear(HEADER, num_classes, bias=True, weight_spec=classifier_spec(specs))
        self.quant_logits = LogitQuant(bits=specs.logits_bits)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant_input(x)
        x = self.act1(self.bn1(self.conv1(x)))
        for stage in range(1, len(BLOCKS) + 1):
            x = getattr(self, f"layer{stage}")(x)
        x = self.act2(self.bn2(self.conv2(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.quant_logits(self.fc(x))
