"""Tests of qat/models: parameter and MAC counts, module names and order, forward/backward of all models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwsim.errors import UserError
from qat.config import config_from_dict
from qat.layers import InputQuant, LogitQuant, QAct, QConv2d, QLinear
from qat.models import MODEL_NAMES, build_model
from qat.quantizers import Quantizer

QUANT = config_from_dict(
    {
        "default": {"weight": {"method": "dorefa", "bits": 4}, "activation": {"method": "pact", "bits": 4}},
        "layers": {"conv1": {"weight": {"bits": 8}}, "fc": {"weight": {"method": "lsq", "bits": 8}}},
    },
    source="test",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- parameter counts, derived by hand from the architectures --------------------------------


def conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
    return cin // groups * cout * k * k


def bn(c: int) -> int:
    return 2 * c  # gamma and beta (running statistics are buffers)


def resnet_params(stem: int, widths: list[int], blocks: int) -> int:
    """CIFAR ResNet: 3x3 stem + BN, basic blocks (two 3x3 conv + BN, 1x1 conv + BN projection
    where the shape changes), fc with bias."""
    total = conv(3, stem, 3) + bn(stem)
    cin = stem
    for stage, w in enumerate(widths):
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 0 else 1
            total += conv(cin, w, 3) + bn(w) + conv(w, w, 3) + bn(w)
            if stride != 1 or cin != w:
                total += conv(cin, w, 1) + bn(w)
            cin = w
    return total + cin * 10 + 10


def mobilenetv2_params() -> int:
    """Expand 1x1 + BN, depthwise 3x3 + BN, project 1x1 + BN, 1x1 conv + BN shortcut when stride 1
    and the width changes; stem 3x3 (32), head 1x1 (1280), fc."""
    stages = [
        (1, 16, 1, 1),
        (6, 24, 2, 1),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    total = conv(3, 32, 3) + bn(32)
    cin = 32
    for t, c, n, s in stages:
        for j in range(n):
            stride = s if j == 0 else 1
            mid = cin * t
            total += (
                conv(cin, mid, 1)
                + bn(mid)
                + conv(mid, mid, 3, groups=mid)
                + bn(mid)
                + conv(mid, c, 1)
                + bn(c)
            )
            if stride == 1 and cin != c:
                total += conv(cin, c, 1) + bn(c)
            cin = c
    return total + conv(320, 1280, 1) + bn(1280) + 1280 * 10 + 10


def toynet_params() -> int:
    """Stem 3x3 (16) + BN; blocks: [down conv k=s + BN], dw 3x3 + BN, 1x1 x4 expand, 1x1 project
    (no BN after these two, as the reference); header 1x1 (512) + BN; fc."""
    total = conv(3, 16, 3) + bn(16)
    cin = 16
    for count, w, s in zip((1, 3, 3, 3), (16, 32, 32, 64), (1, 2, 1, 2), strict=True):
        for i in range(count):
            stride = s if i == 0 else 1
            if stride != 1 or cin != w:
                total += conv(cin, w, stride) + bn(w)
            total += conv(w, w, 3, groups=w) + bn(w) + conv(w, 4 * w, 1) + conv(4 * w, w, 1)
            cin = w
    return total + conv(64, 512, 1) + bn(512) + 512 * 10 + 10


# The literals are the published counts of the same architectures: pytorchcv's CIFAR ResNet20
# (272,474, also asserted in louvinci's ResNet_CF.py), the kuangliu/pytorch-cifar ResNet18
# (11,173,962) and MobileNetV2 (2,296,922); ToyNet's 203,722 is louvinci's 203,626 with the
# downsampling BN moved after its conv (BN over C_out instead of C_in: +32 +64).
EXPECTED_PARAMS = {"resnet20": 272_474, "resnet18": 11_173_962, "mobilenetv2": 2_296_922, "toynet": 203_722}


def test_hand_derivations_agree_with_the_published_counts() -> None:
    assert resnet_params(16, [16, 32, 64], 3) == EXPECTED_PARAMS["resnet20"]
    assert resnet_params(64, [64, 128, 256, 512], 2) == EXPECTED_PARAMS["resnet18"]
    assert mobilenetv2_params() == EXPECTED_PARAMS["mobilenetv2"]
    assert toynet_params() == EXPECTED_PARAMS["toynet"]


def network_params(model: nn.Module) -> int:
    """Parameters of the network itself (conv, BN, linear), not of its quantizers."""
    quant = {id(p) for m in model.modules() if isinstance(m, Quantizer) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in quant)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts(name: str) -> None:
    float_model = build_model(name)
    assert (
        sum(p.numel() for p in float_model.parameters()) == EXPECTED_PARAMS[name]
    )  # float: no quantizer params
    q_model = build_model(name, QUANT)
    assert network_params(q_model) == EXPECTED_PARAMS[name]
    n_acts = sum(isinstance(m, QAct) for m in q_model.modules())
    # one PACT alpha per activation site, one LSQ step for the fc weight
    assert sum(p.numel() for p in q_model.parameters()) == EXPECTED_PARAMS[name] + n_acts + 1


def count_macs(model: nn.Module) -> int:
    macs = 0

    def hook(module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out[0].numel() * module.weight[0].numel()  # outputs x (C_in/groups * kh * kw)

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    model.eval()(torch.zeros(1, 3, 32, 32))
    for h in handles:
        h.remove()
    return macs


def test_mac_counts() -> None:
    # ResNet20: 40.8 M, the usual figure; ToyNet: 25.3 M (louvinci's README: 25.6 M with its BN
    # placement). Hand check of ResNet20: stem 32*32*16*27 = 442,368; stage 1: 6 convs
    # 32*32*16*144 = 2,359,296 each; stage 2: 16*16*32*(144 + 5*288) + 16*16*32*16 (shortcut);
    # stage 3: 8*8*64*(288 + 5*576) + 8*8*64*32; fc 640.
    stage2 = 16 * 16 * 32 * (144 + 5 * 288) + 16 * 16 * 32 * 16
    stage3 = 8 * 8 * 64 * (288 + 5 * 576) + 8 * 8 * 64 * 32
    assert (
        count_macs(build_model("resnet20")) == 442_368 + 6 * 2_359_296 + stage2 + stage3 + 640 == 40_813_184
    )
    assert count_macs(build_model("toynet")) == 25_265_152


def test_resnet20_module_names_and_order() -> None:
    """The export walks these names in this order (they become the bundle's node names)."""
    model = build_model("resnet20", QUANT)
    assert [n for n, _ in model.named_children()] == [
        "quant_input",
        "conv1",
        "bn1",
        "act1",
        "layer1",
        "layer2",
        "layer3",
        "avgpool",
        "fc",
        "quant_logits",
    ]
    for stage in ("layer1", "layer2", "layer3"):
        assert [n for n, _ in getattr(model, stage).named_children()] == ["0", "1", "2"]
    plain = ["conv1", "bn1", "act1", "conv2", "bn2", "act2"]
    projected = ["conv1", "bn1", "act1", "conv2", "bn2", "shortcut", "act2"]
    assert [n for n, _ in model.layer1[0].named_children()] == plain
    assert [n for n, _ in model.layer2[0].named_children()] == projected
    assert [n for n, _ in model.layer3[0].named_children()] == projected
    assert [n for n, _ in model.layer3[1].named_children()] == plain
    shortcut = model.layer2[0].shortcut
    assert isinstance(shortcut[0], QConv2d) and isinstance(shortcut[1], nn.BatchNorm2d)
    assert shortcut[0].kernel_size == (1, 1) and shortcut[0].stride == (2, 2) and shortcut[0].bias is None
    assert model.layer1[0].shortcut is None
    assert isinstance(model.quant_input, InputQuant) and isinstance(model.quant_logits, LogitQuant)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert model.conv1.in_channels == 3 and model.conv1.out_channels == 16 and model.conv1.padding == (1, 1)
    assert model.conv1.bias is None
    assert isinstance(model.fc, QLinear) and model.fc.bias is not None and model.fc.in_features == 64
    # the specs the config asked for reached the modules
    assert model.conv1.weight_spec.bits == 8 and model.layer1[0].conv1.weight_spec.bits == 4
    assert model.fc.weight_spec.method == "lsq" and model.act1.spec.method == "pact"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_layer_is_quantizable(name: str) -> None:
    """Every conv/linear is a QConv2d/QLinear and every nonlinearity a QAct (no bare ReLU)."""
    model = build_model(name, QUANT)
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert isinstance(m, QConv2d), mod_name
        if isinstance(m, nn.Linear):
            assert isinstance(m, QLinear), mod_name
        assert not isinstance(m, (nn.ReLU, nn.ReLU6)), mod_name
    layout_names = {w.name for w in model.layout.weights} | set(model.layout.activations)
    module_names = {n for n, m in model.named_modules() if isinstance(m, (QConv2d, QLinear, QAct))}
    assert layout_names == module_names


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "quant"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_and_backward(name: str, quantized: bool) -> None:
    torch.manual_seed(0)
    model = build_model(name, QUANT if quantized else None)
    x = torch.randn(2, 3, 32, 32)
    y = model.train()(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    nn.functional.cross_entropy(y, torch.tensor([1, 2])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)


def test_num_classes_and_unknown_model() -> None:
    assert build_model("resnet20", num_classes=100)(torch.zeros(1, 3, 32, 32)).shape == (1, 100)
    with pytest.raises(UserError, match=r"unknown model 'resnet56'; choose one of \['resnet20', 'resnet18'"):
        build_model("resnet56")
