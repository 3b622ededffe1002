"""``python -m rtl_models.check --network``: a bundled ResNet20 (DoReFa a4w4) layer by layer through the RTL.

Every MAC layer runs on array_top and every requantizer on requant.v, each fed what the RTL made
before; every tensor, cycle count and overflow count must equal hwsim's. The default suite runs
the first MAC layers (with their requantizers); a tensor corrupted between two layers must stop
the run at the next layer, naming it; the slow cases run the whole network and a broken PE.
Bad input (no simulator needed) exits 2.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import HW_DIR, REPO, require_simulator

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import tiny_bundle
from hwsim.dataflows import DATAFLOWS
from hwsim.hwconfig import load_hw_config
from hwsim.mapping import layer_from_node
from hwsim.timing import layer_timing
from rtl_models import network
from rtl_models.check import main

BUNDLE = REPO / "hwsim" / "pretrained" / "bundles" / "dorefa_a4w4"
HW = HW_DIR / "ws_8x8.yaml"  # native timing: hwsim's layer timing is the RTL's cycle count


def _expected_nodes(macs: int) -> list[str]:
    """The bundle's nodes before its (macs + 1)-th MAC layer, in order."""
    names, seen = [], 0
    for node in load_bundle(BUNDLE).nodes:
        if node.op in ("conv2d", "linear"):
            if seen == macs:
                break
            seen += 1
        names.append(node.name)
    return names


@pytest.mark.rtl
def test_first_layers_equal_hwsim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_simulator("verilator")
    out = tmp_path / "network.json"
    args = [
        "--network",
        str(BUNDLE),
        "--hw",
        str(HW),
        "--sim",
        "verilator",
        "--layers",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "PASS on verilator for the first 3 MAC layers" in text
    report = json.loads(out.read_text())
    assert report["format"] == network.REPORT_FORMAT and report["passed"] and not report["complete"]
    layers = report["layers"]
    assert [r["name"] for r in layers] == _expected_nodes(3)  # conv1, act1, layer1.0.conv1, ...
    assert all(r["equal"] for r in layers)
    bundle, hw = load_bundle(BUNDLE), load_hw_config(HW)
    gemms = [r for r in layers if r["unit"] == "array_top"]
    assert [r["name"] for r in gemms] == [n.name for n in bundle.mac_nodes[:3]]
    for r in gemms:  # the RTL's cycle counter against hwsim's timing, computed here again
        assert r["rtl_cycles"] == layer_timing(layer_from_node(bundle.node(r["name"]), bundle), hw).total > 0
        assert r["rtl_overflow_events"] == r["hwsim_overflow_events"]
    assert {r["unit"] for r in layers} == {"array_top", "requant"}
    assert report["totals"]["rtl_cycles"] == sum(r["rtl_cycles"] for r in gemms)


def _bump_one_code(tensor: str, values: np.ndarray, target: str) -> np.ndarray:
    """``values`` with one code of ``target`` changed by one (a wire broken between two layers)."""
    if tensor != target:
        return values
    broken = values.copy()
    index = (0, 3, 10, 10)
    broken[index] += 1 if broken[index] < 15 else -1
    return broken


@pytest.mark.rtl
def test_a_tensor_corrupted_between_layers_stops_the_run_at_the_next_layer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """act1's codes, checked equal to hwsim's, are changed by one before layer1.0.conv1 reads them.

    The vector set of layer1.0.conv1 is made from what it reads, so array_top agrees with it; only
    the comparison with hwsim's whole-network run sees the difference (the weights are odd codes,
    never 0, so the change reaches the accumulators).
    """
    require_simulator("verilator")
    tamper = functools.partial(_bump_one_code, target="act1")
    monkeypatch.setattr(network, "run_network", functools.partial(network.run_network, tamper=tamper))
    assert main(["--network", str(BUNDLE), "--hw", str(HW), "--layers", "2"]) == 1
    text = capsys.readouterr().out
    assert "MISMATCH at layer1.0.conv1:" in text
    assert "elements of tensor 'layer1.0.conv1' differ from hwsim's; first at [0, " in text
    assert "expected " in text and "actual " in text
    table = text[text.index("layer  ") :]
    assert "act1 " in table and "layer1.0.act1" not in table  # it stopped at the first difference


@pytest.mark.rtl
@pytest.mark.slow
def test_a_broken_pe_is_caught_at_the_first_layer() -> None:
    require_simulator("verilator")
    run = network.run_network(BUNDLE, HW, "verilator", layers=1, variant="truncated_product")
    assert not run.passed and run.mismatch is not None
    assert run.mismatch.layer == "conv1"
    assert (
        "conv1 on array_top (verilator)" in run.mismatch.message and "outputs differ" in run.mismatch.message
    )


@pytest.mark.rtl
@pytest.mark.slow
def test_whole_network_equals_hwsim() -> None:
    require_simulator("verilator")
    run = network.run_network(BUNDLE, HW, "verilator")
    assert run.passed and run.complete, network.render(run)
    bundle, hw = load_bundle(BUNDLE), load_hw_config(HW)
    assert [r.name for r in run.layers] == [n.name for n in bundle.nodes]
    assert run.mac_layers == len(bundle.mac_nodes)
    assert run.rtl_cycles == sum(layer_timing(layer_from_node(n, bundle), hw).total for n in bundle.mac_nodes)
    assert {r.unit for r in run.layers} == {"array_top", "requant", "hwsim"}  # avgpool_sum by hwsim


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def error(args: list[str]) -> str:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtl_models.check: error: ") and "Traceback" not in err
        return err

    hw = str(HW)
    assert "no-bundle" in error(["--network", str(tmp_path / "no-bundle"), "--hw", hw])
    not_hw = REPO / "configs" / "quant" / "dorefa_a4w4.yaml"  # a YAML file, not a hardware description
    assert str(not_hw) in error(["--network", str(BUNDLE), "--hw", str(not_hw)])
    assert "--hw HW.yaml is missing" in error(["--network", str(BUNDLE)])
    assert "one per call" in error(["--network", str(BUNDLE), "--hw", hw, str(tmp_path)])
    assert "--hw, --layers: only with --network" in error([str(tmp_path), "--hw", hw, "--layers", "2"])
    assert "or --network BUNDLE" in error([])
    tiny = tiny_bundle(tmp_path / "tiny")  # its conv2 is depthwise
    assert "layer 'conv2' is a grouped conv (groups=3)" in error(["--network", str(tiny), "--hw", hw])
    other = tmp_path / "notes.json"
    other.write_text("{}\n")
    assert str(other) in error(["--network", str(BUNDLE), "--hw", hw, "--out", str(other)])
    assert other.read_text() == "{}\n"
    for flow in (f for f in DATAFLOWS.values() if not f.rtl):  # the registry's dataflows without RTL
        cfg = tmp_path / f"{flow.name}.yaml"
        cfg.write_text(HW.read_text().replace("dataflow: ws", f"dataflow: {flow.name}"))
        assert "array.dataflow" in error(["--network", str(BUNDLE), "--hw", str(cfg)])
