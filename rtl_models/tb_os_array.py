"""cocotb testbench of os_array.v: its ports driven cycle by cycle against hwsim's register-level os model.

Place in the flow: runs inside the simulator, started by tests/rtl/test_os_array.py through
rtl_models/sim.py with ``{"seed": S, "m": M}``. The testbench plays array_os's fold sequencer
and buffers itself, following the os schedule of hwsim/dataflows/output_stationary.py (N-folds
outer, M-folds inner; per fold ROWS carry-load cycles when accumulating, ``K + mt + nt - 2``
stream cycles, ROWS drain cycles), so the array is checked without array_os in between. The
scoreboard is :func:`hwsim.systolic.run_gemm_cycles` on an os array with ``trace=True``: in
every drain cycle each bottom-row accumulator ``y[c]`` of a used row and column must be exactly
the write-back the model makes in that cycle, and the others must read 0; the model may write
in no other cycle. At the end the cycle count, the written outputs and the overflow counter
must equal the model's. A failure names the bottom PE, the cycle (fold and phase), the output
element, expected and actual.
"""

from __future__ import annotations

from collections import defaultdict

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import Timer

from hwsim.systolic import OutputWrite, run_gemm_cycles
from hwsim.vectors import pack_words
from rtl_models.tb_common import ArrayTB, random_codes, tb_config, unsigned_value


class OsArrayTB(ArrayTB):
    """Drives os_array's ports fold by fold and compares the drained bottom row with hwsim every cycle."""

    def __init__(self, dut: SimHandleBase) -> None:
        super().__init__(dut, "os")
        for name in ("clr", "shift", "a_left", "w_top", "acc_top"):
            getattr(dut, name).value = 0

    def drive(self, shift: int, a_left: np.ndarray, w_top: np.ndarray, acc_top: np.ndarray) -> None:
        dut = self.dut
        dut.shift.value = shift
        dut.a_left.value = pack_words(a_left[None, :], self.a_fmt.bits)[0]
        dut.w_top.value = pack_words(w_top[None, :], self.w_fmt.bits)[0]
        dut.acc_top.value = pack_words(acc_top[None, :], self.acc_fmt.bits)[0]

    def bottom_row(self, cycle: int, where: str) -> list[int]:
        """The ``y`` lanes (column c = lane c) as signed accumulator values."""
        bits = str(self.dut.y.value)
        width = self.acc_fmt.bits
        values = []
        for c in range(self.cols):
            lane = bits[len(bits) - (c + 1) * width : len(bits) - c * width]
            assert set(lane) <= {"0", "1"}, (
                f"cycle {cycle} ({where}): bottom PE ({self.rows - 1}, {c}) y reads {lane!r}"
            )
            value = int(lane, 2)
            values.append(value - (1 << width) if value >> (width - 1) else value)
        return values

    def check_drain(
        self, cycle: int, where: str, m_row: int | None, n0: int, nt: int, writes: dict[int, OutputWrite]
    ) -> None:
        """Drain cycle: the bottom row holds Y[m_row, n0 + c] for c < nt (``m_row`` None: a row past mt)."""
        values = self.bottom_row(cycle, where)
        for c in range(self.cols):
            pe = f"bottom PE ({self.rows - 1}, {c})"
            expected = writes.get(n0 + c) if c < nt else None
            if m_row is None or c >= nt:
                assert expected is None, (
                    f"cycle {cycle} ({where}): the model writes {expected}, the tile does not"
                )
                assert values[c] == 0, (
                    f"cycle {cycle} ({where}): {pe} is past the fold's tile (no operands, no carry): "
                    f"expected 0, actual {values[c]}"
                )
                continue
            target = f"Y[m={m_row}, n={n0 + c}]"
            assert expected is not None and expected.m == m_row, (
                f"cycle {cycle} ({where}): {pe} drains {target}, the model writes {expected}"
            )
            assert values[c] == expected.value, (
                f"cycle {cycle} ({where}): {pe} -> {target}: expected {expected.value}, actual {values[c]}"
            )
        assert set(writes) <= {n0 + c for c in range(nt)}, (
            f"cycle {cycle} ({where}): the model writes {writes}"
        )

    async def cycle_without_writes(
        self, cycle: int, where: str, by_cycle: dict[int, dict[int, OutputWrite]]
    ) -> None:
        await Timer(1, unit="ns")
        assert cycle not in by_cycle, (
            f"cycle {cycle} ({where}): the model writes {by_cycle[cycle]}, the array drains nothing"
        )
        await self.step()

    async def run_gemm(self, a: np.ndarray, w: np.ndarray, carry: np.ndarray | None) -> int:
        """Run ``Y = carry + A * W`` on the array (``carry`` None: no load); returns the model's events."""
        rows, cols = self.rows, self.cols
        model = run_gemm_cycles(a, w, self.hw, carry=carry, trace=True)
        assert model.writes is not None
        by_cycle: dict[int, dict[int, OutputWrite]] = defaultdict(dict)
        for wr in model.writes:
            by_cycle[wr.cycle][wr.n] = wr
        m, k = a.shape
        n = w.shape[1]
        obuf = np.zeros((m, n), dtype=np.int64) if carry is None else carry.copy()
        zero_a, zero_w, zero_p = (np.zeros(size, dtype=np.int64) for size in (rows, cols, cols))
        # A GEMM's first cycle (array_os's start edge): clr empties the accumulators and counters.
        self.dut.clr.value = 1
        self.drive(0, zero_a, zero_w, zero_p)
        await self.step()
        self.dut.clr.value = 0
        cycle = 0
        for n0 in range(0, n, cols):
            nt = min(cols, n - n0)
            for m0 in range(0, m, rows):
                mt = min(rows, m - m0)
                fold = f"N-fold at n={n0}, M-fold at m={m0}"
                if carry is not None:
                    for i in range(rows):  # load: the word of cycle i ends in row ROWS-1-i
                        word = np.zeros(cols, dtype=np.int64)
                        if rows - 1 - i < mt:
                            word[:nt] = obuf[m0 + rows - 1 - i, n0 : n0 + nt]
                        self.drive(1, zero_a, zero_w, word)
                        await self.cycle_without_writes(cycle, f"{fold}, load cycle {i}", by_cycle)
                        cycle += 1
                for t in range(k + mt + nt - 2):  # stream K step t, unskewed; the array skews it
                    a_left, w_top = zero_a.copy(), zero_w.copy()
                    if t < k:
                        a_left[:mt] = a[m0 : m0 + mt, t]
                        w_top[:nt] = w[t, n0 : n0 + nt]
                    self.drive(0, a_left, w_top, zero_p)
                    await self.cycle_without_writes(cycle, f"{fold}, stream cycle {t}", by_cycle)
                    cycle += 1
                for d in range(rows):  # drain: the bottom row leaves, zeros enter the top
                    self.drive(1, zero_a, zero_w, zero_p)
                    await Timer(1, unit="ns")
                    row = rows - 1 - d
                    writes = by_cycle.get(cycle, {})
                    where = f"{fold}, drain cycle {d}"
                    self.check_drain(cycle, where, m0 + row if row < mt else None, n0, nt, writes)
                    for wr in writes.values():  # the buffer's write port: written by this clock edge
                        obuf[wr.m, wr.n] = wr.value
                    await self.step()
                    cycle += 1
        self.drive(0, zero_a, zero_w, zero_p)
        assert cycle == model.total_cycles, f"ran {cycle} cycles, the model {model.total_cycles}"
        assert np.array_equal(obuf, model.values), "write-backs do not add up to the model's outputs"
        events = unsigned_value(self.dut.ovf_count)
        assert events == model.overflow_events, (
            f"overflow events: expected {model.overflow_events}, actual {events} ({self.mode} {self.acc_fmt})"
        )
        assert int(self.dut.ovf.value) == int(events > 0), f"sticky flag disagrees with {events} events"
        return model.overflow_events

    def shape(self, k: int) -> tuple[int, int, int]:
        """M from the configuration; N gives two N-folds, the last one partial."""
        return int(tb_config().get("m", 7)), k, self.cols + 2


@cocotb.test()
async def os_random_short_k(dut: SimHandleBase) -> None:
    """Random legal codes with K = 2, then K = 1, back to back without a reset: no carry."""
    tb = OsArrayTB(dut)
    rng = np.random.default_rng(int(tb_config().get("seed", 1)))
    await tb.reset()
    for k in (2, 1):
        m, k, n = tb.shape(k)
        a = random_codes(rng, tb.a_fmt, (m, k))
        w = random_codes(rng, tb.w_fmt, (k, n))
        events = await tb.run_gemm(a, w, None)
        dut._log.info("M=%d K=%d N=%d: %d overflow events", m, k, n, events)


@cocotb.test()
async def os_random_with_carry(dut: SimHandleBase) -> None:
    """Random legal codes with K = 2*ROWS + 1 on partial folds, added to a random carry loaded per fold."""
    tb = OsArrayTB(dut)
    rng = np.random.default_rng(int(tb_config().get("seed", 1)) + 1)
    await tb.reset()
    m, k, n = tb.shape(2 * tb.rows + 1)
    a = random_codes(rng, tb.a_fmt, (m, k))
    w = random_codes(rng, tb.w_fmt, (k, n))
    carry = random_codes(rng, tb.acc_fmt, (m, n))
    events = await tb.run_gemm(a, w, carry)
    dut._log.info("M=%d K=%d N=%d with carry: %d overflow events", m, k, n, events)


@cocotb.test()
async def os_overflow_both_ways(dut: SimHandleBase) -> None:
    """Carries at the accumulator's edges, largest products past them, then back: every output overflows.

    Even columns climb past ``acc.max`` for the first half of K and fall for the rest, odd ones
    the other way round; with saturate the result depends on every partial sum being narrowed.
    """
    tb = OsArrayTB(dut)
    await tb.reset()
    m, k, n = tb.shape(2 * tb.rows + 1)
    acc = tb.acc_fmt
    up = np.arange(n) % 2 == 0
    first = (np.arange(k) < (k + 1) // 2)[:, None]
    w = np.where(first == up[None, :], tb.w_fmt.max, tb.w_fmt.min)
    a = np.full((m, k), tb.a_fmt.max, dtype=np.int64)
    carry = np.where(up, acc.max - 1, acc.min + 1)[None, :].repeat(m, axis=0)
    events = await tb.run_gemm(a, w, carry)
    assert events >= m * n, f"only {events} overflow events for {m * n} outputs started at the edges"
