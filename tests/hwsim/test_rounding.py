"""Every rounding mode of hwsim.fixed.round_shift against an independent definition on Python integers.

The reference rounds the exact rational ``v / 2^n`` (``fractions.Fraction``) by each mode's
definition in docs/export-format.md, written here without shifts or masks. Case count: 6 modes x
100 examples x (300 values + 100 exact ties) = 240,000 elements, shifts 0..62, every int64 magnitude,
plus the emulator's float64 requantizer against the int64 one for every mode.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import tiny_bundle, tiny_inputs
from hwsim.dataflows import DATAFLOWS
from hwsim.emulator import emulate
from hwsim.fixed import ROUNDING_MODES, FormatError, requantize_sum, round_shift, rounding_code

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def reference(v: int, n: int, mode: str) -> int:
    """``v / 2^n`` rounded by ``mode``, from the rational value and its distance to the nearest integers."""
    x = Fraction(v, 1 << n)
    lo = math.floor(x)
    frac = x - lo  # in [0, 1)
    if frac == 0:
        return lo
    if mode == "floor":
        return lo
    if mode == "ceil":
        return lo + 1
    if mode == "toward_zero":
        return lo + 1 if x < 0 else lo
    if frac != Fraction(1, 2):
        return lo + 1 if frac > Fraction(1, 2) else lo
    # an exact tie between lo and lo + 1
    return {
        "half_up": lo + 1,
        "half_even": lo if lo % 2 == 0 else lo + 1,
        "half_away": lo + 1 if x > 0 else lo,
    }[mode]


def values_for(rng: np.random.Generator, n: int) -> list[int]:
    """300 int64 values of every magnitude plus 100 exact ties ``(2k+1) 2^(n-1)`` of both signs."""
    out = [I64_MIN, I64_MAX, 0, 1, -1, 2, -2]
    while len(out) < 300:
        width = int(rng.integers(0, 64))
        v = int(rng.integers(0, 1 << 62)) >> (62 - min(width, 62)) if width else 0
        v = (v if rng.random() < 0.5 else -v) + int(rng.integers(-3, 4))
        if I64_MIN <= v <= I64_MAX:
            out.append(v)
    if n:
        half = 1 << (n - 1)
        limit = min(1 << 20, (I64_MAX // half - 1) // 2)
        for k in rng.integers(-limit, limit, size=100):
            out.append((2 * int(k) + 1) * half)
    return out


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 62), seed=st.integers(0, 2**32 - 1))
def test_round_shift_equals_the_definition(mode: str, n: int, seed: int) -> None:
    values = values_for(np.random.default_rng(seed), n)
    got = round_shift(np.array(values, dtype=np.int64), n, mode)
    want = [reference(v, n, mode) for v in values]
    bad = [(v, g, w) for v, g, w in zip(values, got.tolist(), want, strict=True) if g != w]
    assert not bad, f"{mode}, n={n}: (value, got, expected) {bad[:5]}"


def test_ties_of_both_signs_by_hand() -> None:
    # v / 2 for v = -5..5 odd: -2.5, -1.5, -0.5, 0.5, 1.5, 2.5
    v = np.array([-5, -3, -1, 1, 3, 5])
    table = {
        "half_up": [-2, -1, 0, 1, 2, 3],
        "half_even": [-2, -2, 0, 0, 2, 2],
        "half_away": [-3, -2, -1, 1, 2, 3],
        "floor": [-3, -2, -1, 0, 1, 2],
        "ceil": [-2, -1, 0, 1, 2, 3],
        "toward_zero": [-2, -1, 0, 0, 1, 2],
    }
    assert set(table) == set(ROUNDING_MODES)
    for mode, want in table.items():
        assert round_shift(v, 1, mode).tolist() == want, mode
        assert round_shift(v, 0, mode).tolist() == v.tolist(), mode  # n = 0: the identity
    assert [rounding_code(m) for m in ROUNDING_MODES] == list(range(len(ROUNDING_MODES)))
    with pytest.raises(FormatError, match="half_up, half_even"):
        round_shift(v, 1, "nearest")


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_per_channel_shifts_and_requantize_sum(mode: str) -> None:
    rng = np.random.default_rng(rounding_code(mode))
    x = rng.integers(-(1 << 40), 1 << 40, size=(50, 7))
    shift = np.array([0, 1, 2, 5, 17, 40, 62])
    m, o = rng.integers(-1000, 1000, size=7), rng.integers(-(1 << 50), 1 << 50, size=7)
    got = requantize_sum([x], [m], shift, channel_axis=1, offset=o, rounding=mode)
    want = [
        [reference(int(x[i, c]) * int(m[c]) + int(o[c]), int(shift[c]), mode) for c in range(7)]
        for i in range(50)
    ]
    assert got.tolist() == want


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_emulator_fast_and_int64_paths_agree_for_every_mode(tmp_path: Path, mode: str) -> None:
    """The tiny net's shifts 0, 1 and 2 make ties frequent: the float64 requantizer of the fast path and
    hwsim.fixed's int64 one give the same codes, and the mode changes the result somewhere."""
    bundle = load_bundle(tiny_bundle(tmp_path / "t", rounding=mode))
    assert {n.rounding for n in bundle.nodes if n.op == "requant"} == {mode}
    codes = tiny_inputs(256)
    fast = emulate(bundle, codes)
    exact = emulate(bundle, codes, int64_only=True)
    assert {"act1", "act2", "sgn", "logits"} <= set(fast.tensors)
    for name in fast.tensors:
        assert np.array_equal(fast.tensors[name], exact.tensors[name]), (mode, name)
    if mode != "half_up":
        other = emulate(load_bundle(tiny_bundle(tmp_path / "h")), codes)
        assert any(not np.array_equal(other.tensors[k], fast.tensors[k]) for k in fast.tensors), mode


MIXED = {"act1": "half_even", "act2": "floor", "sgn": "half_up", "logits": "toward_zero"}


def mixed_bundle(path: Path) -> Path:
    """The tiny net with a different rounding mode per requantizer, and a reference batch."""
    return tiny_bundle(path, reference_images=8, rounding=MIXED)


def test_a_bundle_mixing_modes_emulates_and_simulates(tmp_path: Path) -> None:
    from hwsim.cli import main
    from hwsim.hwconfig import ArrayConfig, HardwareConfig, PEConfig
    from hwsim.simulate import simulate_bundle

    path = mixed_bundle(tmp_path / "mixed")
    bundle = load_bundle(path)
    assert {n.name: n.rounding for n in bundle.nodes if n.op == "requant"} == MIXED
    codes = tiny_inputs(64)
    run = emulate(bundle, codes)
    # each requantizer applied its own mode: recompute every one from the emulator's own inputs
    for node in bundle.nodes:
        if node.op != "requant":
            continue
        v = requantize_sum(
            [run.tensors[i.tensor] for i in node.inputs],
            [i.multiplier for i in node.inputs],
            node.shift,
            channel_axis=1,
            biases=[i.bias for i in node.inputs],
            offset=node.offset,
            rounding=MIXED[node.name],
        )
        fmt = bundle.tensors[node.output].fmt
        want = np.where(v >= 0, 1, -1) if node.function == "sign" else np.clip(v, fmt.min, fmt.max)
        assert np.array_equal(run.tensors[node.output], want), node.name
    exact = emulate(bundle, codes, int64_only=True)
    assert all(np.array_equal(run.tensors[k], exact.tensors[k]) for k in run.tensors)
    for dataflow in DATAFLOWS:
        hw = HardwareConfig(array=ArrayConfig(3, 2, dataflow), pe=PEConfig(16, "wrap"))
        sim = simulate_bundle(bundle, hw, codes[:4])
        assert sim.totals["array_value_mismatches"] == 0
    assert main(["emulate", str(path)]) == 0
    assert (
        main(["simulate", str(path), "--hw", "configs/hw/ws_16x16.yaml", "--report", str(tmp_path / "r")])
        == 0
    )
