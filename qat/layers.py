"""Quantized layers: drop-in conv/linear with fake-quant weights, activation, input and logit quantizers.

Place in the flow: ``qat.models`` builds networks from these; ``qat.train`` trains them;
``qat.export`` reads each layer's quantizer (``weight_quant``, ``QAct.quant``, ``InputQuant``,
``LogitQuant``) through ``quantize()`` and ``fmt`` (see :mod:`qat.quantizers`).

* :class:`QConv2d` / :class:`QLinear`: ``nn.Conv2d`` / ``nn.Linear`` whose forward uses
  ``weight_quant(weight)`` instead of ``weight``; a float spec gives the plain layer.
* :class:`QAct`: the nonlinearity and its quantizer (input: the pre-ReLU BN output);
  a float spec gives a plain ReLU.
* :class:`InputQuant`: the network input (the normalized image) as signed narrow codes with a
  fixed scale derived from the normalization, computed exactly as the bundle's input rule
  (``floor(x / scale + 0.5)`` in float32, clamped), so PyTorch and hwsim start from the same codes.
* :class:`LogitQuant`: the logits' common signed narrow format; scale = running max|logit| /
  (2^(b-1) - 1), an EMA of the batch max in training, frozen in eval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from hwsim.errors import UserError
from qat.quantizers import (
    EMA_MOMENTUM,
    FLOAT_SPEC,
    MAX_CODE_BITS,
    MIN_SCALE,
    CodeFormat,
    QTensor,
    QuantSpec,
    ema_max_,
    make_act_quantizer,
    make_weight_quantizer,
)
from qat.ste import round_half_up, straight_through


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a fake-quantized weight (``self.weight_quant``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = False,
        weight_spec: QuantSpec = FLOAT_SPEC,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias
        )
        self.weight_spec = weight_spec
        self.weight_quant = make_weight_quantizer(weight_spec, channels=out_channels)

    def quantized_weight(self) -> torch.Tensor:
        """The fake-quantized weight the forward uses."""
        return self.weight_quant(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QLinear(nn.Linear):
    """``nn.Linear`` with a fake-quantized weight (``self.weight_quant``)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, weight_spec: QuantSpec = FLOAT_SPEC
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.weight_spec = weight_spec
        self.weight_quant = make_weight_quantizer(weight_spec, channels=out_features)

    def quantized_weight(self) -> torch.Tensor:
        """The fake-quantized weight the forward uses."""
        return self.weight_quant(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.quantized_weight(), self.bias)


class QAct(nn.Module):
    """An activation site: ReLU (or clip/sign) and its quantizer, ``self.quant``."""

    def __init__(self, spec: QuantSpec = FLOAT_SPEC) -> None:
        super().__init__()
        self.spec = spec
        self.quant = make_act_quantizer(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(x)


def _check_code_bits(bits: object, where: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= MAX_CODE_BITS:
        raise UserError(
            f"{where}: bits={bits!r} must be an integer in 2..{MAX_CODE_BITS} (signed narrow codes)"
        )
    return bits


class InputQuant(nn.Module):
    """The normalized image as signed narrow codes with a fixed per-tensor scale (a buffer).

    ``scale = max_c max(|(0 - mean_c)/std_c|, |(1 - mean_c)/std_c|) / (2^(b-1) - 1)``, computed in
    float64 and stored as float32: the largest normalized value of any pixel maps to the largest code.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], bits: int = 8) -> None:
        super().__init__()
        self.bits = _check_code_bits(bits, "InputQuant")
        mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if not mean_t or len(mean_t) != len(std_t):
            raise UserError(
                f"InputQuant: mean has {len(mean_t)} entries and std {len(std_t)}; "
                "give one of each per channel"
            )
        if not all(math.isfinite(m) for m in mean_t) or not all(math.isfinite(s) and s > 0 for s in std_t):
            raise UserError(f"InputQuant: mean {mean_t} must be finite and std {std_t} finite and > 0")
        self.mean, self.std = mean_t, std_t
        self.qmax = (1 << (bits - 1)) - 1
        bound = max(max(abs((0.0 - m) / s), abs((1.0 - m) / s)) for m, s in zip(mean_t, std_t, strict=True))
        self.register_buffer("scale", torch.tensor(bound / self.qmax, dtype=torch.float32))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.bits, signed=True, nominal_bits=self.bits, lattice="narrow")

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        return round_half_up(x / self.scale).clamp(-self.qmax, self.qmax)

    def quantize(self, x: torch.Tensor) -> QTensor:
        """Codes of the normalized image ``x`` (float32) and the scale."""
        with torch.no_grad():
            return QTensor(self._codes(x.detach()), self.scale.detach().clone(), self.fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return straight_through(x, self._codes(x.detach()) * self.scale)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, scale={float(self.scale):.6g}"


class LogitQuant(nn.Module):
    """The logits as signed narrow codes; scale = running max|logit| / (2^(b-1) - 1) (buffers).

    The running max follows the batch max|logit| as an EMA (``momentum``) in training mode (the
    first batch sets it) and is frozen in eval mode; before any training batch it is 1.0.
    Gradient: straight through inside ``[-running_max, running_max]``, zero outside.
    """

    def __init__(self, bits: int = 16, momentum: float = EMA_MOMENTUM) -> None:
        super().__init__()
        self.bits = _check_code_bits(bits, "LogitQuant")
        self.qmax = (1 << (bits - 1)) - 1
        self.momentum = momentum
        self.register_buffer("running_max", torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.bits, signed=True, nominal_bits=self.bits, lattice="narrow")

    @property
    def scale(self) -> torch.Tensor:
        """The current scale (0-d float32)."""
        return self.running_max.clamp_min(MIN_SCALE) / self.qmax

    def _codes(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return round_half_up(x / scale).clamp(-self.qmax, self.qmax)

    def quantize(self, x: torch.Tensor) -> QTensor:
        """Codes of the logits ``x`` with the current (frozen) scale; never changes state."""
        with torch.no_grad():
            scale = self.scale.to(x.dtype)
            return QTensor(self._codes(x.detach(), scale), scale, self.fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            ema_max_(self.running_max, self.initialized, x.detach().abs().max(), self.momentum)
        scale = self.scale.to(x.dtype)
        limit = self.running_max.clamp_min(MIN_SCALE).to(x.dtype)
        surrogate = x.clamp(min=-limit, max=limit)
        return straight_through(surrogate, self._codes(x.detach(), scale) * scale)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, momentum={self.momentum}"
