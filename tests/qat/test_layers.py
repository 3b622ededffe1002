"""Tests for qat.layers: drop-in conv/linear with fake-quant weights, QAct, InputQuant and LogitQuant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import UserError
from qat.layers import InputQuant, LogitQuant, QAct, QConv2d, QLinear
from qat.quantizers import CodeFormat, QuantSpec, ReLUQuantizer

WEIGHT_SPECS = [
    QuantSpec(),
    QuantSpec("dorefa", 1),
    QuantSpec("dorefa", 3),
    QuantSpec("xnor", 1),
    QuantSpec("ternary", 2),
    QuantSpec("ternary", 2, per_channel=True),
    QuantSpec("lsq", 4),
    QuantSpec("lsq", 2, per_channel=True),
    QuantSpec("uniform", 8),
]


def spec_id(s: QuantSpec) -> str:
    return f"{s.method}{s.bits}{'-per-channel' if s.per_channel else ''}"


def exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_float_layers_equal_torch_layers() -> None:
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True)
    q = QConv2d(4, 6, 3, stride=2, padding=1, bias=True)
    q.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 9, 9)
    exact(q(x), ref(x))
    ref_fc = nn.Linear(5, 3)
    q_fc = QLinear(5, 3)
    q_fc.load_state_dict(ref_fc.state_dict())
    v = torch.randn(4, 5)
    exact(q_fc(v), ref_fc(v))
    assert isinstance(q, nn.Conv2d) and isinstance(q_fc, nn.Linear)


@pytest.mark.parametrize("spec", WEIGHT_SPECS, ids=spec_id)
def test_qconv2d_uses_fake_quant_weight(spec: QuantSpec) -> None:
    torch.manual_seed(1)
    conv = QConv2d(4, 6, 3, stride=1, padding=1, groups=2, bias=False, weight_spec=spec)
    x = torch.randn(2, 4, 8, 8)
    y = conv(x)  # training mode: LSQ initializes its step here
    exact(y, F.conv2d(x, conv.weight_quant(conv.weight), None, 1, 1, 1, 2))
    y.sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    conv.eval()
    if not spec.is_float:  # the layer computes with exactly codes * scale
        w = conv.weight_quant.quantize(conv.weight)
        assert conv.weight_quant.fmt.contains(w.codes)
        exact(conv(x), F.conv2d(x, w.dequantize(), None, 1, 1, 1, 2))


@pytest.mark.parametrize("spec", WEIGHT_SPECS, ids=spec_id)
def test_qlinear_uses_fake_quant_weight(spec: QuantSpec) -> None:
    torch.manual_seed(2)
    fc = QLinear(7, 5, bias=True, weight_spec=spec)
    x = torch.randn(3, 7)
    exact(fc(x), F.linear(x, fc.weight_quant(fc.weight), fc.bias))
    fc.eval()
    if not spec.is_float:
        w = fc.weight_quant.quantize(fc.weight)
        assert w.scale.dim() == 0 or w.scale.shape == (5,)
        exact(fc(x), F.linear(x, w.dequantize(), fc.bias))


def test_qact() -> None:
    x = torch.tensor([-1.0, 0.25, 3.0])
    float_act = QAct(QuantSpec())
    assert isinstance(float_act.quant, ReLUQuantizer)
    exact(float_act(x), torch.relu(x))
    # PACT 2 bits, alpha = 1.5: scale 0.5; clip -> [0, 0.25, 1.5] -> R(y * 3 / 1.5) = [0, R(0.5) = 1, 3]
    act = QAct(QuantSpec("pact", 2, pact_init=1.5))
    exact(act(x), torch.tensor([0.0, 0.5, 1.5]))
    with pytest.raises(UserError, match="weights only"):
        QAct(QuantSpec("ternary", 2))


def test_model_state_dict_round_trip_keeps_buffers() -> None:
    def build() -> nn.Sequential:
        return nn.Sequential(
            QConv2d(3, 4, 3, padding=1, weight_spec=QuantSpec("lsq", 4, per_channel=True)),
            QAct(QuantSpec("lsq", 3)),
            QConv2d(4, 4, 1, weight_spec=QuantSpec("uniform", 4)),
            QAct(QuantSpec("uniform", 4)),
            nn.Flatten(),
            QLinear(4 * 4 * 4, 3, weight_spec=QuantSpec("dorefa", 2)),
            LogitQuant(bits=12),
        )

    torch.manual_seed(3)
    src = build()
    x = torch.randn(2, 3, 4, 4)
    src(x)
    src(x * 2)  # second batch moves the EMAs
    src.eval()
    dst = build()
    dst.load_state_dict(src.state_dict())
    dst.eval()
    for key, value in src.state_dict().items():
        exact(dst.state_dict()[key], value)
    keys = set(src.state_dict())
    assert {"1.quant.step", "1.quant.initialized", "3.quant.running_max", "3.quant.initialized"} <= keys
    assert {"6.running_max", "6.initialized"} <= keys
    assert {"0.weight_quant.step", "0.weight_quant.initialized"} <= keys
    exact(dst(x), src(x))


def test_input_quant_scale_golden_cifar() -> None:
    # CIFAR-10 normalization: per channel max(|(0-m)/s|, |(1-m)/s|) = 2.05911, 2.12649, 2.11583;
    # the largest is (1 - 0.4822) / 0.2435 = 2.1264887..., divided by 127, in float64, then float32.
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    q = InputQuant(mean, std)
    expected = torch.tensor((1 - 0.4822) / 0.2435 / 127, dtype=torch.float32)
    exact(q.scale, expected)
    assert q.fmt == CodeFormat(bits=8, signed=True, nominal_bits=8, lattice="narrow")
    assert q.fmt.to_yaml() == {"bits": 8, "signed": True, "lattice": "narrow"}
    # every normalized pixel value in [0, 1] lands inside [-127, 127], the extreme one exactly on 127
    pixels = torch.arange(256, dtype=torch.float32) / 255.0
    normed = (pixels - torch.tensor(mean[1])) / torch.tensor(std[1])
    codes = q.quantize(normed).codes
    assert q.fmt.contains(codes) and float(codes.max()) == 127.0


def test_input_quant_codes_golden() -> None:
    # mean -2, std 1: bounds |2|, |3| -> 3; 3 bits: qmax 3, scale 3/3 = 1.
    # x / 1 + 0.5 floored: -2.5 -> -2, -0.5 -> 0, 0.5 -> 1, 2.5 -> 3, 3.7 -> 4 -> clamp 3,
    # -3.5 -> -3, 1.49 -> 1
    q = InputQuant((-2.0,), (1.0,), bits=3)
    exact(q.scale, torch.tensor(1.0))
    x = torch.tensor([-2.5, -0.5, 0.5, 2.5, 3.7, -3.5, 1.49])
    qt = q.quantize(x)
    exact(qt.codes, torch.tensor([-2.0, 0, 1, 3, 3, -3, 1]))
    exact(q(x), qt.dequantize())
    # the contract's float32 expression, written out
    exact(qt.codes, torch.clamp(torch.floor(x / q.scale + 0.5), -3, 3))


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (((0.5, 0.5), (0.2,), 8), "per channel"),
        (((0.5,), (0.0,), 8), "std"),
        (((0.5,), (0.2,), 1), "bits"),
        (((0.5,), (0.2,), 40), "bits"),
    ],
)
def test_input_quant_rejects_bad_arguments(args: tuple, word: str) -> None:
    with pytest.raises(UserError, match=word):
        InputQuant(*args)


def test_logit_quant_golden_and_ema() -> None:
    # 4 bits narrow: qmax 7. First training batch: max|x| = 7 -> running_max 7 -> scale 1;
    # codes R(x): [-2.5 -> -2, -0.5 -> 0, 0.5 -> 1, 2.5 -> 3, -7, 7]
    q = LogitQuant(bits=4)
    x = torch.tensor([-2.5, -0.5, 0.5, 2.5, -7.0, 7.0]).requires_grad_()
    y = q(x)
    exact(q.running_max, torch.tensor(7.0))
    qt = q.quantize(x)
    exact(qt.codes, torch.tensor([-2.0, 0, 1, 3, -7, 7]))
    exact(qt.scale, torch.tensor(1.0))
    exact(y, qt.dequantize())
    y.backward(torch.ones(6))
    exact(x.grad, torch.ones(6))  # inside [-running_max, running_max], boundaries included
    q(torch.tensor([17.0]))  # EMA: 0.9 * 7 + 0.1 * 17 = 8.0
    torch.testing.assert_close(q.running_max, torch.tensor(8.0))
    q.eval()
    q(torch.tensor([1000.0]))
    torch.testing.assert_close(q.running_max, torch.tensor(8.0))  # frozen in eval
    big = torch.tensor([1000.0, -1000.0, 0.0])
    exact(q.quantize(big).codes, torch.tensor([7.0, -7.0, 0.0]))  # saturates into the narrow range
    exact(q(big), q.quantize(big).dequantize())
    assert LogitQuant().fmt == CodeFormat(bits=16, signed=True, nominal_bits=16, lattice="narrow")
    zero = LogitQuant()
    out = zero(torch.zeros(2, 10))  # all-zero logits: scale stays positive, no NaN
    assert torch.isfinite(out).all() and float(zero.scale) > 0
