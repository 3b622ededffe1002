"""qat: the PyTorch side of the flow: quantizers, quantized layers, CIFAR-10 models, training, export.

checkpoint.pt --(qat export)--> bundle/ (docs/export-format.md), which hwsim reads without torch.
Rounding everywhere is round half up (``floor(x + 0.5)``), the rule of hwsim.fixed.
"""

__version__ = "0.1.0"
