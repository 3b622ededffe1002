"""`hwsim vectors` and hwsim.vectors: files, manifest and round trip (no simulator needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import HW_DIR, bundles_module

from hwsim.cli import main
from hwsim.fixed import IntFormat
from hwsim.hwconfig import load_hw_config
from hwsim.systolic import run_gemm_cycles
from hwsim.vectors import make_vector_set, read_vectors, write_vectors


def test_cli_writes_a_layer_that_reads_back(tmp_path: Path, capsys) -> None:
    bundle = bundles_module().tiny_bundle(tmp_path / "bundle")
    out = tmp_path / "vec"
    rc = main(
        ["vectors", str(bundle), "--layer", "conv1", "--hw", str(HW_DIR / "ws_8x8.yaml"), "--out", str(out)]
    )
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # conv1: 3x3, 2 -> 3 channels on a 4x4 input with padding 1: M = 16, K = 2*3*3 = 18, N = 3.
    assert manifest["gemm"] == {"m": 16, "k": 18, "n": 3, "k_folds": 3, "n_folds": 1}
    vs = read_vectors(out)
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml")
    run = run_gemm_cycles(vs.a, vs.w, hw)
    assert np.array_equal(vs.expected, run.values) and vs.cycles == run.total_cycles
    # one line per word, ROWS * A_BITS bits wide: 8 lanes of 4-bit codes = 8 hex digits
    lines = (out / "abuf.hex").read_text().split()
    assert len(lines) == 3 * 16 and all(len(line) == 8 for line in lines)
    assert "ADDR_BITS" in capsys.readouterr().out


def test_cli_rejects_an_unknown_layer(tmp_path: Path, capsys) -> None:
    bundle = bundles_module().tiny_bundle(tmp_path / "bundle")
    rc = main(
        [
            "vectors",
            str(bundle),
            "--layer",
            "nope",
            "--hw",
            str(HW_DIR / "ws_8x8.yaml"),
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "conv1" in err and "Traceback" not in err


def test_round_trip_with_signed_codes_and_partial_folds(tmp_path: Path) -> None:
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(
        rows=3, cols=5, acc_bits=16, overflow="saturate"
    )
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(7, 10))
    w = rng.integers(-8, 8, size=(10, 6))
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(8, True), w_fmt=IntFormat(4, True), name="rt")
    back = read_vectors(write_vectors(vs, tmp_path / "rt"))
    assert (
        np.array_equal(back.a, a) and np.array_equal(back.w, w) and np.array_equal(back.expected, vs.expected)
    )
    assert (back.cycles, back.overflow_events, back.parameters) == (
        vs.cycles,
        vs.overflow_events,
        vs.parameters,
    )


def test_write_cycle_matches_the_array_model_trace() -> None:
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(rows=3, cols=4)
    a = np.ones((5, 7), dtype=np.int64)
    w = np.ones((7, 6), dtype=np.int64)
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(8, False), w_fmt=IntFormat(8, True))
    last = {(x.m, x.n): x.cycle for x in run_gemm_cycles(a, w, hw, trace=True).writes}
    assert all(vs.write_cycle(m, n) == cycle for (m, n), cycle in last.items())


def test_accumulating_set_round_trips_with_its_carry(tmp_path: Path) -> None:
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(
        rows=3, cols=2, acc_bits=12, overflow="saturate"
    )
    rng = np.random.default_rng(1)
    a = rng.integers(0, 16, size=(4, 7))
    w = rng.integers(-8, 8, size=(7, 3))
    carry = rng.integers(-2048, 2048, size=(4, 3))
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(4, False), w_fmt=IntFormat(4, True), carry=carry)
    # the expected outputs are hwsim's register-level model with carry=
    assert np.array_equal(vs.expected, run_gemm_cycles(a, w, hw, carry=carry).values)
    out = write_vectors(vs, tmp_path / "acc")
    assert json.loads((out / "manifest.json").read_text())["accumulate"] is True
    back = read_vectors(out)
    assert back.carry is not None and np.array_equal(back.carry, carry)
    assert np.array_equal(back.expected, vs.expected)
