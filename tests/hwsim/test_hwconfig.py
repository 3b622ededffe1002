"""hwsim.hwconfig: the hardware YAML, its validation and the Verilog parameters derived from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from hwsim import hwconfig
from hwsim.dataflows import DATAFLOWS
from hwsim.errors import UserError
from hwsim.fixed import ROUNDING_MODES, CodeFormat, IntFormat
from hwsim.hwconfig import (
    ArrayConfig,
    HardwareConfig,
    HwConfigError,
    PEConfig,
    hw_config_to_dict,
    load_hw_config,
    requant_parameters,
    verilog_parameters,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "hw").glob("*.yaml"))

GOOD = {
    "array": {"rows": 16, "cols": 8, "dataflow": "os"},
    "pe": {"acc_bits": 20, "overflow": "saturate"},
    "buffers_kb": {"ifmap": 32, "weight": 16, "ofmap": 8},
    "dram_bytes_per_cycle": 8,
    "clock_mhz": 250,
    "timing": "scalesim",
}


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_shipped_configs_load_and_cover_the_required_arrays() -> None:
    configs = [load_hw_config(p) for p in SHIPPED]
    shapes = {(c.array.rows, c.array.cols) for c in configs}
    assert {(8, 8), (16, 16), (32, 32)} <= shapes
    assert any(r != c for r, c in shapes), "a non-square array must ship"
    assert {c.array.dataflow for c in configs} == set(DATAFLOWS), "a config ships for every dataflow"
    default = load_hw_config(REPO / "configs" / "hw" / "ws_16x16.yaml")
    assert default == HardwareConfig(name="ws_16x16")


def test_load_reads_every_field(tmp_path: Path) -> None:
    cfg = load_hw_config(write(tmp_path, GOOD))
    assert cfg.array == ArrayConfig(16, 8, "os")
    assert cfg.pe == PEConfig(20, "saturate")
    assert (cfg.buffers.ifmap_kb, cfg.buffers.weight_kb, cfg.buffers.ofmap_kb) == (32, 16, 8)
    assert (cfg.dram_bytes_per_cycle, cfg.clock_mhz, cfg.timing, cfg.name) == (8, 250, "scalesim", "hw")
    assert load_hw_config(write(tmp_path, hw_config_to_dict(cfg))) == cfg


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        (
            {"array": {"rows": 0, "cols": 8, "dataflow": "os"}},
            "field 'array.rows': 0 is not an integer in the legal range 1..4096",
        ),
        (
            {"array": {"rows": 4, "cols": 8, "dataflow": "rs"}},
            "field 'array.dataflow': 'rs' is not one of ws, os, is",
        ),
        (
            {"array": {"rows": 4, "cols": 8, "dataflow": ["ws"]}},  # unhashable: still the same message
            "field 'array.dataflow': ['ws'] is not one of ws, os, is",
        ),
        (
            {"pe": {"acc_bits": 65, "overflow": "wrap"}},
            "field 'pe.acc_bits': 65 is not an integer in the legal range 2..64",
        ),
        ({"pe": {"acc_bits": 24.5, "overflow": "wrap"}}, "'pe.acc_bits': 24.5"),
        (
            {"pe": {"acc_bits": 24, "overflow": "clip"}},
            "field 'pe.overflow': 'clip' is not one of wrap, saturate",
        ),
        (
            {"buffers_kb": {"ifmap": -1, "weight": 1, "ofmap": 1}},
            "field 'buffers_kb.ifmap': -1 is not a number in the legal range (0, 1.04858e+06]",
        ),
        ({"dram_bytes_per_cycle": 0}, "field 'dram_bytes_per_cycle': 0"),
        ({"clock_mhz": "fast"}, "field 'clock_mhz': 'fast'"),
        ({"timing": "exact"}, "field 'timing': 'exact' is not one of native, scalesim"),
        ({"array": {"rows": 4, "cols": 8}}, "field 'array.dataflow' is missing"),
        ({"array": {"rows": 4, "cols": 8, "dataflow": "ws", "depth": 2}}, "field 'array.depth' is unknown"),
        ({"buffers": {"ifmap": 1}}, "field 'buffers' is unknown; legal keys"),
    ],
)
def test_bad_values_give_one_clear_error(tmp_path: Path, patch: dict, needle: str) -> None:
    path = write(tmp_path, {**GOOD, **patch})
    with pytest.raises(HwConfigError) as info:
        load_hw_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert needle in str(info.value)
    assert isinstance(info.value, UserError)


def test_missing_top_level_key_and_unreadable_file(tmp_path: Path) -> None:
    doc = dict(GOOD)
    del doc["clock_mhz"]
    with pytest.raises(HwConfigError, match="field 'clock_mhz' is missing"):
        load_hw_config(write(tmp_path, doc))
    with pytest.raises(HwConfigError, match="cannot read the hardware description"):
        load_hw_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("array: [1, 2\n")
    with pytest.raises(HwConfigError, match="not valid YAML"):
        load_hw_config(tmp_path / "bad.yaml")


def test_the_dataflow_list_is_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hwconfig.DATAFLOWS is DATAFLOWS  # one owner: hwsim.dataflows
    monkeypatch.setitem(DATAFLOWS, "ws2", DATAFLOWS["ws"])  # registered after hwconfig's import
    assert ArrayConfig(4, 4, "ws2").dataflow == "ws2"
    monkeypatch.undo()
    with pytest.raises(HwConfigError, match="'ws2' is not one of ws, os, is"):
        ArrayConfig(4, 4, "ws2")


def test_dataclasses_validate_on_construction_and_are_frozen() -> None:
    with pytest.raises(HwConfigError, match="array.cols"):
        ArrayConfig(4, 5000, "ws")
    with pytest.raises(HwConfigError, match="pe.acc_bits"):
        PEConfig(acc_bits=True)  # a bool is not a width
    cfg = HardwareConfig()
    with pytest.raises(AttributeError):
        cfg.timing = "scalesim"  # type: ignore[misc]


def test_with_overrides() -> None:
    cfg = HardwareConfig().with_overrides(rows=32, dataflow="is", acc_bits=16, timing="scalesim")
    assert (cfg.array.rows, cfg.array.cols, cfg.array.dataflow, cfg.pe.acc_bits, cfg.timing) == (
        32,
        16,
        "is",
        16,
        "scalesim",
    )
    with pytest.raises(HwConfigError, match="cannot override 'depth'"):
        HardwareConfig().with_overrides(depth=3)
    with pytest.raises(HwConfigError, match="array.rows"):
        HardwareConfig().with_overrides(rows=-3)


def test_verilog_parameters() -> None:
    cfg = HardwareConfig(array=ArrayConfig(4, 8, "ws"), pe=PEConfig(18, "saturate"))
    assert verilog_parameters(cfg) == {
        "ROWS": 4,
        "COLS": 8,
        "ACC_BITS": 18,
        "SATURATE": 1,
        "A_BITS": 8,
        "W_BITS": 8,
        "A_SIGNED": 0,
        "DATAFLOW": 0,
    }
    assert verilog_parameters(HardwareConfig(), a_bits=3, w_bits=2, a_signed=True) == {
        "ROWS": 16,
        "COLS": 16,
        "ACC_BITS": 24,
        "SATURATE": 0,
        "A_BITS": 3,
        "W_BITS": 2,
        "A_SIGNED": 1,
        "DATAFLOW": 0,
    }
    # DATAFLOW: the index in the registry, which array_top.v's generate branches follow
    assert [
        verilog_parameters(HardwareConfig(array=ArrayConfig(4, 4, f)))["DATAFLOW"] for f in ("ws", "is")
    ] == [0, 2]


def test_verilog_parameters_refuse_a_dataflow_without_rtl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATAFLOWS, "is", replace(DATAFLOWS["is"], rtl=False))
    with pytest.raises(HwConfigError, match="implements the weight-stationary"):
        verilog_parameters(HardwareConfig(array=ArrayConfig(4, 4, "is")))
    cfg = HardwareConfig(array=ArrayConfig(4, 8, "ws"))
    with pytest.raises(HwConfigError, match="a_bits"):
        verilog_parameters(cfg, a_bits=0)


def test_requant_parameters() -> None:
    assert requant_parameters(IntFormat(4, False), "half_up") == {
        "OUT_BITS": 4,
        "OUT_SIGNED": 0,
        "OUT_NARROW": 0,
        "X_BITS": 32,
        "MULT_BITS": 32,
        "ROUNDING": 0,
    }
    for code, mode in enumerate(ROUNDING_MODES):  # the RTL's code is the index in ROUNDING_MODES
        assert requant_parameters(IntFormat(8, True), mode, x_bits=24, mult_bits=16)["ROUNDING"] == code
    narrow = requant_parameters(CodeFormat(8, True, lattice="narrow"), "ceil")
    assert [narrow[k] for k in ("OUT_BITS", "OUT_SIGNED", "OUT_NARROW", "ROUNDING")] == [8, 1, 1, 4]
    binary = CodeFormat(2, True, 1, "binary")
    assert requant_parameters(binary, "floor", function="sign")["OUT_BITS"] == 2
    bad = [
        ((IntFormat(8, True), "nearest"), {}, "'nearest' is not a rounding mode; use one of half_up"),
        ((binary, "floor"), {}, "a clamp produces the full or narrow lattice, not 'binary'"),
        ((IntFormat(8, False), "floor"), {"function": "sign"}, "need a signed output of at least 2 bits"),
        ((IntFormat(8, True), "floor"), {"function": "relu"}, "'relu' is not one of clamp, sign"),
        ((IntFormat(8, True), "floor"), {"x_bits": 64}, "x_bits"),
        ((IntFormat(8, True), "floor"), {"mult_bits": 1}, "mult_bits"),
        ((IntFormat(64, True), "floor"), {}, "out_fmt.bits"),
        (("int8", "floor"), {}, "expected an integer format"),
    ]
    for args, kwargs, needle in bad:
        with pytest.raises(HwConfigError, match=needle):
            requant_parameters(*args, **kwargs)  # type: ignore[arg-type]
