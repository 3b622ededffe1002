"""A small Brevitas CNN trained briefly on CIFAR-10 and exported to QONNX: the input of `hwsim import-qonnx`.

Place in the flow: stands for a model trained elsewhere. Brevitas (`pip install brevitas onnxoptimizer`)
-> MODEL.onnx (QONNX) -> `hwsim import-qonnx MODEL.onnx --out BUNDLE --data DIR` -> every hwsim
command. The network: an 8-bit input quantizer, three 3x3 convolutions with 4-bit per-channel
weights, BN and 4-bit quantized ReLUs (the last two with a max pool), a global average pool and
an 8-bit linear classifier with a 32-bit bias; the mean and std of the normalization go into the
model's metadata, where the importer reads them.

    python scripts/brevitas_example.py --data $CIFAR10_DIR --epochs 2 --out runs/brevitas/cnn.onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from brevitas import nn as qnn
from brevitas.export import export_qonnx
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, Int32Bias
from torch import nn

from hwsim.cifar10 import CIFAR10_MEAN, CIFAR10_STD, load_cifar10

MEAN, STD = CIFAR10_MEAN, CIFAR10_STD


class SmallCNN(nn.Module):
    """conv(3->32) -> conv(32->64) + maxpool -> conv(64->64) + maxpool -> avgpool -> linear(64->10)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant_in = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
        layers: list[nn.Module] = []
        for c_in, c_out, pool in ((3, 32, False), (32, 64, True), (64, 64, True)):
            layers += [
                qnn.QuantConv2d(
                    c_in,
                    c_out,
                    3,
                    padding=1,
                    bias=False,
                    weight_bit_width=4,
                    weight_scaling_per_output_channel=True,
                    return_quant_tensor=True,
                ),
                nn.BatchNorm2d(c_out),
                qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = qnn.QuantLinear(
            64,
            10,
            bias=True,
            weight_quant=Int8WeightPerTensorFloat,
            bias_quant=Int32Bias,
            input_quant=Int8ActPerTensorFloat,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.quant_in(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def normalized(images: np.ndarray) -> torch.Tensor:
    """uint8 HWC images -> the float NCHW input the model was trained on."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a cifar-10-batches-py directory")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="the QONNX file to write")
    args = parser.parse_args()
    torch.manual_seed(0)
    train_x, train_y = load_cifar10(args.data, "train")
    test_x, test_y = load_cifar10(args.data, "test")
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_all, y_all = normalized(train_x), torch.from_numpy(train_y.astype(np.int64))
    for epoch in range(args.epochs):
        start = time.time()
        model.train()
        order = torch.randperm(len(x_all))
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat(
                [model(normalized(test_x[i : i + 256])).argmax(1) for i in range(0, len(test_x), 256)]
            )
        top1 = 100.0 * float((pred.numpy() == test_y).mean())
        took = time.time() - start
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}, top-1 {top1:.2f}% ({took:.1f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    export_qonnx(model, torch.zeros(1, 3, 32, 32), export_path=str(args.out))
    exported = onnx.load(str(args.out))
    for key, value in (("mean", MEAN), ("std", STD)):
        exported.metadata_props.add(key=key, value=",".join(str(v) for v in value))
    onnx.save(exported, str(args.out))
    print(f"wrote {args.out} (QONNX, Brevitas top-1 {top1:.2f}% on {len(test_y)} test images)")


if __name__ == "__main__":
    main()
