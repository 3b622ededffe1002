"""hwsim.simulate and `hwsim simulate`: a whole bundle on the array model, checked against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle, tiny_bundle, tiny_inputs
from hwsim.cli import main
from hwsim.dataflows import DATAFLOWS
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.hwconfig import ArrayConfig, HardwareConfig, PEConfig, load_hw_config
from hwsim.mapping import gemm_shape, layer_from_node
from hwsim.simulate import simulate_bundle, timing_rows
from hwsim.timing import native_gemm_cycles

REPO = Path(__file__).resolve().parents[2]
DESIGN_FIELDS = (
    "name",
    "type",
    "macs",
    "w_bits",
    "a_bits",
    "acc_bits",
    "cycles",
    "latency_us",
    "utilization",
    "bound",
    "overflow_count",
    "peak_acc_abs",
    "min_safe_acc_bits",
    "mismatch_rate",
    "max_abs_err_lsb",
    "sqnr_db",
)


@pytest.fixture(scope="module")
def resnet8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_resnet20_bundle(
        tmp_path_factory.mktemp("rn") / "a8w8", w_bits=8, a_bits=8, seed=1, reference_images=2
    )


@pytest.mark.parametrize("dataflow", list(DATAFLOWS))
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_tiny_bundle_array_equals_emulator(tmp_path: Path, dataflow: str, overflow: str) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny"))
    hw = HardwareConfig(array=ArrayConfig(3, 2, dataflow), pe=PEConfig(7, overflow))  # 7 bits: it overflows
    codes = tiny_inputs(5)
    sim = simulate_bundle(bundle, hw, codes)
    emu = emulate(bundle, codes, EmulatorConfig(acc_bits=7, overflow=overflow))
    assert sim.totals["array_value_mismatches"] == 0
    assert sim.totals["overflow_count"] == sum(s.overflow_count for s in emu.layers.values()) > 0
    for row in sim.rows:
        assert row.overflow_count == emu.layers[row.name].overflow_count
        assert row.min_safe_acc_bits >= row.min_safe_acc_bits_observed
    assert {r.name: r.type for r in sim.rows}["conv2"] == "conv2d(depthwise)"


@pytest.mark.parametrize("config", ["ws_8x8", "ws_16x16", "ws_32x32", "ws_8x32", "os_16x16", "is_16x16"])
def test_resnet20_on_shipped_arrays(resnet8: Path, config: str) -> None:
    bundle = load_bundle(resnet8)
    hw = load_hw_config(REPO / "configs" / "hw" / f"{config}.yaml")
    sim = simulate_bundle(bundle, hw, bundle.reference.input_codes[:1])
    assert sim.totals["array_value_mismatches"] == 0
    assert len(sim.rows) == 22
    for row, node in zip(sim.rows, bundle.mac_nodes, strict=True):
        layer = layer_from_node(node, bundle)
        assert row.array_cycles == native_gemm_cycles(gemm_shape(layer), hw).total
        assert row.cycles == row.array_cycles + row.stall_cycles
        assert row.latency_us == pytest.approx(row.cycles / hw.clock_mhz)
        assert 0 < row.utilization <= row.array_utilization <= 1
        assert row.bound in ("compute", "memory")
    assert sim.totals["macs"] == bundle.total_macs
    assert sim.totals["cycles"] == sum(r.cycles for r in sim.rows)


def test_all_arrays_dataflows_and_timing_modes_analytic(resnet8: Path) -> None:
    bundle = load_bundle(resnet8)
    for rows, cols in [(8, 8), (16, 16), (32, 32), (8, 32)]:
        for dataflow in DATAFLOWS:
            for timing in ("native", "scalesim"):
                hw = HardwareConfig(array=ArrayConfig(rows, cols, dataflow), timing=timing)
                table = timing_rows(bundle, hw)
                assert len(table) == 22 and all(r.cycles > 0 for r in table)


def test_16_bit_accumulators_show_which_layers_overflow(resnet8: Path) -> None:
    bundle = load_bundle(resnet8)
    codes = bundle.reference.input_codes[:1]
    narrow = simulate_bundle(bundle, load_hw_config(REPO / "configs" / "hw" / "ws_16x16_acc16.yaml"), codes)
    assert narrow.totals["overflowing_layers"], "8-bit codes over K = 144..576 need more than 16 bits"
    wide = simulate_bundle(bundle, load_hw_config(REPO / "configs" / "hw" / "ws_16x16.yaml"), codes)
    for row in wide.rows:
        assert row.min_safe_acc_bits >= row.min_safe_acc_bits_observed
        overflowed = row.name in narrow.totals["overflowing_layers"]
        if row.min_safe_acc_bits <= 16:
            assert not overflowed


def test_cli_simulate_writes_the_report(tmp_path: Path, resnet8: Path) -> None:
    out = tmp_path / "report"
    assert (
        main(
            [
                "simulate",
                str(resnet8),
                "--hw",
                str(REPO / "configs" / "hw" / "ws_16x16_acc16.yaml"),
                "--images",
                "1",
                "--report",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    for name in (
        "report.json",
        "layers.csv",
        "report.md",
        "report.html",
        "latency.png",
        "utilization.png",
        "overflow.png",
        "error.png",
        "roofline.png",
    ):
        assert (out / name).is_file(), name
    doc = json.loads((out / "report.json").read_text())
    assert len(doc["layers"]) == 22
    for field in DESIGN_FIELDS:
        assert field in doc["layers"][0], field
    assert doc["totals"]["top1_agreement"] is not None
    assert doc["totals"]["overflowing_layers"]
    assert "data:image/png;base64," in (out / "report.html").read_text()


@pytest.mark.slow
def test_cli_design_space(tmp_path: Path, resnet8: Path) -> None:
    out = tmp_path / "ds"
    assert (
        main(
            [
                "simulate",
                str(resnet8),
                "--hw",
                str(REPO / "configs" / "hw" / "ws_16x16.yaml"),
                "--grid",
                "rows=8,16",
                "dataflow=ws,os",
                "--images",
                "1",
                "--report",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    doc = json.loads((out / "report.json").read_text())
    assert len(doc["layers"]) == 4 and (out / "design_space.png").is_file()
    assert len([p for p in out.iterdir() if p.is_dir()]) == 4


def test_cli_bad_input_exits_2(tmp_path: Path, resnet8: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load((REPO / "configs" / "hw" / "ws_16x16.yaml").read_text())
    doc["pe"]["acc_bits"] = 99
    bad.write_text(yaml.safe_dump(doc))
    assert main(["simulate", str(resnet8), "--hw", str(bad), "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "pe.acc_bits" in err and "2..64" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
    assert (
        main(
            [
                "simulate",
                str(resnet8),
                "--hw",
                str(REPO / "configs" / "hw" / "ws_16x16.yaml"),
                "--images",
                "99",
                "--report",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "simulate",
                str(resnet8),
                "--hw",
                str(REPO / "configs" / "hw" / "ws_16x16.yaml"),
                "--grid",
                "depth=3",
                "--report",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
