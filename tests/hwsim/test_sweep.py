"""hwsim.sweep and `hwsim sweep`: the in-memory rewrites are exact, and the sweep measures what it says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from bundles import random_resnet20_bundle, tiny_bundle, tiny_inputs
from hypothesis import given
from hypothesis import strategies as st

from hwsim.cli import main
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.fixed import round_shift
from hwsim.ir import load_bundle
from hwsim.sweep import (
    SweepPoint,
    SweepResult,
    _sub_bundle,
    cut_before,
    narrow_layer_input,
    narrow_weights,
    parse_range,
    sqnr_db,
    sweep_bundle,
    wrap_layer_acc,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("tiny") / "b", reference_images=12)


@pytest.mark.parametrize("bits", [4, 6, 9])
def test_wrap_rewrite_equals_a_narrow_accumulator(tiny: Path, bits: int) -> None:
    # wrapping every MAC layer by rewrite == the emulator run with acc_bits = bits (wrap is modular)
    bundle = load_bundle(tiny)
    rewritten = bundle
    for node in bundle.mac_nodes:
        rewritten = wrap_layer_acc(rewritten, node.name, bits)
    codes = tiny_inputs(20)
    ours = emulate(rewritten, codes)
    ref = emulate(bundle, codes, EmulatorConfig(acc_bits=bits, overflow="wrap"))
    assert sum(s.overflow_count for s in ref.layers.values()) > 0
    assert np.array_equal(ours.logits, ref.logits)
    for name in ("act1", "act2", "sgn"):
        assert np.array_equal(ours.tensors[name], ref.tensors[name])


def test_input_rewrite_narrows_only_that_layer(tiny: Path) -> None:
    bundle = load_bundle(tiny)
    rewritten = narrow_layer_input(bundle, "conv2", 2)  # act1 is int4: drop 2 bits
    codes = tiny_inputs(6)
    run = emulate(rewritten, codes)
    seen = run.tensors["act1@conv2.a2.up"]
    act1 = run.tensors["act1"]
    assert np.array_equal(seen, np.clip(round_shift(act1, 2), -1, 1) << 2)
    assert not np.array_equal(seen, act1)
    # the residual input of act2 still reads the full act1: rewritten == original up to conv2
    assert np.array_equal(act1, emulate(bundle, codes).tensors["act1"])
    assert narrow_layer_input(bundle, "conv2", 4) is None


@given(st.lists(st.integers(-127, 127), min_size=1, max_size=12), st.integers(2, 8))
def test_narrow_weights(values: list[int], bits: int) -> None:
    w = np.array(values).reshape(1, -1)
    out = narrow_weights(w, bits)
    qmax = (1 << (bits - 1)) - 1
    peak = int(np.abs(w).max())
    if peak <= qmax:
        assert np.array_equal(out, w)
    else:
        step = 1 << math.ceil(math.log2(max(1, peak)) - (bits - 1))
        assert np.all(np.abs(out) <= peak + step)
        levels = {int(v) for v in np.unique(np.abs(out))}
        assert len(levels) <= qmax + 1


def test_sub_bundle_from_a_cut_gives_the_same_logits(tmp_path: Path) -> None:
    bundle = load_bundle(random_resnet20_bundle(tmp_path / "rn", 4, 4, reference_images=2))
    codes = bundle.reference.input_codes
    full = emulate(bundle, codes)
    index = [n.name for n in bundle.nodes].index("layer2.1.relu2.conv")
    start = cut_before(bundle, index)
    assert 0 < start <= index
    (cut,) = {bundle.nodes[start].input}
    sub = _sub_bundle(bundle, start, cut)
    assert np.array_equal(emulate(sub, full.tensors[cut]).logits, full.logits)


def test_sweep_points_and_minimum_widths(tiny: Path) -> None:
    bundle = load_bundle(tiny)
    codes = bundle.reference.input_codes
    result = sweep_bundle(bundle, "w_bits", [2, 3, 4], codes, labels=bundle.reference.labels)
    assert len(result.points) == 3 * 3
    for p in result.points:
        if not p.changed:
            assert p.sqnr_db == math.inf and p.agreement == result.baseline["agreement"]
    conv2 = [p for p in result.points if p.layer == "conv2"]
    assert not any(p.changed for p in conv2)  # ternary weights already fit 2 bits
    acc = sweep_bundle(bundle, "acc_bits", [4, 8, 31 - 1], codes)
    rates = {(p.layer, p.bits): p.overflow_rate for p in acc.points}
    assert rates[("conv1", 4)] > 0 and rates[("conv1", 30)] == 0
    with pytest.raises(UserError, match="--what"):
        sweep_bundle(bundle, "x_bits", [2], codes)


def test_min_bits_is_the_start_of_the_safe_tail() -> None:
    result = SweepResult("w_bits", [2, 3, 4, 5], ["a", "b", "c"], [], 0.9)
    for layer, agreements in {
        "a": [0.5, 0.95, 0.8, 1.0],
        "b": [0.95, 0.95, 1, 1],
        "c": [0, 0, 0, 0.5],
    }.items():
        for bits, value in zip([2, 3, 4, 5], agreements, strict=True):
            result.points.append(SweepPoint(layer, bits, True, 0.0, value, None))
    assert result.min_bits() == {"a": 5, "b": 2, "c": None}


def test_parse_range_and_sqnr() -> None:
    assert parse_range("2..5") == [2, 3, 4, 5]
    assert parse_range("8,4,6") == [4, 6, 8]
    with pytest.raises(UserError, match="LO..HI"):
        parse_range("two")
    assert sqnr_db(np.array([3, 4]), np.array([3, 4])) == math.inf
    assert sqnr_db(np.array([10, 0]), np.array([11, 0])) == pytest.approx(20.0)


def test_cli_sweep(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "sweep",
                str(tiny),
                "--what",
                "a_bits",
                "--range",
                "2..4",
                "--images",
                "12",
                "--report",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    doc = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in doc["layers"]] == ["conv1", "conv2", "fc"]
    assert "min_a_bits" in doc["layers"][0]
    assert (out / "sensitivity_a_bits_agreement.png").is_file() and (out / "sweep.csv").is_file()
    assert (
        main(
            [
                "sweep",
                str(tiny),
                "--what",
                "acc_bits",
                "--range",
                "4..6",
                "--images",
                "4",
                "--report",
                str(tmp_path / "acc"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "acc" / "sensitivity_acc_bits_overflow.png").is_file()
    assert (
        main(["sweep", str(tiny), "--what", "w_bits", "--range", "x", "--report", str(tmp_path / "bad")]) == 2
    )
