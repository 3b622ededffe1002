"""ResNet18 for CIFAR-10, quantization-aware: the "revised" variant (3x3 stride-1 stem, no max-pool).

Place in the flow: built by ``qat.models.build_model("resnet18", ...)``. Same block and naming
scheme as ResNet20 (``quant_input``, ``conv1``, ``bn1``, ``act1``, ``layer1``..``layer4`` of two
:class:`~qat.models.resnet20.BasicBlock` each at 64/128/256/512 channels, ``avgpool``, ``fc``,
``quant_logits``); 11,173,962 float parameters, as the common CIFAR ResNet18 (kuangliu/ZouJiu1).
"""

from __future__ import annotations

from qat.models.resnet20 import CifarResNet


class ResNet18(CifarResNet):
    """CIFAR ResNet-18: 4 stages of 2 basic blocks, 64..512 channels, 1x1 projection shortcuts."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks_per_stage: int = 2
