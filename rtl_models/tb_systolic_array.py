"""cocotb testbench of systolic_array.v: its ports driven cycle by cycle against hwsim's register-level model.

Place in the flow: runs inside the simulator, started by tests/rtl/test_systolic_array.py through
rtl_models/sim.py with ``{"seed": S, "m": M, "dataflow": "ws" | "is"}``. The testbench plays the
fold sequencer and the output buffer of array_top itself, following the ws schedule of
docs/dataflow.md (N-folds outer, K-folds inner; per fold ROWS preload cycles with ``w_load``,
then ``M + ROWS + nt - 2`` stream cycles), so the array is checked without array_top's buffers
and counters in between. For ``is`` the array runs ``Y^T = W^T A^T`` (as array_top does): the
model is hwsim's is dataflow on ``A``, ``W``, its write-backs read in the array's terms.
The scoreboard is :func:`hwsim.systolic.run_gemm_cycles` with ``trace=True``: in every cycle,
each bottom-row output ``y[c]`` with ``y_valid[c]`` must be exactly the write-back (final or
partial sum) the model makes in that cycle, and no other used column may be valid. Columns past
a partial N-fold (zero weights and zero carries) must read 0 when valid. At the end the overflow
counter must equal the model's narrowing events. A failure names the first mismatching PE,
cycle, output element, expected and actual.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import Timer

from hwsim.dataflows import dataflow
from hwsim.systolic import OutputWrite, run_gemm_cycles
from hwsim.vectors import pack_words
from rtl_models.tb_common import ArrayTB, random_codes, tb_config, unsigned_value


class SystolicTB(ArrayTB):
    """Drives systolic_array's ports fold by fold and compares the bottom row with hwsim every cycle."""

    def __init__(self, dut: SimHandleBase) -> None:
        # ws, or is: this array on Y^T = W^T A^T, as array_top runs it
        self.flow = str(tb_config().get("dataflow", "ws"))
        assert dataflow(self.flow).stationary in ("W", "A"), f"{self.flow} does not run on systolic_array"
        super().__init__(dut, self.flow)
        for name in ("clr", "w_load", "w_top", "a_valid", "a_row", "carry_row"):
            getattr(dut, name).value = 0

    def drive(
        self, w_load: int, w_top: np.ndarray, a_valid: int, a_row: np.ndarray, carry: np.ndarray
    ) -> None:
        dut = self.dut
        dut.w_load.value = w_load
        dut.w_top.value = pack_words(w_top[None, :], self.w_fmt.bits)[0]
        dut.a_valid.value = a_valid
        dut.a_row.value = pack_words(a_row[None, :], self.a_fmt.bits)[0]
        dut.carry_row.value = pack_words(carry[None, :], self.acc_fmt.bits)[0]

    def bottom_row(self) -> tuple[int, list[str]]:
        """``y_valid`` as an int and the ``y`` lanes as bit strings (lane c = column c)."""
        valid = unsigned_value(self.dut.y_valid)
        bits = str(self.dut.y.value)
        width = self.acc_fmt.bits
        return valid, [bits[len(bits) - (c + 1) * width : len(bits) - c * width] for c in range(self.cols)]

    def check_cycle(self, cycle: int, where: str, n0: int, pt: int, writes: dict[int, OutputWrite]) -> None:
        """Compare the bottom row of this cycle with the model's write-backs ``writes`` (by output column)."""
        valid, lanes = self.bottom_row()
        if not valid and not writes:
            return
        for c in range(self.cols):
            pe = f"bottom PE ({self.rows - 1}, {c})"
            is_valid = bool(valid >> c & 1)
            expected = writes.get(n0 + c) if c < pt else None
            if expected is None:
                if c < pt:
                    assert not is_valid, (
                        f"cycle {cycle} ({where}): {pe} y_valid high, the model writes nothing"
                    )
                elif is_valid:
                    actual = self._lane_value(lanes[c], cycle, where, pe)
                    assert actual == 0, (
                        f"cycle {cycle} ({where}): {pe} is past the fold's {pt} columns (zero weights "
                        f"and carries): expected 0, actual {actual}"
                    )
                continue
            target = f"Y[m={expected.m}, n={expected.n}]"
            assert is_valid, (
                f"cycle {cycle} ({where}): {pe} y_valid low, the model writes {target} = {expected.value}"
            )
            actual = self._lane_value(lanes[c], cycle, where, pe)
            assert actual == expected.value, (
                f"cycle {cycle} ({where}): {pe} -> {target}: expected {expected.value}, actual {actual}"
            )

    def _lane_value(self, lane: str, cycle: int, where: str, pe: str) -> int:
        assert set(lane) <= {"0", "1"}, f"cycle {cycle} ({where}): {pe} y reads {lane!r}"
        value = int(lane, 2)
        return value - (1 << self.acc_fmt.bits) if value >> (self.acc_fmt.bits - 1) else value

    async def run_gemm(self, a: np.ndarray, w: np.ndarray, carry: np.ndarray) -> int:
        """Run ``Y = carry + A * W`` through the array; returns the model's overflow events."""
        rows, cols = self.rows, self.cols
        if self.flow == "ws":
            model = run_gemm_cycles(a, w, self.hw, carry=carry, trace=True)
            writes, values = list(model.writes or ()), model.values
        else:  # is: the array streams W^T (a) through tiles of A^T (w); the model runs the GEMM itself
            model = run_gemm_cycles(w.T, a.T, self.hw, carry=carry.T, trace=True)
            writes = [replace(wr, m=wr.n, n=wr.m) for wr in model.writes or ()]  # in the array's terms
            values = model.values.T
        by_cycle: dict[int, dict[int, OutputWrite]] = defaultdict(dict)
        for wr in writes:
            by_cycle[wr.cycle][wr.n] = wr
        m, k = a.shape
        n = w.shape[1]
        obuf = carry.copy()  # the output buffer: C, then each fold's write-backs
        zero_a, zero_w, zero_p = (np.zeros(size, dtype=np.int64) for size in (rows, cols, cols))
        cycle = 0
        for n0 in range(0, n, cols):
            pt = min(cols, n - n0)
            for k0 in range(0, k, rows):
                kt = min(rows, k - k0)
                tile = np.zeros((rows, cols), dtype=np.int64)
                tile[:kt, :pt] = w[k0 : k0 + kt, n0 : n0 + pt]
                fold = f"N-fold at n={n0}, K-fold at k={k0}"
                for i in range(rows):  # preload: the word of cycle i ends in row ROWS-1-i
                    self.drive(1, tile[rows - 1 - i], 0, zero_a, zero_p)
                    await Timer(1, unit="ns")  # let the bottom row's combinational outputs settle
                    self.check_cycle(cycle, f"{fold}, preload cycle {i}", n0, pt, by_cycle.get(cycle, {}))
                    await self.step()
                    cycle += 1
                for t in range(m + rows + pt - 2):  # stream row t, unskewed; the array skews it
                    if t < m:
                        a_row = np.zeros(rows, dtype=np.int64)
                        a_row[:kt] = a[t, k0 : k0 + kt]
                        c_row = np.zeros(cols, dtype=np.int64)
                        c_row[:pt] = obuf[t, n0 : n0 + pt]
                        self.drive(0, zero_w, 1, a_row, c_row)
                    else:
                        self.drive(0, zero_w, 0, zero_a, zero_p)
                    await Timer(1, unit="ns")
                    writes = by_cycle.get(cycle, {})
                    self.check_cycle(cycle, f"{fold}, stream cycle {t}", n0, pt, writes)
                    for wr in writes.values():  # the buffer's write port: written by this clock edge
                        obuf[wr.m, wr.n] = wr.value
                    await self.step()
                    cycle += 1
        self.drive(0, zero_w, 0, zero_a, zero_p)
        assert cycle == model.total_cycles, f"ran {cycle} cycles, the model {model.total_cycles}"
        assert np.array_equal(obuf, values), "write-backs do not add up to the model's outputs"
        events = unsigned_value(self.dut.ovf_count)
        assert events == model.overflow_events, (
            f"overflow events: expected {model.overflow_events}, actual {events} ({self.mode} {self.acc_fmt})"
        )
        assert int(self.dut.ovf.value) == int(events > 0), f"sticky flag disagrees with {events} events"
        return model.overflow_events

    def shape(self) -> tuple[int, int, int]:
        """M from the configuration; K and N give two or more K- and N-folds, the last ones partial."""
        return int(tb_config().get("m", 7)), 2 * self.rows + 1, self.cols + 2


@cocotb.test()
async def systolic_random_with_carry(dut: SimHandleBase) -> None:
    """Random legal codes on partial folds, added to a random initial carry."""
    tb = SystolicTB(dut)
    rng = np.random.default_rng(int(tb_config().get("seed", 1)))
    await tb.reset()
    m, k, n = tb.shape()
    a = random_codes(rng, tb.a_fmt, (m, k))
    w = random_codes(rng, tb.w_fmt, (k, n))
    carry = random_codes(rng, tb.acc_fmt, (m, n))
    events = await tb.run_gemm(a, w, carry)
    dut._log.info("M=%d K=%d N=%d with carry: %d overflow events", m, k, n, events)


@cocotb.test()
async def systolic_overflow_both_ways(dut: SimHandleBase) -> None:
    """Largest products of both signs on carries at the accumulator's edges: every output overflows."""
    tb = SystolicTB(dut)
    await tb.reset()
    m, k, n = tb.shape()
    acc = tb.acc_fmt
    up = np.arange(n) % 2 == 0  # even columns climb past acc.max, odd ones fall past acc.min
    w = np.where(up, tb.w_fmt.max, tb.w_fmt.min)[None, :].repeat(k, axis=0)
    a = np.full((m, k), tb.a_fmt.max, dtype=np.int64)
    carry = np.where(up, acc.max - 1, acc.min + 1)[None, :].repeat(m, axis=0)
    events = await tb.run_gemm(a, w, carry)
    assert events >= m * n, f"only {events} overflow events for {m * n} outputs started at the edges"
