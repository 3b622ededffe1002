"""Tests for qat.quantizers and qat.ste: hand-derived goldens, gradients against the papers' formulas,
exact ``codes * scale == forward`` in eval mode, codes inside their format and lattice, degenerate inputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from qat.quantizers import (
    MIN_SCALE,
    CodeFormat,
    DoReFaActQuantizer,
    DoReFaWeightQuantizer,
    IdentityQuantizer,
    LSQActQuantizer,
    LSQWeightQuantizer,
    PACTQuantizer,
    QuantSpec,
    ReLUQuantizer,
    TernaryWeightQuantizer,
    UniformActQuantizer,
    UniformWeightQuantizer,
    XNORActQuantizer,
    XNORWeightQuantizer,
    make_act_quantizer,
    make_weight_quantizer,
    regularization_loss,
)
from qat.ste import round_half_up, straight_through


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def weight_q(method: str, bits: int, **kw: object):
    return make_weight_quantizer(QuantSpec(method=method, bits=bits, **kw))  # type: ignore[arg-type]


def act_q(method: str, bits: int, **kw: object):
    return make_act_quantizer(QuantSpec(method=method, bits=bits, **kw))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- ste


def test_round_half_up_ties() -> None:
    # floor(x + 0.5): -2.5 -> floor(-2.0) = -2; -1.5 -> -1; -0.5 -> floor(0) = 0; 0.5 -> 1; 2.5 -> 3.
    # (torch.round, half to even, would give -2, -2, -0, 0, 2.)
    exact(round_half_up(t(-2.5, -1.5, -0.5, 0.5, 2.5, 1.25, -1.25)), t(-2, -1, 0, 1, 3, 1, -1))


def test_straight_through_value_and_gradient() -> None:
    x = t(0.3, -1.7, 2.2).requires_grad_()
    value = t(0.0, -2.0, 2.0)
    y = straight_through(x * 3, value)
    exact(y, value)
    y.backward(t(1.0, 2.0, 3.0))
    exact(x.grad, t(3.0, 6.0, 9.0))  # d(3x)/dx times the incoming gradient
    with pytest.raises(ValueError, match="shape"):
        straight_through(x, t(1.0))


# ---------------------------------------------------------------------------------------------- spec


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"method": "int8"}, ["method", "'int8'", "dorefa", "uniform"]),
        ({"method": "dorefa", "bits": 0}, ["bits", "0"]),
        ({"method": "dorefa", "bits": 28}, ["bits", "28", "24"]),
        ({"method": "dorefa", "bits": True}, ["bits", "True"]),
        ({"method": "dorefa", "bits": 4.0}, ["bits", "4.0"]),
        ({"method": "xnor", "bits": 2}, ["xnor", "bits: 1"]),
        ({"method": "ternary", "bits": 4}, ["ternary", "bits: 2"]),
        ({"method": "pact", "bits": 4, "pact_init": 0.0}, ["pact_init", "> 0"]),
        ({"method": "pact", "bits": 4, "pact_init": float("nan")}, ["pact_init", "finite"]),
        ({"method": "pact", "bits": 4, "pact_l2": -1e-4}, ["pact_l2", ">= 0"]),
        ({"method": "lsq", "bits": 4, "per_channel": "yes"}, ["per_channel", "'yes'"]),
    ],
)
def test_spec_rejects_bad_fields(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(UserError) as err:
        QuantSpec(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_spec_is_float_and_defaults() -> None:
    assert QuantSpec().is_float
    assert QuantSpec(method="dorefa", bits=32).is_float
    assert QuantSpec(method="xnor", bits=32).is_float  # 32 = not quantized, for every method
    assert not QuantSpec(method="dorefa", bits=4).is_float
    spec = QuantSpec(method="pact", bits=4, pact_init=6, pact_l2=0)
    assert isinstance(spec.pact_init, float) and spec.pact_init == 6.0


def test_factories_reject_meaningless_combinations() -> None:
    with pytest.raises(UserError, match="activations only.*float, dorefa, xnor, ternary, lsq, uniform"):
        weight_q("pact", 4)
    with pytest.raises(UserError, match="weights only.*float, dorefa, pact, xnor, lsq, uniform"):
        act_q("ternary", 2)
    for method in ("lsq", "uniform"):
        with pytest.raises(UserError, match="bits >= 2"):
            weight_q(method, 1)
    assert isinstance(make_weight_quantizer(QuantSpec()), IdentityQuantizer)
    assert isinstance(make_act_quantizer(QuantSpec(method="pact", bits=32)), ReLUQuantizer)


# ---------------------------------------------------------------------------------------------- formats


def test_code_format_ranges_and_dict() -> None:
    # odd, k = 2: the odd integers in [-(2^2-1), 2^2-1] = {-3, -1, 1, 3}, stored in 3 bits.
    odd = CodeFormat(bits=3, signed=True, nominal_bits=2, lattice="odd")
    assert (odd.min, odd.max) == (-3, 3)
    assert odd.int_format == IntFormat(3, True)
    assert odd.to_yaml() == {"bits": 3, "signed": True, "nominal_bits": 2, "lattice": "odd"}
    assert odd.contains(t(-3, -1, 1, 3)) and not odd.contains(t(0.0)) and not odd.contains(t(5.0))
    narrow = CodeFormat(bits=8, signed=True, nominal_bits=8, lattice="narrow")  # [-127, 127]
    assert (narrow.min, narrow.max) == (-127, 127)
    assert narrow.contains(t(-127, 127)) and not narrow.contains(t(-128.0))
    full = CodeFormat(bits=4, signed=False, nominal_bits=4)  # [0, 15]
    assert (full.min, full.max) == (0, 15) and not full.contains(t(-1.0)) and not full.contains(t(0.5))
    binary = CodeFormat(bits=2, signed=True, nominal_bits=1, lattice="binary")
    assert binary.contains(t(-1, 1)) and not binary.contains(t(0.0))
    ternary = CodeFormat(bits=2, signed=True, nominal_bits=2, lattice="ternary")
    assert ternary.contains(t(-1, 0, 1)) and not ternary.contains(t(2.0))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"bits": 3, "signed": True, "nominal_bits": 2, "lattice": "even"}, "lattice"),
        ({"bits": 4, "signed": True, "nominal_bits": 2, "lattice": "odd"}, "3 bits"),
        ({"bits": 3, "signed": True, "nominal_bits": 1, "lattice": "binary"}, "2 bits"),
        ({"bits": 4, "signed": False, "nominal_bits": 4, "lattice": "narrow"}, "signed"),
        ({"bits": 4, "signed": True, "nominal_bits": 5}, "nominal_bits"),
        ({"bits": 0, "signed": True, "nominal_bits": 1}, "bits"),
    ],
)
def test_code_format_rejects_inconsistent(kwargs: dict, word: str) -> None:
    with pytest.raises(UserError, match=word):
        CodeFormat(**kwargs)


@pytest.mark.parametrize(
    ("role", "spec", "expected"),
    [
        ("w", QuantSpec("dorefa", 1), {"bits": 2, "signed": True, "nominal_bits": 1, "lattice": "binary"}),
        ("w", QuantSpec("dorefa", 4), {"bits": 5, "signed": True, "nominal_bits": 4, "lattice": "odd"}),
        ("a", QuantSpec("dorefa", 4), {"bits": 4, "signed": False, "nominal_bits": 4, "lattice": "full"}),
        ("a", QuantSpec("pact", 3), {"bits": 3, "signed": False, "nominal_bits": 3, "lattice": "full"}),
        ("w", QuantSpec("xnor", 1), {"bits": 2, "signed": True, "nominal_bits": 1, "lattice": "binary"}),
        ("a", QuantSpec("xnor", 1), {"bits": 2, "signed": True, "nominal_bits": 1, "lattice": "binary"}),
        ("w", QuantSpec("ternary", 2), {"bits": 2, "signed": True, "nominal_bits": 2, "lattice": "ternary"}),
        ("w", QuantSpec("lsq", 4), {"bits": 4, "signed": True, "nominal_bits": 4, "lattice": "full"}),
        ("a", QuantSpec("lsq", 2), {"bits": 2, "signed": False, "nominal_bits": 2, "lattice": "full"}),
        ("w", QuantSpec("uniform", 8), {"bits": 8, "signed": True, "nominal_bits": 8, "lattice": "narrow"}),
        ("a", QuantSpec("uniform", 8), {"bits": 8, "signed": False, "nominal_bits": 8, "lattice": "full"}),
    ],
)
def test_formats_per_method(role: str, spec: QuantSpec, expected: dict) -> None:
    q = make_weight_quantizer(spec) if role == "w" else make_act_quantizer(spec)
    assert q.fmt is not None and q.fmt == CodeFormat(**expected)


def test_float_has_no_format_and_no_codes() -> None:
    w, a = make_weight_quantizer(QuantSpec()), make_act_quantizer(QuantSpec())
    x = t(-1.0, 2.0)
    assert w.fmt is None and a.fmt is None
    exact(w(x), x)
    exact(a(x), t(0.0, 2.0))
    with pytest.raises(UserError, match="not quantized"):
        w.quantize(x)


# ---------------------------------------------------------------------------------------------- DoReFa


# w = atanh(p) so that tanh(w) = p (to float32 precision): max|tanh w| = 0.8, and
# w~ = p / 1.6 + 0.5 = [1, 0, 0.625, 0.4375, 0.5].
DOREFA_P = (0.8, -0.8, 0.2, -0.1, 0.0)


@pytest.mark.parametrize(
    ("bits", "codes"),
    [
        # k=2, n=3: n w~ = [3, 0, 1.875, 1.3125, 1.5] -> R = [3, 0, 2, 1, 2] (1.5 ties up)
        #           -> codes 2i - 3 = [3, -3, 1, -1, 1]
        (2, (3, -3, 1, -1, 1)),
        # k=3, n=7: n w~ = [7, 0, 4.375, 3.0625, 3.5] -> R = [7, 0, 4, 3, 4] -> 2i - 7 = [7, -7, 1, -1, 1]
        (3, (7, -7, 1, -1, 1)),
    ],
)
def test_dorefa_weight_golden(bits: int, codes: tuple[int, ...]) -> None:
    q = weight_q("dorefa", bits)
    w = torch.atanh(t(*DOREFA_P))
    qt = q.quantize(w)
    n = 2**bits - 1
    exact(qt.codes, t(*codes))
    exact(qt.scale, torch.tensor(1.0 / n))
    exact(q(w), t(*codes) * torch.tensor(1.0 / n))


def test_dorefa_weight_one_bit_golden_and_identity_gradient() -> None:
    # E = mean|w| = (0.5 + 1.5 + 0 + 1) / 4 = 0.75; codes = sign(w) with sign(0) = +1.
    q = weight_q("dorefa", 1)
    w = t(0.5, -1.5, 0.0, 1.0).requires_grad_()
    qt = q.quantize(w)
    exact(qt.codes, t(1, -1, 1, 1))
    exact(qt.scale, torch.tensor(0.75))
    y = q(w)
    exact(y, t(0.75, -0.75, 0.75, 0.75))
    g = t(1.0, -2.0, 3.0, 0.5)
    y.backward(g)
    exact(w.grad, g)  # tensorpack: the sign's gradient is the identity, E is detached


def test_dorefa_weight_gradient_through_tanh_and_max() -> None:
    # Surrogate 2 w~ - 1 = tanh(w) / m with m = max|tanh w| at index j:
    # dL/dw_k = g_k (1 - t_k^2) / m - [k == j] sign(t_j) (1 - t_j^2) / m^2 * sum_i g_i t_i.
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3).requires_grad_()
    g = torch.randn_like(w)
    weight_q("dorefa", 3)(w).backward(g)
    tw = torch.tanh(w.detach())
    m = tw.abs().max()
    j = tw.abs().argmax()
    expected = g * (1 - tw**2) / m
    flat = expected.reshape(-1)
    tj = tw.reshape(-1)[j]
    flat[j] -= torch.sign(tj) * (1 - tj**2) / m**2 * (g * tw).sum()
    torch.testing.assert_close(w.grad, expected)


@pytest.mark.parametrize(
    ("bits", "x", "codes"),
    [
        # k=1, n=1: clip(x, 0, 1) = [0, 0.49, 0.5, 0.7, 1] -> R = [0, 0, 1, 1, 1]
        (1, (-0.2, 0.49, 0.5, 0.7, 1.3), (0, 0, 1, 1, 1)),
        # k=2, n=3: 3 clip(x) = [1.5, 0.3, 2.7, 0, 3] -> R = [2, 0, 3, 0, 3]
        (2, (0.5, 0.1, 0.9, -3.0, 2.0), (2, 0, 3, 0, 3)),
        # k=4, n=15: 15 x = [7.5, 0.5, 14.5, 15] -> R = [8, 1, 15, 15]
        (4, (0.5, 1 / 30, 14.5 / 15, 1.0), (8, 1, 15, 15)),
    ],
)
def test_dorefa_activation_golden(bits: int, x: tuple, codes: tuple) -> None:
    q = act_q("dorefa", bits)
    xs = t(*x)
    qt = q.quantize(xs)
    exact(qt.codes, t(*codes))
    exact(q(xs), t(*codes) * torch.tensor(1.0 / (2**bits - 1)))


def test_dorefa_activation_clipped_ste() -> None:
    x = t(-0.5, 0.0, 0.3, 1.0, 1.5).requires_grad_()
    act_q("dorefa", 2)(x).backward(t(1, 2, 3, 4, 5))
    exact(x.grad, t(0, 2, 3, 4, 0))  # 1[0 <= x <= 1]


# ---------------------------------------------------------------------------------------------- PACT


@pytest.mark.parametrize(
    ("bits", "alpha", "x", "codes"),
    [
        # k=2, alpha=3: scale 1; y = clip(x, 0, 3) = [0, .5, 1.5, 2.5, 3, 3, 0]
        #   -> R(y*3/3) = [0, 1, 2, 3, 3, 3, 0]
        (2, 3.0, (-1.0, 0.5, 1.5, 2.5, 3.0, 4.0, -0.5), (0, 1, 2, 3, 3, 3, 0)),
        # k=1, alpha=2: scale 2; y/2 = [.45, .5, .55, 1, 0] -> [0, 1, 1, 1, 0]
        (1, 2.0, (0.9, 1.0, 1.1, 5.0, -1.0), (0, 1, 1, 1, 0)),
        # k=3, alpha=7: scale 1; y = [2.5, 3.49, 6.5, 7] -> [3, 3, 7, 7]
        (3, 7.0, (2.5, 3.49, 6.5, 7.5), (3, 3, 7, 7)),
    ],
)
def test_pact_golden(bits: int, alpha: float, x: tuple, codes: tuple) -> None:
    q = act_q("pact", bits, pact_init=alpha)
    xs = t(*x)
    qt = q.quantize(xs)
    exact(qt.codes, t(*codes))
    exact(qt.scale, torch.tensor(alpha) / (2**bits - 1))
    exact(q(xs), qt.dequantize())


def test_pact_gradients_match_paper() -> None:
    # dL/dx = g 1[0 <= x <= alpha] = [0, 2, 3, 4, 0]; dL/dalpha = sum g 1[x >= alpha] = 4 + 5 = 9.
    q = act_q("pact", 2, pact_init=3.0)
    x = t(-1.0, 0.0, 1.0, 3.0, 4.0).requires_grad_()
    q(x).backward(t(1, 2, 3, 4, 5))
    exact(x.grad, t(0, 2, 3, 4, 0))
    exact(q.alpha.grad, torch.tensor(9.0))


def test_pact_alpha_stays_positive() -> None:
    q = act_q("pact", 4)
    with torch.no_grad():
        q.alpha.fill_(-1.0)
    x = t(-1.0, 0.0, 0.5).requires_grad_()
    y = q(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    # alpha is used as MIN_SCALE; the gradient still reaches the raw parameter: x >= MIN_SCALE at 0.5 only
    exact(q.alpha.grad, torch.tensor(1.0))
    assert torch.isfinite(q.quantize(x).codes).all() and float(q.quantize(x).scale) > 0


def test_pact_regularization() -> None:
    q = act_q("pact", 4, pact_init=10.0, pact_l2=0.01)
    r = q.regularization()
    assert r is not None
    torch.testing.assert_close(r, torch.tensor(1.0))  # 0.01 * 10^2
    r.backward()
    torch.testing.assert_close(q.alpha.grad, torch.tensor(0.2))  # 2 * 0.01 * 10
    assert act_q("pact", 4).regularization() is None  # pact_l2 = 0
    assert act_q("lsq", 4).regularization() is None
    model = nn.Sequential(q, act_q("pact", 4, pact_init=2.0, pact_l2=0.5), act_q("lsq", 4))
    torch.testing.assert_close(regularization_loss(model), torch.tensor(1.0 + 0.5 * 4.0))
    assert regularization_loss(nn.Sequential(act_q("lsq", 4))) is None


# ---------------------------------------------------------------------------------------------- XNOR


def test_xnor_weight_golden() -> None:
    # alpha_c = mean|W_c|: row 0 (0.5 + 1.5 + 0)/3 = 2/3, row 1 (2 + 2 + 1)/3 = 5/3; sign(0) = +1.
    q = weight_q("xnor", 1)
    w = torch.tensor([[0.5, -1.5, 0.0], [2.0, -2.0, 1.0]])
    qt = q.quantize(w)
    exact(qt.codes, torch.tensor([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0]]))
    exact(qt.scale, torch.tensor([2 / 3, 5 / 3]))
    exact(q(w), qt.codes * torch.tensor([[2 / 3], [5 / 3]]))


def test_xnor_weight_gradient_matches_paper() -> None:
    # d(alpha_c sign(W))/dW: g_i alpha_c 1[|W_i| <= 1] + sign(W_i)/n sum_j g_j sign(W_j)
    # (n = weights per channel): the exact form of the paper's g (1/n + alpha 1[|W| <= 1]),
    # as in jiecaoyu/XNOR-Net-PyTorch updateBinaryGradWeight.
    torch.manual_seed(1)
    w = (torch.randn(3, 2, 3, 3) * 1.2).requires_grad_()
    g = torch.randn_like(w)
    weight_q("xnor", 1)(w).backward(g)
    wd = w.detach()
    n = wd[0].numel()
    alpha = wd.abs().reshape(3, -1).mean(1).reshape(3, 1, 1, 1)
    s = torch.sign(wd)
    expected = g * alpha * (wd.abs() <= 1) + s / n * (g * s).reshape(3, -1).sum(1).reshape(3, 1, 1, 1)
    torch.testing.assert_close(w.grad, expected)


def test_xnor_activation_golden_and_ste() -> None:
    q = act_q("xnor", 1)
    x = t(-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0).requires_grad_()
    y = q(x)
    exact(y, t(-1, -1, -1, 1, 1, 1, 1))  # sign with sign(0) = +1, scale 1
    exact(q.quantize(x).scale, torch.tensor(1.0))
    y.backward(torch.ones(7))
    exact(x.grad, t(0, 1, 1, 1, 1, 1, 0))  # 1[|x| <= 1]


# ---------------------------------------------------------------------------------------------- ternary


def test_ternary_per_layer_golden() -> None:
    # mean|W| = 3.25/7, Delta = 0.7 * 3.25/7 = 0.325;
    # kept |W| > 0.325: 1.0, 0.5, -0.75, 0.5 (4 kept, 3 zeros);
    # alpha = (1 + 0.5 + 0.75 + 0.5) / 4 = 0.6875 (dividing by the 3 zeros, the seed bug, would give 0.9167).
    q = weight_q("ternary", 2)
    w = t(1.0, -0.25, 0.5, -0.75, 0.0, 0.25, 0.5).requires_grad_()
    qt = q.quantize(w)
    exact(qt.codes, t(1, 0, 1, -1, 0, 0, 1))
    exact(qt.scale, torch.tensor(0.6875))
    y = q(w)
    exact(y, t(0.6875, 0, 0.6875, -0.6875, 0, 0, 0.6875))
    g = torch.arange(7.0)
    y.backward(g)
    exact(w.grad, g)  # identity STE


def test_ternary_per_channel_golden() -> None:
    w = torch.tensor([[1.0, -0.25, 0.5, 0.0], [0.0, 0.0, 2.0, -2.0]])
    # per channel: row 0 mean 0.4375, Delta 0.30625, kept 1.0, 0.5 -> alpha 0.75;
    #              row 1 mean 1.0, Delta 0.7, kept 2, -2 -> alpha 2.0
    qt = weight_q("ternary", 2, per_channel=True).quantize(w)
    exact(qt.codes, torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, -1]]))
    exact(qt.scale, t(0.75, 2.0))
    # per layer: mean 5.75/8 = 0.71875, Delta 0.503125; kept 1.0, 2.0, -2.0 -> alpha 5/3
    qt = weight_q("ternary", 2).quantize(w)
    exact(qt.codes, torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, -1]]))
    exact(qt.scale, torch.tensor(5.0 / 3.0))


# ---------------------------------------------------------------------------------------------- LSQ


def set_step(q: nn.Module, value: torch.Tensor | float) -> None:
    with torch.no_grad():
        q.step.copy_(torch.as_tensor(value))
        q.initialized.fill_(True)


def test_lsq_weight_golden_and_gradients() -> None:
    # 3 bits signed: Qn = 4, Qp = 3; s = 0.5; v/s = [-2.5, -0.5, 0.5, 2.5, -20, 20]
    # clip -> [-2.5, -0.5, 0.5, 2.5, -4, 3]; R -> [-2, 0, 1, 3, -4, 3]
    q = weight_q("lsq", 3)
    set_step(q, 0.5)
    v = t(-1.25, -0.25, 0.25, 1.25, -10.0, 10.0).requires_grad_()
    qt = q.quantize(v)
    exact(qt.codes, t(-2, 0, 1, 3, -4, 3))
    y = q(v)
    exact(y, t(-1.0, 0.0, 0.5, 1.5, -2.0, 1.5))
    y.backward(torch.ones(6))
    exact(v.grad, t(1, 1, 1, 1, 0, 0))  # 1[-Qn < v/s < Qp]
    # ds: inside -v/s + R(v/s) = [0.5, 0.5, 0.5, 0.5]; below -Qn = -4; above Qp = 3 -> sum 1.0;
    # gradient scale 1/sqrt(N Qp) = 1/sqrt(6 * 3)
    torch.testing.assert_close(q.step.grad, torch.tensor(1.0 / math.sqrt(18.0)))


def test_lsq_weight_two_bits_golden() -> None:
    # 2 bits: Qn = 2, Qp = 1, s = 1: clip -> [-2, -1.5, -0.5, 0.5, 1] -> R -> [-2, -1, 0, 1, 1]
    q = weight_q("lsq", 2)
    set_step(q, 1.0)
    exact(q.quantize(t(-2.5, -1.5, -0.5, 0.5, 1.5)).codes, t(-2, -1, 0, 1, 1))


def test_lsq_weight_init_and_per_channel_gradient() -> None:
    # s0 = 2 mean|w| / sqrt(Qp): per tensor mean|w| = 2 -> 4/sqrt(3); per channel [2/sqrt(3), 6/sqrt(3)]
    w = torch.tensor([[1.0, -1.0], [3.0, -3.0]])
    q = weight_q("lsq", 3)
    assert not bool(q.initialized)
    q(w)
    assert bool(q.initialized)
    torch.testing.assert_close(q.step.detach(), torch.tensor(4 / math.sqrt(3)))
    qc = make_weight_quantizer(QuantSpec("lsq", 3, per_channel=True), channels=2)
    q_lazy = weight_q("lsq", 3, per_channel=True)  # channel count found on the first forward
    for quant in (qc, q_lazy):
        quant(w)
        torch.testing.assert_close(quant.step.detach(), t(2 / math.sqrt(3), 6 / math.sqrt(3)))
    # per-channel step gradient: each channel sums its own elements' ds; scale 1/sqrt(numel * Qp)
    set_step(qc, t(0.5, 1.0))
    v = torch.tensor([[0.25, 10.0], [-0.75, 0.5]]).requires_grad_()
    qc(v).backward(torch.ones(2, 2))
    # row 0: v/s = [0.5, 20] -> [-0.5 + R(0.5) = 0.5, Qp = 3] = 3.5;
    # row 1: v/s = [-0.75, 0.5] -> [0.75 + R(-0.75) = 0.75 - 1 = -0.25, 0.5] = 0.25
    torch.testing.assert_close(qc.step.grad, t(3.5, 0.25) / math.sqrt(4 * 3))


def test_lsq_activation_golden_init_and_gradient() -> None:
    # unsigned 2 bits: Qn = 0, Qp = 3; s = 0.5: x/s = [-2, 0.5, 1.5, 2.5, 10, 0]
    #   -> clip [0, .5, 1.5, 2.5, 3, 0] -> R = [0, 1, 2, 3, 3, 0]
    q = act_q("lsq", 2)
    set_step(q, 0.5)
    x = torch.tensor([[-1.0, 0.25, 0.75], [1.25, 5.0, 0.0]]).requires_grad_()
    exact(q.quantize(x).codes, torch.tensor([[0.0, 1, 2], [3, 3, 0]]))
    q(x).backward(torch.ones(2, 3))
    exact(x.grad, torch.tensor([[0.0, 1, 1], [1, 0, 0]]))
    # ds: [0 (below, -Qn = 0), 0.5, 0.5, 0.5, 3 (above), 0 (x = 0 is at -Qn)] = 4.5; N = 3 features per sample
    torch.testing.assert_close(q.step.grad, torch.tensor(4.5 / math.sqrt(3 * 3)))
    # 1 bit: Qp = 1, s = 1: [0, R(0.49) = 0, R(0.5) = 1, 1]
    q1 = act_q("lsq", 1)
    set_step(q1, 1.0)
    exact(q1.quantize(t(-3.0, 0.49, 0.5, 7.0)).codes, t(0, 0, 1, 1))
    # lazy init from the first TRAINING batch: 2 mean(relu(x)) / sqrt(Qp) = 2 * (0+1+2+3)/4 / sqrt(3)
    fresh = act_q("lsq", 2)
    fresh.eval()
    fresh(t(5.0, 6.0))
    assert not bool(fresh.initialized) and float(fresh.step.detach()) == 1.0  # eval never initializes
    fresh.train()
    fresh(t(-1.0, 1.0, 2.0, 3.0))
    torch.testing.assert_close(fresh.step.detach(), torch.tensor(3.0 / math.sqrt(3)))
    fresh(t(100.0))
    torch.testing.assert_close(fresh.step.detach(), torch.tensor(3.0 / math.sqrt(3)))  # only once


def test_lsq_step_stays_positive() -> None:
    for q in (weight_q("lsq", 4), act_q("lsq", 4)):
        set_step(q, -1.0)
        x = t(-1.0, 0.0, 2.0).requires_grad_()
        y = q(x)
        assert torch.isfinite(y).all()
        y.sum().backward()
        assert torch.isfinite(q.step.grad).all() and torch.isfinite(x.grad).all()
        assert float(q.quantize(x).scale) == MIN_SCALE


def test_lsq_state_dict_round_trip() -> None:
    src = make_weight_quantizer(QuantSpec("lsq", 4, per_channel=True), channels=3)
    src(torch.randn(3, 5))
    dst = weight_q("lsq", 4, per_channel=True)  # built without the channel count: resized on load
    dst.load_state_dict(src.state_dict())
    exact(dst.step.detach(), src.step.detach())
    assert bool(dst.initialized)
    w = torch.randn(3, 5)
    exact(dst(w), src(w))  # not re-initialized from w
    # loading an uninitialized state makes the next training batch initialize again
    act = act_q("lsq", 2)
    act(t(1.0, 2.0, 3.0))
    act.load_state_dict(act_q("lsq", 2).state_dict())
    assert not bool(act.initialized)
    act(t(-1.0, 1.0, 2.0, 3.0))  # 2 * mean(relu(x)) / sqrt(3) = 3 / sqrt(3)
    torch.testing.assert_close(act.step.detach(), torch.tensor(3.0 / math.sqrt(3)))


# ---------------------------------------------------------------------------------------------- uniform


def test_uniform_weight_golden() -> None:
    # 4 bits narrow, qmax = 7. Row 0: max 7 -> scale 1: [7, -2.5, -0.5, 2.5] -> [7, -2, 0, 3].
    # Row 1: max 3.5 -> scale 0.5: v/s = [0.5, -1.5, 7, -2.5] -> [1, -1, 7, -2].
    # Row 2: all zero -> scale MIN_SCALE, codes 0 (no NaN).
    w = torch.tensor([[7.0, -2.5, -0.5, 2.5], [0.25, -0.75, 3.5, -1.25], [0.0, 0.0, 0.0, 0.0]])
    q = weight_q("uniform", 4)
    qt = q.quantize(w)
    exact(qt.codes, torch.tensor([[7.0, -2, 0, 3], [1, -1, 7, -2], [0, 0, 0, 0]]))
    exact(qt.scale, t(1.0, 0.5, MIN_SCALE))
    exact(q(w), qt.dequantize())
    # 2 bits: qmax = 1, one channel with max 1 -> scale 1: [1, 0.5, -0.5, -0.25] -> [1, 1, 0, 0]
    one_channel = t(1.0, 0.5, -0.5, -0.25).reshape(1, 4)
    exact(weight_q("uniform", 2).quantize(one_channel).codes, t(1, 1, 0, 0).reshape(1, 4))


def test_uniform_activation_ema_and_golden() -> None:
    q = act_q("uniform", 2)  # n = 3
    x = t(-1.0, 0.5, 1.5, 2.5, 3.0).requires_grad_()
    y = q(x)  # first training batch sets running_max = 3 -> scale 1
    exact(q.running_max, torch.tensor(3.0))
    exact(q.quantize(x).codes, t(0, 1, 2, 3, 3))  # R([0, .5, 1.5, 2.5, 3])
    y.backward(torch.ones(5))
    exact(x.grad, t(0, 1, 1, 1, 1))  # 1[0 <= x <= running_max]
    q(t(0.0, 1.0))  # EMA: 0.9 * 3 + 0.1 * 1 = 2.8
    torch.testing.assert_close(q.running_max, torch.tensor(2.8))
    q.eval()
    q(t(100.0))
    torch.testing.assert_close(q.running_max, torch.tensor(2.8))  # frozen in eval
    # 1 bit: running max 2 -> scale 2; x/2 = [0.495, 0.5, 0.505] -> [0, 1, 1]
    q1 = act_q("uniform", 1)
    q1(t(2.0))
    exact(q1.quantize(t(0.99, 1.0, 1.01)).codes, t(0, 1, 1))
    dst = act_q("uniform", 2)
    dst.load_state_dict(q.state_dict())
    exact(dst.running_max, q.running_max)
    assert bool(dst.initialized)


# ---------------------------------------------------------------------------------------------- all methods

WEIGHT_CASES = (
    [("dorefa", b, False) for b in (1, 2, 3, 4, 8)]
    + [("xnor", 1, False), ("ternary", 2, False), ("ternary", 2, True)]
    + [("lsq", b, pc) for b in (2, 3, 4, 8) for pc in (False, True)]
    + [("uniform", b, False) for b in (2, 3, 4, 8)]
)
ACT_CASES = [(m, b) for m in ("dorefa", "pact", "lsq", "uniform") for b in (1, 2, 4, 8)] + [("xnor", 1)]


@pytest.mark.parametrize(("method", "bits", "per_channel"), WEIGHT_CASES)
@settings(max_examples=12)
@given(seed=st.integers(0, 2**31 - 1), magnitude=st.sampled_from([1e-3, 0.05, 1.0, 30.0]))
def test_weight_codes_times_scale_is_forward(
    method: str, bits: int, per_channel: bool, seed: int, magnitude: float
) -> None:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 3, 3, 3, generator=gen) * magnitude
    q = make_weight_quantizer(QuantSpec(method, bits, per_channel=per_channel), channels=4)
    q(w)  # first forward (LSQ initializes its step)
    if method == "lsq":  # move the step off its init value so clipping happens too
        set_step(q, q.step.detach() * 1.5)
    q.eval()
    qt = q.quantize(w)
    exact(qt.dequantize(), q(w))
    assert q.fmt is not None and qt.fmt == q.fmt and q.fmt.contains(qt.codes)
    assert qt.scale.dim() in (0, 1) and bool((qt.scale > 0).all())


@pytest.mark.parametrize(("method", "bits"), ACT_CASES)
@settings(max_examples=12)
@given(seed=st.integers(0, 2**31 - 1), magnitude=st.sampled_from([1e-3, 0.3, 1.0, 30.0]))
def test_activation_codes_times_scale_is_forward(method: str, bits: int, seed: int, magnitude: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 4, 4, generator=gen) * magnitude
    q = make_act_quantizer(QuantSpec(method, bits, pact_init=2.0))
    q.train()
    q(x * 0.7)  # a training batch: LSQ initializes, uniform tracks its max (below the data's)
    q.eval()
    qt = q.quantize(x)
    exact(qt.dequantize(), q(x))
    assert q.fmt is not None and q.fmt.contains(qt.codes)
    assert qt.scale.dim() == 0 and float(qt.scale) > 0


def test_ties_on_the_grid_round_up() -> None:
    # LSQ weights, s = 0.25 (exact): v = (c + 0.5) s for c in -4..2 lands on ties; R gives c + 1 everywhere,
    # including negative ties (-3.5 -> -3, -0.5 -> 0).
    q = weight_q("lsq", 4)
    set_step(q, 0.25)
    c = torch.arange(-4.0, 3.0)
    exact(q.quantize((c + 0.5) * 0.25).codes, c + 1)


@pytest.mark.parametrize(("method", "bits", "per_channel"), WEIGHT_CASES)
def test_zero_weights_are_finite(method: str, bits: int, per_channel: bool) -> None:
    q = make_weight_quantizer(QuantSpec(method, bits, per_channel=per_channel), channels=2)
    w = torch.zeros(2, 3, requires_grad=True)
    y = q(w)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(w.grad).all()
    for p in q.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    qt = q.quantize(w)
    assert q.fmt.contains(qt.codes) and bool((qt.scale > 0).all()) and torch.isfinite(qt.scale).all()


@pytest.mark.parametrize(("method", "bits"), ACT_CASES)
def test_degenerate_activations_are_finite(method: str, bits: int) -> None:
    q = make_act_quantizer(QuantSpec(method, bits))
    for x in (torch.zeros(2, 5), -torch.ones(2, 5)):  # all zero / all negative (ReLU gives zero)
        x = x.clone().requires_grad_()
        y = q(x)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
        for p in q.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all()
        qt = q.quantize(x)
        assert q.fmt.contains(qt.codes) and float(qt.scale) > 0


def test_quantize_never_changes_state() -> None:
    for q in (act_q("uniform", 4), act_q("lsq", 4)):
        q.train()
        before = {k: v.clone() for k, v in q.state_dict().items()}
        q.quantize(torch.randn(8) * 5)
        for k, v in q.state_dict().items():
            exact(v, before[k])


def test_class_per_method() -> None:
    expected_w = {
        "dorefa": DoReFaWeightQuantizer,
        "xnor": XNORWeightQuantizer,
        "ternary": TernaryWeightQuantizer,
        "lsq": LSQWeightQuantizer,
        "uniform": UniformWeightQuantizer,
    }
    expected_a = {
        "dorefa": DoReFaActQuantizer,
        "pact": PACTQuantizer,
        "xnor": XNORActQuantizer,
        "lsq": LSQActQuantizer,
        "uniform": UniformActQuantizer,
    }
    bits = {"xnor": 1, "ternary": 2}
    for method, cls in expected_w.items():
        assert type(weight_q(method, bits.get(method, 4))) is cls
    for method, cls in expected_a.items():
        assert type(act_q(method, bits.get(method, 4))) is cls
