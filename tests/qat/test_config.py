"""Tests of qat/config.py: parsing, resolution against real model layouts, every error case."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qat.cli import main as qat_main
from qat.config import (
    ConfigError,
    QuantConfig,
    ResolvedQuant,
    config_from_dict,
    load_config,
    resolve,
)
from qat.models import build_model
from qat.quantizers import QuantSpec

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "quant").glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


BASE = {"default": {"weight": {"method": "dorefa", "bits": 4}, "activation": {"method": "pact", "bits": 4}}}


@pytest.fixture(scope="module")
def layout():
    """ResNet20's layout, as build_model records it."""
    return build_model("resnet20").layout


def resolved(raw: dict, layout) -> ResolvedQuant:
    return resolve(config_from_dict(raw, source="cfg.yaml"), layout)


def test_resnet20_layout_lists_every_quantizable_module_in_order(layout) -> None:
    names = [w.name for w in layout.weights]
    assert names[:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert "layer2.0.shortcut.0" in names and "layer3.0.shortcut.0" in names
    assert names[-1] == "fc"
    assert len(names) == 22  # 19 convs + 2 shortcut convs + fc
    assert [w.name for w in layout.listed] == [n for n in names if "shortcut" not in n]
    assert len(layout.listed) == 20
    assert len(layout.activations) == 19  # act1 + 9 blocks x (act1, act2)
    by_name = {w.name: w for w in layout.weights}
    assert by_name["conv1"].output == "act1"
    assert by_name["layer2.1.conv2"].output == "layer2.1.act2"
    assert by_name["layer3.0.shortcut.0"].output is None
    assert by_name["layer3.0.shortcut.0"].follows == "layer3.0.conv1"
    assert by_name["fc"].output is None


def test_default_and_overrides_merge_field_by_field(layout) -> None:
    raw = {
        **BASE,
        "layers": {
            "conv1": {"weight": {"bits": 8}, "activation": {"bits": 8}},
            "fc": {"weight": {"bits": 8}},
        },
    }
    r = resolved(raw, layout)
    assert r.weight("conv1") == QuantSpec("dorefa", 8)
    assert r.activation("act1") == QuantSpec("pact", 8)  # conv1's output activation
    assert r.weight("fc") == QuantSpec("dorefa", 8)
    assert r.weight("layer1.0.conv1") == QuantSpec("dorefa", 4)
    assert r.activation("layer1.0.act1") == QuantSpec("pact", 4)
    assert r.input_bits == 8 and r.logits_bits == 16


def test_globs_and_later_entries_win(layout) -> None:
    raw = {
        **BASE,
        "layers": {
            "layer3.*.conv2": {"weight": {"bits": 2}},
            "layer3.2.conv2": {"weight": {"bits": 3}},
            "layer*.act1": {"activation": {"bits": 6}},
        },
    }
    r = resolved(raw, layout)
    assert [r.weight(f"layer3.{i}.conv2").bits for i in range(3)] == [2, 2, 3]
    assert r.weight("layer3.0.conv1").bits == 4
    assert r.weight("layer3.0.shortcut.0").bits == 4  # a glob on conv2 does not touch the shortcut
    assert all(r.activation(f"layer{s}.{i}.act1").bits == 6 for s in (1, 2, 3) for i in range(3))
    assert r.activation("act1").bits == 4  # "layer*.act1" does not match the stem's "act1"


def test_block_conv2_activation_is_the_act_after_the_add(layout) -> None:
    r = resolved({**BASE, "layers": {"layer2.0.conv2": {"activation": {"bits": 8}}}}, layout)
    assert r.activation("layer2.0.act2").bits == 8
    assert r.activation("layer2.0.act1").bits == 4


def test_activation_keys_name_qact_modules_directly(layout) -> None:
    r = resolved(
        {**BASE, "layers": {"layer3.2.act2": {"activation": {"method": "uniform", "bits": 8}}}}, layout
    )
    assert r.activation("layer3.2.act2") == QuantSpec("uniform", 8)


def test_method_change_keeps_other_fields_and_bits_32_means_float(layout) -> None:
    raw = {
        "default": {
            "weight": {"method": "dorefa", "bits": 4},
            "activation": {"method": "pact", "bits": 4, "pact_init": 6.0},
        },
        "layers": {
            "layer1.0.conv1": {"weight": {"method": "lsq"}, "activation": {"bits": 8}},
            "layer1.0.conv2": {"weight": {"bits": 32}},
        },
    }
    r = resolved(raw, layout)
    assert r.weight("layer1.0.conv1") == QuantSpec("lsq", 4)
    assert r.activation("layer1.0.act1") == QuantSpec("pact", 8, pact_init=6.0)
    assert r.weight("layer1.0.conv2").is_float


def test_binary_and_ternary_imply_their_width(layout) -> None:
    raw = {
        **BASE,
        "layers": {"layer1.*": {"weight": {"method": "ternary"}}, "layer2.*": {"weight": {"method": "xnor"}}},
    }
    r = resolved(raw, layout)
    assert r.weight("layer1.1.conv2") == QuantSpec("ternary", 2)
    assert r.weight("layer2.0.shortcut.0") == QuantSpec("xnor", 1)


def test_seed_lists_one_entry_per_layer_without_shortcuts(layout) -> None:
    wbit = list(range(2, 22))  # 20 distinct entries (2..21), so each maps visibly
    abit = [8] * 19 + [32]
    r = resolved({**BASE, "layer_wbit": wbit, "layer_abit": abit}, layout)
    listed = [w.name for w in layout.listed]
    for i, name in enumerate(listed):
        assert r.weight(name).bits == wbit[i], name
        assert r.weight(name).method == "dorefa"
    # shortcut convs take the entry of their block's conv1
    assert r.weight("layer2.0.shortcut.0").bits == wbit[listed.index("layer2.0.conv1")]
    assert r.weight("layer3.0.shortcut.0").bits == wbit[listed.index("layer3.0.conv1")]
    assert all(s == QuantSpec("pact", 8) for _, s in r.activations)


def test_seed_list_32_means_not_quantized_and_layers_apply_after(layout) -> None:
    wbit = [32] + [4] * 18 + [8]
    raw = {**BASE, "layer_wbit": wbit, "layers": {"fc": {"weight": {"bits": 6}}}}
    r = resolved(raw, layout)
    assert r.weight("conv1").is_float
    assert r.weight("fc").bits == 6


def test_resolution_round_trips_through_its_dict(layout) -> None:
    raw = {
        **BASE,
        "input": {"bits": 6},
        "logits": {"bits": 12},
        "layers": {"layer3.*": {"weight": {"method": "ternary", "bits": 2}}},
    }
    r = resolved(raw, layout)
    again = resolve(config_from_dict(r.to_dict(), source="checkpoint"), layout)
    assert again == r
    assert again.input_bits == 6 and again.logits_bits == 12


def test_config_to_dict_round_trips() -> None:
    cfg = config_from_dict({**BASE, "layer_wbit": [4] * 20, "layers": {"fc": {"weight": {"bits": 8}}}}, "x")
    assert config_from_dict(cfg.to_dict(), "x") == cfg


def test_float_default() -> None:
    cfg = QuantConfig()
    assert cfg.is_float
    r = build_model("resnet20", cfg).quant
    assert all(s.is_float for _, s in r.weights) and all(s.is_float for _, s in r.activations)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_build_resnet20(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# "), (
        "each config starts with a comment saying what it is and where it comes from"
    )
    model = build_model("resnet20", load_config(path))
    y = model(torch.zeros(2, 3, 32, 32))
    assert y.shape == (2, 10)


def test_shipped_xnor_and_mixed_configs_say_what_they_set(layout) -> None:
    r = resolve(load_config(REPO / "configs/quant/xnor.yaml"), layout)
    assert r.weight("layer1.0.conv1") == QuantSpec("xnor", 1)
    assert r.activation("layer1.0.act1") == QuantSpec("xnor", 1)
    assert r.weight("conv1") == QuantSpec("uniform", 8) and r.weight("fc") == QuantSpec("uniform", 8)
    assert r.activation("layer3.2.act2") == QuantSpec("pact", 8)
    r2 = resolve(load_config(REPO / "configs/quant/mixed_cfg2.yaml"), layout)
    assert r2.weight("layer1.2.conv2").bits == 6 and r2.weight("layer2.0.shortcut.0").bits == 6
    assert r2.weight("layer3.0.conv1").bits == 8 and r2.weight("fc").bits == 16
    assert r2.activation("layer3.2.act2").bits == 16


# --- errors: each names the file, the key, and the choices ------------------------------------


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (
            {**BASE, "layers": {"layer4.0.conv1": {"weight": {"bits": 8}}}},
            r"cfg.yaml: layers.layer4.0.conv1: no such module in resnet20; "
            r"valid names \(conv/linear layers: conv1, ",
        ),
        (
            {**BASE, "layers": {"layer9.*": {"weight": {"bits": 8}}}},
            r"layers.layer9.\*: no module matches this glob",
        ),
        (
            {**BASE, "layers": {"layer2.0.shortcut.0": {"activation": {"bits": 8}}}},
            r"layers.layer2.0.shortcut.0.activation: layer2.0.shortcut.0 has no activation of its own; .*"
            r"set activation on layer2.0.conv2 or on layer2.0.act2",
        ),
        (
            {**BASE, "layers": {"fc": {"activation": {"bits": 8}}}},
            r"layers.fc.activation: fc has no activation of its own; .*logits: \{bits: N\}",
        ),
        (
            {**BASE, "layers": {"layer1.0.act1": {"weight": {"bits": 8}}}},
            r"layers.layer1.0.act1.weight: layer1.0.act1 is an activation quantizer, it has no weights",
        ),
        (
            {**BASE, "layers": {"conv1": {"weight": {"method": "fancy"}}}},
            r"layers.conv1.weight.method: 'fancy' is not a method; "
            r"valid methods: \['float', 'dorefa', 'pact', ",
        ),
        (
            {**BASE, "layers": {"conv1": {"weight": {"bits": 0}}}},
            r"layers.conv1.weight.bits: bits=0 is outside 1..32",
        ),
        ({**BASE, "layers": {"conv1": {"weight": {"bits": 33}}}}, r"bits=33 is outside 1..32"),
        ({**BASE, "layers": {"conv1": {"weight": {"bits": "8"}}}}, r"bits must be an integer 1..32, got '8'"),
        (
            {**BASE, "layers": {"conv1": {"weight": {"bitz": 8}}}},
            r"layers.conv1.weight: unknown field\(s\) \['bitz'\]; valid fields: \['method', 'bits', ",
        ),
        (
            {**BASE, "layers": {"conv1": {"wieght": {"bits": 8}}}},
            r"layers.conv1: unknown key\(s\) \['wieght'\]; valid keys: \['weight', 'activation'\]",
        ),
        ({**BASE, "extra": 1}, r"cfg.yaml: unknown key\(s\) \['extra'\]; valid top-level keys"),
        (
            {**BASE, "layer_wbit": [4] * 19},
            r"layer_wbit has 19 entries but resnet20 has 20 conv/linear layers "
            r"\(shortcut convs excluded\), in this order: 0:conv1, 1:layer1.0.conv1",
        ),
        (
            {**BASE, "layer_abit": [4] * 20},
            r"layer_abit\[19\] \(fc\) = 4: fc has no activation after it; .*write 32",
        ),
        ({**BASE, "layer_wbit": [4] * 19 + [40]}, r"layer_wbit\[19\]: bits=40 is outside 1..32"),
        ({"layer_wbit": [4] * 20}, r"layer_wbit\[0\] \(conv1\) = 4: the default method is float"),
        (
            {"default": {"activation": {"method": "ternary", "bits": 2}}},
            r"act1 \(activation, ternary 2 bits\): "
            r"activation quantizer: method 'ternary' quantizes weights only",
        ),
        (
            {"default": {"weight": {"method": "pact", "bits": 4}}},
            r"conv1 \(weight, pact 4 bits\): .*weight methods are float, dorefa",
        ),
        (
            {"default": {"weight": {"method": "xnor", "bits": 4}}},
            r"default.weight: .*XNOR is binary; set bits: 1",
        ),
        (
            {"default": {"weight": {"bits": 4}}},
            r"default.weight: sets bits=4 on a module that is not quantized",
        ),
        ({**BASE, "input": {"bits": 1}}, r"input.bits: bits=1 must be an integer in 2..24"),
        ({**BASE, "logits": {"bits": 32}}, r"logits.bits: bits=32 must be an integer in 2..24"),
        ({**BASE, "input": 8}, r"input: expected \{bits: N\}, got 8"),
        ([1, 2], r"cfg.yaml: expected a mapping with keys"),
    ],
)
def test_errors_name_the_key_and_the_choices(layout, raw, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        resolved(raw, layout)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("default:\n  weight: {method: dorefa, bits: 4\nlayers: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+: not valid YAML"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read it"):
        load_config(tmp_path / "nope.yaml")


def test_cli_reports_config_errors_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "default: {weight: {method: dorefa, bits: 4}}\nlayers:\n  layer1.0.conv3: {weight: {bits: 2}}\n"
    )
    code = qat_main(
        [
            "train",
            "--quant",
            str(path),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--synthetic",
            "8",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "typo.yaml: layers.layer1.0.conv3: no such module in resnet20" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing half-written
