"""The model registry: ``build_model(name, qconfig)`` builds a CIFAR-10 network with its quantizers.

Place in the flow: ``qat train`` builds a model here, ``qat.checkpoint.load_model`` rebuilds it
from a checkpoint, and ``qat export`` walks its modules (names and order are the bundle's node
names). A model is built twice: once with a :class:`qat.config.LayoutRecorder` to learn which
conv/linear layers and activation quantizers it has, then with the :class:`ResolvedQuant` that
:func:`qat.config.resolve` computes for that layout. The built model carries ``model_name``,
``layout`` and ``quant`` (the resolution) as attributes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from hwsim.errors import UserError
from qat.config import LayoutRecorder, QuantConfig, ResolvedQuant, resolve
from qat.data import Normalization
from qat.models.mobilenetv2 import MobileNetV2
from qat.models.resnet18 import ResNet18
from qat.models.resnet20 import ResNet20
from qat.models.toynet import ToyNet

ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {
    "resnet20": ResNet20,
    "resnet18": ResNet18,
    "mobilenetv2": MobileNetV2,
    "toynet": ToyNet,
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def build_model(
    name: str,
    qconfig: QuantConfig | ResolvedQuant | None = None,
    num_classes: int = 10,
    normalization: Normalization | None = None,
) -> nn.Module:
    """Build model ``name`` (one of :data:`MODEL_NAMES`) quantized by ``qconfig`` (``None``: float).

    ``normalization`` is what the input quantizer assumes the images were normalized with
    (default: the CIFAR-10 mean and std).
    """
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of {list(MODEL_NAMES)}")
    if num_classes < 2:
        raise UserError(f"num_classes must be >= 2, got {num_classes}")
    norm = normalization or Normalization()
    factory = MODELS[name]
    config = qconfig if qconfig is not None else QuantConfig()
    recorder = LayoutRecorder(name, config.input_bits, config.logits_bits)
    factory(recorder, num_classes=num_classes, normalization=norm)
    layout = recorder.layout()
    resolved = config if isinstance(config, ResolvedQuant) else resolve(config, layout)
    if isinstance(config, ResolvedQuant):
        expected = ({w.name for w in layout.weights}, set(layout.activations))
        got = ({n for n, _ in config.weights}, {n for n, _ in config.activations})
        if expected != got:
            raise UserError(f"the quantization resolution does not match model {name}'s modules")
    model = factory(resolved, num_classes=num_classes, normalization=norm)
    model.model_name = name
    model.layout = layout
    model.quant = resolved
    return model
