"""hwsim.energy: one layer's energy against a hand computation; the YAML energy: section."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import tiny_bundle
from hwsim.hwconfig import BufferConfig, EnergyConfig, HardwareConfig, HwConfigError, load_hw_config
from hwsim.simulate import timing_rows

REPO = Path(__file__).resolve().parents[2]


def test_one_layer_by_hand(tmp_path: Path) -> None:
    # The tiny net's conv1: int4 input codes [2, 4, 4], 3x3 kernel, padding 1, 2 -> 3 channels,
    # int4 weights, int4 output codes (act1); a 16x16 weight-stationary array, 24-bit accumulators,
    # buffers of 8 / 32 / 128 KiB (ifmap / weight / ofmap), default (Horowitz 45 nm) energy table.
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny"))
    hw = HardwareConfig(buffers=BufferConfig(ifmap_kb=8, weight_kb=32, ofmap_kb=128))
    conv1 = next(r for r in timing_rows(bundle, hw) if r.name == "conv1")
    # GEMM M = 4*4 output pixels = 16, K = 3*3*2 = 18, N = 3: 16*18*3 = 864 MACs
    assert (conv1.gemm_m, conv1.gemm_k, conv1.gemm_n, conv1.macs) == (16, 18, 3, 864)
    # one MAC: multiply 0.2 pJ * (4*4)/64 = 0.05 pJ, add 0.1 pJ * 24/32 = 0.075 pJ -> 0.125 pJ
    assert conv1.compute_energy_nj == pytest.approx(864 * 0.125 / 1000)  # 0.108 nJ
    # buffers (ws): A read once per N-fold: 16*18*ceil(3/16) = 288 codes * 4 b = 144 B (ifmap);
    # W read once: 18*3 = 54 codes * 4 b = 27 B (weight); partial sums written once per K-fold:
    # 16*3*ceil(18/16) = 96, read back 96 - 48 = 48, at 24 b: 288 + 144 = 432 B (ofmap)
    assert conv1.buffer_bytes == 144 + 27 + 432
    # a 64-bit access: 10 pJ * sqrt(capacity / 8 KiB): 10 pJ (8 KiB), 20 pJ (32 KiB), 40 pJ (128 KiB)
    buffer_pj = 144 / 8 * 10 + 27 / 8 * 20 + 432 / 8 * 40  # 180 + 67.5 + 2160 = 2407.5 pJ
    assert conv1.buffer_energy_nj == pytest.approx(buffer_pj / 1000)
    # DRAM: input 32 codes * 4 b = 16 B, weights 54 * 4 b = 27 B, output 48 codes * 4 b = 24 B
    assert (conv1.dram_read_bytes, conv1.dram_write_bytes) == (16 + 27, 24)
    dram_pj = 67 / 8 * 2000  # 2 nJ per 64-bit access: 16750 pJ
    assert conv1.dram_energy_nj == pytest.approx(dram_pj / 1000)
    # static: 20 mW over the layer's latency (mW * us = nJ)
    assert conv1.static_energy_nj == pytest.approx(20 * conv1.latency_us)
    total = (864 * 0.125 + buffer_pj + dram_pj) / 1000 + 20 * conv1.latency_us
    assert conv1.energy_nj == pytest.approx(total)
    assert conv1.edp_nj_us == pytest.approx(total * conv1.latency_us)
    # the technology table is the hardware description's: doubling DRAM's cost doubles that term only
    dearer = HardwareConfig(buffers=hw.buffers, energy=EnergyConfig(dram_64b_pj=4000))
    again = next(r for r in timing_rows(bundle, dearer) if r.name == "conv1")
    assert again.dram_energy_nj == pytest.approx(2 * conv1.dram_energy_nj)
    assert again.compute_energy_nj == conv1.compute_energy_nj


def test_yaml_energy_section(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "configs" / "hw" / "ws_16x16.yaml").read_text())
    assert load_hw_config(REPO / "configs" / "hw" / "ws_16x16.yaml").energy == EnergyConfig()
    doc["energy"] = {"mult_8b_pj": 0.5}
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert load_hw_config(path).energy == EnergyConfig(mult_8b_pj=0.5)  # the others: defaults
    for bad, message in (
        ({"mult_8b_pj": -1}, "field 'energy.mult_8b_pj'"),
        ({"dram_pj": 1}, "field 'energy.dram_pj' is unknown; legal keys: mult_8b_pj"),
        ({"static_mw": "x"}, "field 'energy.static_mw'"),
        ([1], "field 'energy': expected a mapping"),
    ):
        doc["energy"] = bad
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(HwConfigError, match=message):
            load_hw_config(path)
