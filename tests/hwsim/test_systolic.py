"""hwsim.systolic: register-level array == emulator GEMM == fast fold executor == analytic cycles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.dataflows import DATAFLOWS as REGISTRY
from hwsim.dataflows import weight_stationary
from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.gemm import gemm_exact
from hwsim.hwconfig import ArrayConfig, HardwareConfig, PEConfig
from hwsim.mapping import GemmShape, fold_plan
from hwsim.systolic import OutputWrite, execute_gemm, run_gemm_cycles
from hwsim.timing import ZERO, fold_cycles, native_gemm_cycles

DATAFLOWS = list(REGISTRY)  # every registered dataflow joins every cross-check below


def hw(rows: int, cols: int, dataflow: str, acc_bits: int = 24, overflow: str = "wrap") -> HardwareConfig:
    return HardwareConfig(array=ArrayConfig(rows, cols, dataflow), pe=PEConfig(acc_bits, overflow))


@st.composite
def gemm_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, HardwareConfig]:
    m, k, n = draw(st.integers(1, 7)), draw(st.integers(1, 9)), draw(st.integers(1, 7))
    a_signed = draw(st.booleans())
    a_bits, w_bits = draw(st.integers(1, 6)), draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a_lo, a_hi = (-(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1) if a_signed else (0, (1 << a_bits) - 1)
    a = rng.integers(a_lo, a_hi + 1, size=(m, k))
    w = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), size=(k, n))
    cfg = hw(
        draw(st.integers(1, 5)),
        draw(st.integers(1, 5)),
        draw(st.sampled_from(DATAFLOWS)),
        draw(st.integers(2, 12)),
        draw(st.sampled_from(["wrap", "saturate"])),
    )
    return a, w, cfg


@settings(max_examples=150)
@given(gemm_case())
def test_register_level_equals_emulator_executor_and_analytic(case: tuple) -> None:
    a, w, cfg = case
    tile = run_gemm_cycles(a, w, cfg)
    ref = gemm_exact(a, w, IntFormat(cfg.pe.acc_bits, True), cfg.pe.overflow)
    fast = execute_gemm(a, w, cfg)
    assert np.array_equal(tile.values, ref.acc)
    assert np.array_equal(fast.values, ref.acc)
    assert tile.overflow_count == fast.overflow_count == ref.overflow_count
    assert tile.overflow_events == fast.overflow_events
    assert tile.peak_abs == fast.peak_abs == ref.peak_abs
    gemm = GemmShape(*a.shape, w.shape[1])
    per_fold = ZERO
    for fold in fold_plan(gemm, cfg.array):
        per_fold = per_fold + fold_cycles(fold, gemm, cfg)
    assert tile.cycles == fast.cycles == native_gemm_cycles(gemm, cfg) == per_fold
    assert tile.folds == fast.folds == len(fold_plan(gemm, cfg.array))


def test_ws_write_back_cycles_follow_docs_dataflow() -> None:
    # R = C = 2, M = 2, K = 2, N = 3: two N-folds (nt = 2, then 1), one K-fold each.
    # Fold 0: preload 2 cycles, Y[m, c] leaves column c at 2 + m + (R - 1) + c; stream 2+2+2-2 = 4 cycles.
    # Fold 1 starts at 6: Y[m, 2] at 6 + 2 + m + 1; stream 2+2+1-2 = 3 cycles; total 11.
    a = np.array([[1, 2], [3, 4]])
    w = np.array([[1, 0, 2], [0, 1, 3]])
    run = run_gemm_cycles(a, w, hw(2, 2, "ws"), trace=True)
    assert run.total_cycles == 11
    assert run.cycles.compute == 4 and run.cycles.preload == 4 and run.cycles.fill_drain == 3
    assert run.writes == (
        OutputWrite(3, 0, 0, 0, 1),
        OutputWrite(4, 0, 1, 0, 3),
        OutputWrite(4, 0, 0, 1, 2),
        OutputWrite(5, 0, 1, 1, 4),
        OutputWrite(9, 1, 0, 2, 8),
        OutputWrite(10, 1, 1, 2, 18),
    )


def test_ws_partial_sums_carry_across_k_folds() -> None:
    # R = 1: every k is its own K-fold; each fold writes a partial sum the next one reads back.
    a = np.array([[1, 2, 3]])
    w = np.array([[1], [10], [100]])
    run = run_gemm_cycles(a, w, hw(1, 1, "ws"), trace=True)
    assert [(wr.cycle, wr.value) for wr in run.writes] == [(1, 1), (3, 21), (5, 321)]
    assert run.total_cycles == 3 * (1 + (1 + 1 + 1 - 2))  # preload R + stream M + R + nt - 2, per fold


def test_os_carry_load_costs_rows_cycles_per_fold() -> None:
    # R = C = 2, M = 3, K = 2, N = 2: two M-folds (mt = 2, then 1), nt = 2; W is the identity.
    # Without C: fold 0 streams K + mt + nt - 2 = 4 cycles, drains 2 (bottom row = row 1 at 4,
    # row 0 at 5); fold 1 starts at 6, streams 3, drains 2 (row 1 is past mt, row 0 = m 2 at 10).
    # With C each fold first loads C for R = 2 cycles: fold 0 writes at 6, 7; fold 1 starts at 8,
    # loads 8-9, streams 10-12, writes m 2 at 14; total 11 + 2 * 2 = 15.
    a = np.array([[1, 2], [3, 4], [5, 6]])
    w = np.array([[1, 0], [0, 1]])
    carry = np.array([[10, 20], [30, 40], [50, 60]])
    plain = run_gemm_cycles(a, w, hw(2, 2, "os"), trace=True)
    assert plain.total_cycles == 11 and plain.cycles.preload == 0
    assert [(wr.cycle, wr.m, wr.n, wr.value) for wr in plain.writes] == [
        (4, 1, 0, 3), (4, 1, 1, 4), (5, 0, 0, 1), (5, 0, 1, 2), (10, 2, 0, 5), (10, 2, 1, 6)
    ]  # fmt: skip
    run = run_gemm_cycles(a, w, hw(2, 2, "os"), carry=carry, trace=True)
    assert run.total_cycles == 15
    assert run.cycles.compute == 4 and run.cycles.preload == 4 and run.cycles.fill_drain == 7
    assert run.writes == (
        OutputWrite(6, 0, 1, 0, 33),
        OutputWrite(6, 0, 1, 1, 44),
        OutputWrite(7, 0, 0, 0, 11),
        OutputWrite(7, 0, 0, 1, 22),
        OutputWrite(14, 1, 2, 0, 55),
        OutputWrite(14, 1, 2, 1, 66),
    )


def test_saturate_order_and_overflow_counts() -> None:
    # acc 4 bits [-8, 7]: 7 -> 7+7 clamps to 7 -> 7-7 = 0, although the exact sum 7 fits.
    a = np.array([[1, 1, 1]])
    w = np.array([[7], [7], [-7]])
    for df in DATAFLOWS:
        sat = run_gemm_cycles(a, w, hw(2, 2, df, acc_bits=4, overflow="saturate"))
        assert sat.values.tolist() == [[0]] and sat.overflow_count == 1 and sat.overflow_events == 1
        wrapped = run_gemm_cycles(a, w, hw(2, 2, df, acc_bits=4, overflow="wrap"))
        # 7+7 = 14 wraps to -2, then -2-7 = -9 wraps to 7: two events, and the result equals the exact sum
        assert (
            wrapped.values.tolist() == [[7]] and wrapped.overflow_count == 0 and wrapped.overflow_events == 2
        )
    assert gemm_exact(a, w, IntFormat(4, True), "saturate").acc.tolist() == [[0]]


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_carry_is_added_first(dataflow: str) -> None:
    rng = np.random.default_rng(3)
    a, w = rng.integers(0, 16, (5, 7)), rng.integers(-8, 8, (7, 4))
    carry = rng.integers(-1000, 1000, (5, 4))
    run = run_gemm_cycles(a, w, hw(3, 2, dataflow), carry=carry)
    assert np.array_equal(run.values, carry + a @ w)
    fast = execute_gemm(a, w, hw(3, 2, dataflow), carry=carry)
    assert np.array_equal(fast.values, carry + a @ w)
    # loading C costs the dataflow's carry_load cycles (os: R per fold), in both models
    gemm, array = GemmShape(5, 7, 4), hw(3, 2, dataflow).array
    expected = native_gemm_cycles(gemm, hw(3, 2, dataflow)).total + REGISTRY[dataflow].carry_load(gemm, array)
    assert run.total_cycles == fast.total_cycles == expected


def test_executor_groups_and_partial_range() -> None:
    rng = np.random.default_rng(0)
    a, w = rng.integers(0, 8, (3, 10, 5)), rng.integers(-4, 4, (3, 5, 2))
    cfg = hw(4, 4, "ws", acc_bits=6, overflow="saturate")
    run = execute_gemm(a, w, cfg)
    ref = gemm_exact(a, w, IntFormat(6, True), "saturate")
    assert np.array_equal(run.values, ref.acc) and run.overflow_count == ref.overflow_count
    assert run.cycles == native_gemm_cycles(GemmShape(10, 5, 2, groups=3), cfg)
    prefix = np.cumsum(a[..., :, None] * w[:, None, :, :], axis=2)  # [G, M, K, N] exact partial sums
    assert run.partial_range == (int(prefix.min()), int(prefix.max()))


def test_operand_errors() -> None:
    with pytest.raises(UserError, match="do not form"):
        run_gemm_cycles(np.zeros((2, 3), int), np.zeros((2, 3), int), hw(2, 2, "ws"))
    with pytest.raises(UserError, match="integer codes"):
        run_gemm_cycles(np.zeros((2, 3)), np.zeros((3, 3), int), hw(2, 2, "ws"))
    with pytest.raises(UserError, match="carry"):
        run_gemm_cycles(
            np.zeros((2, 3), int), np.zeros((3, 3), int), hw(2, 2, "ws"), carry=np.zeros((3, 3), int)
        )


def test_a_registered_dataflow_runs_on_its_machine_in_its_fold_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # ws with K-folds outer: the register-level model follows the registry's fold plan
    k_outer = replace(weight_stationary.DATAFLOW, name="ws_k_outer", outer_dim="k", rtl=False)
    monkeypatch.setitem(REGISTRY, k_outer.name, k_outer)
    rng = np.random.default_rng(5)
    a, w = rng.integers(0, 8, (3, 5)), rng.integers(-4, 4, (5, 5))
    cfg = hw(2, 3, "ws_k_outer", acc_bits=7, overflow="saturate")
    run = run_gemm_cycles(a, w, cfg, trace=True)
    ref = gemm_exact(a, w, IntFormat(7, True), "saturate")
    assert np.array_equal(run.values, ref.acc) and run.overflow_count == ref.overflow_count
    gemm = GemmShape(3, 5, 5)
    assert run.cycles == execute_gemm(a, w, cfg).cycles == native_gemm_cycles(gemm, cfg)
    folds = fold_plan(gemm, cfg.array)
    # fold 1 is the first K-tile of the second N-tile (n0 = 3), not the second K-tile of the first
    assert (folds[1].k0, folds[1].n0) == (0, 3)
    assert {wr.n for wr in run.writes or () if wr.fold == 1} == {3, 4}
    assert {wr.n for wr in run.writes or () if wr.fold == 2} == {0, 1, 2}
    # a stationary W laid N over rows has no register-level machine: a clear error, not wrong numbers
    transposed = replace(k_outer, name="ws_n_rows", rows_dim="n", cols_dim="k", outer_dim="n")
    monkeypatch.setitem(REGISTRY, transposed.name, transposed)
    with pytest.raises(UserError, match="no machine for a stationary W tiled n over rows"):
        run_gemm_cycles(a, w, hw(2, 3, "ws_n_rows"))
    with pytest.raises(UserError, match="no machine"):
        execute_gemm(a, w, hw(2, 3, "ws_n_rows"))
