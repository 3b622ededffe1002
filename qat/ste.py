"""Straight-through primitives: the rounding rule and the forward-value/backward-gradient split.

Place in the flow: the building blocks of every quantizer in :mod:`qat.quantizers`. The rounding
is the one rule of the whole flow (``hwsim.fixed.round_half_up``): ``floor(x + 0.5)``, never
``torch.round`` (half to even). :func:`straight_through` returns an exact forward value with the
gradient of a differentiable surrogate, so that a fake-quantized tensor is bit-for-bit
``codes * scale`` (``x + (v - x).detach()`` is not exact in float arithmetic).
"""

from __future__ import annotations

import torch


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 0.5)`` elementwise, in the dtype of ``x`` (no gradient of its own)."""
    return torch.floor(x + 0.5)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, surrogate: torch.Tensor, value: torch.Tensor):
        return value.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor):
        return grad, None


def straight_through(surrogate: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass; in the backward pass, the gradient flows into ``surrogate``.

    ``value`` carries no gradient. Both must have the same shape.
    """
    if surrogate.shape != value.shape:
        raise ValueError(
            f"straight_through: surrogate shape {tuple(surrogate.shape)} != value shape {tuple(value.shape)}"
        )
    return _StraightThrough.apply(surrogate, value.detach())
