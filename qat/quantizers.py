"""Quantizers: fake-quant with straight-through gradients, and the integer codes the export writes.

Place in the flow: :mod:`qat.layers` wraps these into ``QConv2d``/``QLinear``/``QAct``;
``qat train`` trains through :meth:`Quantizer.forward` (fake-quant); ``qat export`` calls
:meth:`Quantizer.quantize` and :attr:`Quantizer.fmt` to write codes, scales and integer formats
into the bundle (docs/export-format.md). In eval mode ``quantize(x).dequantize()`` equals
``forward(x)`` bit for bit (float32): the forward value IS ``codes * scale``.

Conventions: ``k`` = bits, ``n = 2^k - 1``, ``R(v) = floor(v + 0.5)`` (round half up, the rule of
``hwsim.fixed``), ``sign(0) = +1`` wherever codes are binary. Weights are ``[C_out, ...]``; a
per-channel scale has shape ``[C_out]`` and applies along axis 0. Activation quantizers take the
pre-ReLU tensor (a BN output) and include the nonlinearity. Scales never drop below
:data:`MIN_SCALE`, so all-zero tensors give finite values (codes 0 or +-1, no NaN).

Methods, each with its source:

* ``float``: identity (weights) / ReLU (activations); no codes.
* ``dorefa``: DoReFa-Net, Zhou et al. 2016 (arXiv:1606.06160), canonical form of the authors'
  tensorpack ``get_dorefa``. Weights, k >= 2: ``w~ = tanh(w)/(2 max|tanh w|) + 1/2``,
  ``w_q = 2 R(n w~)/n - 1``; codes ``2 R(n w~) - n`` (the odd integers in ``[-n, n]``, stored in
  k+1 bits), scale ``1/n``; STE through R only (autograd through tanh and the max).
  k = 1: ``sign(w) * E|w|`` with ``E|w|`` per tensor and detached, identity STE. Activations:
  ``R(n clip(x, 0, 1))/n``, unsigned, gradient ``1[0 <= x <= 1]``.
* ``pact``: PACT, Choi et al. 2018 (arXiv:1805.06085). ``y = clip(x, 0, alpha)``, codes
  ``R(y n / alpha)``, scale ``alpha/n``; ``dL/dx = g 1[0 <= x <= alpha]``,
  ``dL/dalpha = sum g 1[x >= alpha]``; optional ``pact_l2 * alpha^2`` via :meth:`regularization`.
* ``xnor``: XNOR-Net, Rastegari et al. 2016 (ECCV, arXiv:1603.05279). Weights
  ``alpha_c sign(W)`` with ``alpha_c = mean|W_c|`` per output channel (autograd through alpha,
  ``1[|W| <= 1]`` through sign: the paper's ``g (1/n + alpha 1[|W| <= 1])`` in exact form).
  Activations ``sign(x)``, scale 1, gradient ``1[|x| <= 1]``.
* ``ternary``: Ternary Weight Networks, Li, Zhang & Liu 2016 (arXiv:1605.04711).
  ``Delta = 0.7 mean|W|``, codes ``sign(W) 1[|W| > Delta]``, scale = mean of ``|W|`` over the
  kept weights (per layer, or per output channel with ``per_channel``); identity STE.
* ``lsq``: Learned Step Size Quantization, Esser et al. 2020 (ICLR, arXiv:1902.08153).
  ``v_hat = R(clip(v/s, -Qn, Qp)) s``; weights signed (``Qn = 2^(k-1)``, ``Qp = 2^(k-1) - 1``),
  activations unsigned (``Qn = 0``, ``Qp = n``; the clip is the ReLU); ``s`` learned, initialised
  to ``2 mean|v| / sqrt(Qp)`` (weights on the first forward, activations on the first training
  batch of ``relu(x)``), its gradient scaled by ``1/sqrt(N Qp)``.
* ``uniform``: min/max uniform quantization, Jacob et al. 2018 (CVPR, arXiv:1712.05877), with
  symmetric per-channel weights as in HAWQ-V3 (Yao et al. 2021, arXiv:2011.10680): weights
  narrow-range, scale ``max|w_c| / (2^(k-1) - 1)``; activations unsigned, scale = running max /
  n (EMA of the batch max in training, frozen in eval); straight-through (clipped for activations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import UserError
from hwsim.fixed import CodeFormat
from qat.ste import round_half_up, straight_through

METHODS: tuple[str, ...] = ("float", "dorefa", "pact", "xnor", "ternary", "lsq", "uniform")
WEIGHT_METHODS: tuple[str, ...] = ("float", "dorefa", "xnor", "ternary", "lsq", "uniform")
ACT_METHODS: tuple[str, ...] = ("float", "dorefa", "pact", "xnor", "lsq", "uniform")
FLOAT_BITS = 32
MAX_CODE_BITS = 24  # float32 holds every integer code exactly up to 24 bits
MIN_SCALE = 2.0**-32  # floor for every scale, step and PACT alpha (keeps them > 0)
EMA_MOMENTUM = 0.1


# --------------------------------------------------------------------------------------------
# Specs and formats


@dataclass(frozen=True)
class QuantSpec:
    """How one weight or activation site is quantized; validated on construction."""

    method: str = "float"
    bits: int = FLOAT_BITS
    per_channel: bool = False  # ternary alpha / LSQ weight step per output channel; ignored elsewhere
    pact_init: float = 10.0
    pact_l2: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(
                f"QuantSpec.method={self.method!r} is not a quantization method; "
                f"choose one of {', '.join(METHODS)}"
            )
        bits = self.bits
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise UserError(f"QuantSpec.bits={bits!r} must be an integer (1..{MAX_CODE_BITS}, or 32 = float)")
        if not (1 <= bits <= MAX_CODE_BITS or bits == FLOAT_BITS):
            raise UserError(
                f"QuantSpec.bits={bits} is not supported: codes are exact in float32 up to "
                f"{MAX_CODE_BITS} bits; choose 1..{MAX_CODE_BITS}, or {FLOAT_BITS} for not quantized"
            )
        if self.method == "xnor" and bits not in (1, FLOAT_BITS):
            raise UserError(f"QuantSpec.bits={bits} with method 'xnor': XNOR is binary; set bits: 1")
        if self.method == "ternary" and bits not in (2, FLOAT_BITS):
            raise UserError(
                f"QuantSpec.bits={bits} with method 'ternary': ternary codes {{-1, 0, 1}} take 2 bits; "
                "set bits: 2"
            )
        if not isinstance(self.per_channel, bool):
            raise UserError(f"QuantSpec.per_channel={self.per_channel!r} must be true or false")
        for name, low_ok in (("pact_init", False), ("pact_l2", True)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"QuantSpec.{name}={value!r} must be a finite number")
            if value < 0 or (value == 0 and not low_ok):
                need = ">= 0" if low_ok else "> 0"
                raise UserError(f"QuantSpec.{name}={value!r} must be {need}")
            object.__setattr__(self, name, float(value))

    @property
    def is_float(self) -> bool:
        """True when this site is not quantized (method 'float' or 32 bits)."""
        return self.method == "float" or self.bits == FLOAT_BITS


FLOAT_SPEC = QuantSpec()


def broadcast_scale(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A 0-d ``scale`` as is; a 1-d (per-channel) one shaped to apply along axis 0 of ``like``."""
    if scale.dim() == 0:
        return scale
    return scale.reshape(-1, *([1] * (like.dim() - 1)))


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``codes * scale``; a 1-d ``scale`` applies per channel along axis 0."""
    return codes * broadcast_scale(scale, codes)


@dataclass
class QTensor:
    """Integer codes with their scale and format: real value = ``codes * scale``."""

    codes: torch.Tensor  # integer-valued, float dtype
    scale: torch.Tensor  # 0-d (per tensor) or [C] (per output channel, axis 0)
    fmt: CodeFormat

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.codes, self.scale)


# --------------------------------------------------------------------------------------------
# Shared pieces


def _sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0``, else -1 (binary codes: sign(0) = +1)."""
    one = torch.ones_like(x)
    return torch.where(x >= 0, one, -one)


def _positive(t: torch.Tensor) -> torch.Tensor:
    """``max(t, MIN_SCALE)`` with the gradient passed straight to ``t`` (keeps learned scales > 0)."""
    return straight_through(t, t.clamp_min(MIN_SCALE))


def _per_channel(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``[C, everything else]``."""
    return x.reshape(x.shape[0], -1)


def _const(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def ema_max_(
    running: torch.Tensor, initialized: torch.Tensor, batch_max: torch.Tensor, momentum: float
) -> None:
    """Track a running max in place: the first batch sets it, later ones move it by ``momentum``."""
    with torch.no_grad():  # no host sync: the flag is read on the device
        batch_max = batch_max.to(running.dtype)
        moved = running * (1.0 - momentum) + momentum * batch_max
        running.copy_(torch.where(initialized, moved, batch_max))
        initialized.fill_(True)


# --------------------------------------------------------------------------------------------
# Base class


class Quantizer(nn.Module):
    """A fake-quantizer for one weight or activation site.

    ``forward`` returns the fake-quantized tensor with the method's straight-through gradient;
    ``quantize`` returns its codes and scale (never changes state); ``fmt`` is the code format.
    """

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _codes_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def quantize(self, x: torch.Tensor) -> QTensor:
        """Codes and scale of ``x`` with the current state: ``codes * scale == forward(x)`` in eval mode."""
        fmt = self.fmt
        if fmt is None:
            raise UserError(
                f"quantize: method {self.spec.method!r} at {self.spec.bits} bits is not quantized and has "
                "no integer codes; give this layer a quantized method to export it"
            )
        with torch.no_grad():
            codes, scale = self._codes_scale(x.detach())
        return QTensor(codes, scale, fmt)

    @property
    def fmt(self) -> CodeFormat | None:
        return None

    def regularization(self) -> torch.Tensor | None:
        """A term to add to the loss (PACT's alpha L2), or None."""
        return None

    def initialize(self, x: torch.Tensor) -> None:  # noqa: B027 (deliberately empty default)
        """Set data-dependent state from ``x`` (LSQ's step size); nothing for most methods."""

    def is_initialized(self) -> bool:
        """Whether the data-dependent state is set (the ``initialized`` buffer, where there is one)."""
        flag = getattr(self, "initialized", None)
        if flag is None or getattr(self, "_ready", False):
            return True
        self._ready = bool(flag)
        return self._ready

    def _load_from_state_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = False  # re-read the loaded ``initialized`` flag

    def extra_repr(self) -> str:
        s = self.spec
        text = f"method={s.method}, bits={s.bits}"
        return text + (", per_channel=True" if s.per_channel else "")


# --------------------------------------------------------------------------------------------
# float


class IdentityQuantizer(Quantizer):
    """Float weights: the identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ReLUQuantizer(Quantizer):
    """Float activations: a plain ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


# --------------------------------------------------------------------------------------------
# DoReFa


class DoReFaWeightQuantizer(Quantizer):
    """DoReFa weights: the tanh form (odd codes, scale 1/n) for k >= 2; sign(w) * E|w| for k = 1."""

    def _unit(self, w: torch.Tensor) -> torch.Tensor:
        """``w~ = tanh(w) / (2 max|tanh w|) + 1/2`` in [0, 1] (differentiable, max not detached)."""
        t = torch.tanh(w)
        return t / (2 * t.abs().max().clamp_min(MIN_SCALE)) + 0.5

    def _codes_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.spec.bits
        if k == 1:
            return _sign(w), w.abs().mean().clamp_min(MIN_SCALE)
        n = (1 << k) - 1
        i = round_half_up(self._unit(w) * n).clamp(0, n)
        return 2 * i - n, _const(1.0 / n, w)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        codes, scale = self._codes_scale(w.detach())
        surrogate = w if self.spec.bits == 1 else 2 * self._unit(w) - 1
        return straight_through(surrogate, dequantize(codes, scale))

    @property
    def fmt(self) -> CodeFormat:
        k = self.spec.bits
        if k == 1:
            return CodeFormat(bits=2, signed=True, nominal_bits=1, lattice="binary")
        return CodeFormat(bits=k + 1, signed=True, nominal_bits=k, lattice="odd")


class DoReFaActQuantizer(Quantizer):
    """DoReFa activations: clip to [0, 1], k-bit unsigned codes, scale 1/n, clipped STE."""

    def _codes_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = (1 << self.spec.bits) - 1
        return round_half_up(x.clamp(0, 1) * n).clamp(0, n), _const(1.0 / n, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, scale = self._codes_scale(x.detach())
        return straight_through(x.clamp(0, 1), dequantize(codes, scale))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.spec.bits, signed=False, nominal_bits=self.spec.bits)


# --------------------------------------------------------------------------------------------
# PACT


def _pact_codes(x: torch.Tensor, alpha: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.minimum(x.clamp_min(0), alpha)
    return round_half_up(y * n / alpha).clamp(0, n), alpha / n


class _PACTFunction(torch.autograd.Function):
    """PACT's forward with the paper's gradients (the in-range rounding term of dalpha ignored)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, alpha: torch.Tensor, n: int):
        ctx.save_for_backward(x, alpha)
        return dequantize(*_pact_codes(x, alpha, n))

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g: torch.Tensor):
        x, alpha = ctx.saved_tensors
        grad_x = g * ((x >= 0) & (x <= alpha)).to(g.dtype)
        grad_alpha = (g * (x >= alpha).to(g.dtype)).sum().reshape(alpha.shape)
        return grad_x, grad_alpha, None


class PACTQuantizer(Quantizer):
    """PACT activations: learned clip level ``alpha`` (kept >= MIN_SCALE, gradient straight through)."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__(spec)
        self.alpha = nn.Parameter(torch.tensor(spec.pact_init))

    @property
    def levels(self) -> int:
        return (1 << self.spec.bits) - 1

    def _codes_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.alpha.detach().clamp_min(MIN_SCALE).to(x.dtype)
        return _pact_codes(x, alpha, self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PACTFunction.apply(x, _positive(self.alpha).to(x.dtype), self.levels)

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.spec.bits, signed=False, nominal_bits=self.spec.bits)

    def regularization(self) -> torch.Tensor | None:
        if self.spec.pact_l2 == 0:
            return None
        return self.spec.pact_l2 * self.alpha**2


# --------------------------------------------------------------------------------------------
# XNOR


class XNORWeightQuantizer(Quantizer):
    """XNOR-Net weights: ``alpha_c * sign(W)``, ``alpha_c = mean|W_c|`` per output channel."""

    @staticmethod
    def _alpha(w: torch.Tensor) -> torch.Tensor:
        return _per_channel(w.abs()).mean(dim=1).clamp_min(MIN_SCALE)

    def _codes_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _sign(w), self._alpha(w)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        signs = straight_through(w.clamp(-1, 1), _sign(w.detach()))
        return dequantize(signs, self._alpha(w))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=2, signed=True, nominal_bits=1, lattice="binary")


class XNORActQuantizer(Quantizer):
    """XNOR-Net activations: ``sign(x)`` (codes +-1, scale 1), STE clipped at ``|x| <= 1``."""

    def _codes_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _sign(x), _const(1.0, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, scale = self._codes_scale(x.detach())
        return straight_through(x.clamp(-1, 1), dequantize(codes, scale))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=2, signed=True, nominal_bits=1, lattice="binary")


# --------------------------------------------------------------------------------------------
# Ternary (TWN)


class TernaryWeightQuantizer(Quantizer):
    """TWN weights: threshold ``0.7 mean|W|``, scale = mean |W| of the kept weights, identity STE."""

    def _codes_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = _per_channel(w.abs()) if self.spec.per_channel else w.abs().reshape(1, -1)
        delta = 0.7 * a.mean(dim=1, keepdim=True)
        keep = a > delta
        count = keep.sum(dim=1).clamp_min(1).to(w.dtype)  # kept weights, not the zeros
        alpha = ((a * keep).sum(dim=1) / count).clamp_min(MIN_SCALE)
        codes = torch.where(keep.reshape(w.shape), torch.sign(w), torch.zeros_like(w))  # no -0.0
        return codes, (alpha if self.spec.per_channel else alpha[0])

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        codes, scale = self._codes_scale(w.detach())
        return straight_through(w, dequantize(codes, scale))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=2, signed=True, nominal_bits=2, lattice="ternary")


# --------------------------------------------------------------------------------------------
# LSQ


def _lsq_codes(v: torch.Tensor, step: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
    q = v / broadcast_scale(step, v)
    return round_half_up(q.clamp(-qn, qp))


class _LSQFunction(torch.autograd.Function):
    """LSQ's forward with the paper's gradients (clipped STE for v, scaled step gradient)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        v: torch.Tensor,
        step: torch.Tensor,
        qn: int,
        qp: int,
        grad_scale: float,
    ):
        ctx.save_for_backward(v, step)
        ctx.bounds = (qn, qp, grad_scale)
        return dequantize(_lsq_codes(v, step, qn, qp), step)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g: torch.Tensor):
        v, step = ctx.saved_tensors
        qn, qp, grad_scale = ctx.bounds
        q = v / broadcast_scale(step, v)
        inside = (q > -qn) & (q < qp)
        grad_v = g * inside.to(g.dtype)
        outside = torch.where(q <= -qn, torch.full_like(q, -qn), torch.full_like(q, qp))
        d_step = torch.where(inside, round_half_up(q) - q, outside)
        contrib = g * d_step
        grad_step = _per_channel(contrib).sum(dim=1) if step.dim() else contrib.sum()
        return grad_v, grad_step * grad_scale, None, None, None


class LSQWeightQuantizer(Quantizer):
    """LSQ weights: signed full-range codes, learned step (per tensor, or per output channel)."""

    def __init__(self, spec: QuantSpec, channels: int | None = None) -> None:
        super().__init__(spec)
        self.qn = 1 << (spec.bits - 1)
        self.qp = (1 << (spec.bits - 1)) - 1
        shape = (channels or 1,) if spec.per_channel else ()
        self.step = nn.Parameter(torch.ones(shape))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # host-side copy of ``initialized`` once it is True (avoids a sync per forward)

    def _init_step(self, w: torch.Tensor) -> torch.Tensor:
        a = w.detach().abs()
        mean = _per_channel(a).mean(dim=1) if self.spec.per_channel else a.mean()
        return (2 * mean / math.sqrt(self.qp)).clamp_min(MIN_SCALE).to(self.step.dtype)

    def initialize(self, x: torch.Tensor) -> None:
        """Step = ``2 mean|w| / sqrt(Qp)`` from the weights ``x`` (done by the first forward)."""
        with torch.no_grad():
            value = self._init_step(x)
            if self.step.shape == value.shape:
                self.step.copy_(value)
            else:  # per-channel step built without the channel count
                self.step.data = value.clone()
            self.initialized.fill_(True)
        self._ready = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        saved = state_dict.get(prefix + "step")
        if saved is not None and saved.shape != self.step.shape and self.spec.per_channel:
            self.step.data = torch.empty_like(saved, device=self.step.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _codes_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.step.detach() if self.is_initialized() else self._init_step(w)
        step = step.clamp_min(MIN_SCALE).to(w.dtype)
        return _lsq_codes(w, step, self.qn, self.qp), step

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.is_initialized():
            self.initialize(w)
        grad_scale = 1.0 / math.sqrt(w.numel() * self.qp)
        return _LSQFunction.apply(w, _positive(self.step).to(w.dtype), self.qn, self.qp, grad_scale)

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.spec.bits, signed=True, nominal_bits=self.spec.bits)


class LSQActQuantizer(Quantizer):
    """LSQ activations: unsigned codes (the clip is the ReLU), learned per-tensor step.

    The step is set from the first training batch (``2 mean(relu(x)) / sqrt(Qp)``); before that
    (e.g. eval of a fresh model) it is 1.0. ``initialized`` is a buffer, saved in the state_dict.
    """

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__(spec)
        self.qp = (1 << spec.bits) - 1
        self.step = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # host-side copy of ``initialized`` once it is True (avoids a sync per forward)

    def initialize(self, x: torch.Tensor) -> None:
        """Step = ``2 mean(relu(x)) / sqrt(Qp)`` (done by the first training forward)."""
        with torch.no_grad():
            value = 2 * x.detach().clamp_min(0).mean() / math.sqrt(self.qp)
            self.step.copy_(value.clamp_min(MIN_SCALE))
            self.initialized.fill_(True)
        self._ready = True

    def _codes_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.step.detach().clamp_min(MIN_SCALE).to(x.dtype)
        return _lsq_codes(x, step, 0, self.qp), step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.is_initialized():
            self.initialize(x)
        features = x[0].numel() if x.dim() > 1 else x.numel()
        grad_scale = 1.0 / math.sqrt(features * self.qp)
        return _LSQFunction.apply(x, _positive(self.step).to(x.dtype), 0, self.qp, grad_scale)

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.spec.bits, signed=False, nominal_bits=self.spec.bits)


# --------------------------------------------------------------------------------------------
# Uniform (min/max)


class UniformWeightQuantizer(Quantizer):
    """Symmetric per-output-channel weights, narrow range, scale ``max|w_c| / (2^(k-1) - 1)``, STE."""

    def _codes_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qmax = (1 << (self.spec.bits - 1)) - 1
        scale = (_per_channel(w.abs()).amax(dim=1) / qmax).clamp_min(MIN_SCALE)
        codes = round_half_up(w / broadcast_scale(scale, w)).clamp(-qmax, qmax)
        return codes, scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        codes, scale = self._codes_scale(w.detach())
        return straight_through(w, dequantize(codes, scale))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.spec.bits, signed=True, nominal_bits=self.spec.bits, lattice="narrow")


class UniformActQuantizer(Quantizer):
    """Unsigned per-tensor activations with a ReLU; scale = running max / n (EMA in training).

    Before the first training batch the running max is 1.0.
    """

    def __init__(self, spec: QuantSpec, momentum: float = EMA_MOMENTUM) -> None:
        super().__init__(spec)
        self.momentum = momentum
        self.levels = (1 << spec.bits) - 1
        self.register_buffer("running_max", torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    def _limit(self, like: torch.Tensor) -> torch.Tensor:
        return self.running_max.clamp_min(MIN_SCALE).to(like.dtype)

    def _codes_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self._limit(x) / self.levels
        return round_half_up(x.clamp_min(0) / scale).clamp(0, self.levels), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            ema_max_(self.running_max, self.initialized, x.detach().max().clamp_min(0), self.momentum)
        codes, scale = self._codes_scale(x.detach())
        surrogate = x.clamp_min(0).clamp(max=self._limit(x))
        return straight_through(surrogate, dequantize(codes, scale))

    @property
    def fmt(self) -> CodeFormat:
        return CodeFormat(bits=self.spec.bits, signed=False, nominal_bits=self.spec.bits)


# --------------------------------------------------------------------------------------------
# Factories


def make_weight_quantizer(spec: QuantSpec, channels: int | None = None) -> Quantizer:
    """The weight quantizer for ``spec`` (``channels`` = output channels, for per-channel LSQ)."""
    if spec.is_float:
        return IdentityQuantizer(spec)
    if spec.method not in WEIGHT_METHODS:
        raise UserError(
            f"weight quantizer: method {spec.method!r} quantizes activations only; "
            f"weight methods are {', '.join(WEIGHT_METHODS)}"
        )
    if spec.method in ("lsq", "uniform") and spec.bits < 2:
        raise UserError(
            f"weight quantizer: method {spec.method!r} needs bits >= 2 for signed weights, got "
            f"bits={spec.bits}; for 1-bit weights use 'xnor' or 'dorefa'"
        )
    if spec.method == "lsq":
        return LSQWeightQuantizer(spec, channels)
    classes: dict[str, type[Quantizer]] = {
        "dorefa": DoReFaWeightQuantizer,
        "xnor": XNORWeightQuantizer,
        "ternary": TernaryWeightQuantizer,
        "uniform": UniformWeightQuantizer,
    }
    return classes[spec.method](spec)


def make_act_quantizer(spec: QuantSpec) -> Quantizer:
    """The activation quantizer for ``spec``; it includes the nonlinearity (input: pre-ReLU)."""
    if spec.is_float:
        return ReLUQuantizer(spec)
    if spec.method not in ACT_METHODS:
        raise UserError(
            f"activation quantizer: method {spec.method!r} quantizes weights only; "
            f"activation methods are {', '.join(ACT_METHODS)}"
        )
    classes: dict[str, type[Quantizer]] = {
        "dorefa": DoReFaActQuantizer,
        "pact": PACTQuantizer,
        "xnor": XNORActQuantizer,
        "lsq": LSQActQuantizer,
        "uniform": UniformActQuantizer,
    }
    return classes[spec.method](spec)


def regularization_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum of every quantizer's :meth:`Quantizer.regularization` in ``model``, or None if there is none."""
    terms = [r for m in model.modules() if isinstance(m, Quantizer) and (r := m.regularization()) is not None]
    return torch.stack([t.reshape(()) for t in terms]).sum() if terms else None
