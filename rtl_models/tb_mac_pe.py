"""cocotb testbench of mac_pe.v: every cycle against hwsim.fixed.narrow (the PE of docs/dataflow.md).

Place in the flow: runs inside the simulator, started by tests/rtl/test_mac_pe.py through
rtl_models/sim.py. The scoreboard is ``narrow(psum_in + a * w, acc_fmt, mode)``; an overflow
event is a narrowing that changes the value, and the PE's counter must equal the number of events.
"""

from __future__ import annotations

import itertools

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import Timer

from hwsim.fixed import IntFormat, narrow
from rtl_models.tb_common import ClockedTB, corner_codes, param, random_codes, signed_value, tb_config


class MacPeTB(ClockedTB):
    """Drives one PE and keeps the scoreboard: expected partial sum, flag and overflow count."""

    def __init__(self, dut: SimHandleBase) -> None:
        super().__init__(dut)
        self.a_fmt = IntFormat(param(dut, "A_BITS"), bool(param(dut, "A_SIGNED")))
        self.w_fmt = IntFormat(param(dut, "W_BITS"), bool(param(dut, "W_SIGNED")))
        self.acc_fmt = IntFormat(param(dut, "ACC_BITS"), True)
        self.mode = "saturate" if param(dut, "SATURATE") else "wrap"
        self.registered = bool(param(dut, "PSUM_REG"))
        self.weight = 0
        self.psum = 0
        self.events = 0
        for name in ("clr", "w_load", "w_in", "en", "a_in", "psum_in"):
            getattr(dut, name).value = 0

    async def load_weight(self, w: int) -> None:
        self.dut.w_load.value, self.dut.w_in.value = 1, w
        await self.step()
        self.dut.w_load.value = 0
        self.weight = w
        assert signed_value(self.dut.w_out) == self._as_read(w, self.w_fmt), f"w_out after loading {w}"

    async def mac(self, a: int, psum_in: int, en: int = 1) -> None:
        """One cycle with activation ``a`` and partial sum ``psum_in``; checks every output."""
        dut = self.dut
        dut.en.value, dut.a_in.value, dut.psum_in.value = en, a, psum_in
        exact = psum_in + a * self.weight
        value, changed = narrow(np.int64(exact), self.acc_fmt, self.mode)
        expected = int(value)
        if not self.registered:
            await Timer(1, unit="ns")  # let the combinational output settle
            self._check_psum(expected, a, psum_in, "combinational ")
        await self.step()
        if en:
            self.psum = expected
            self.events += changed
        if self.registered:
            self._check_psum(self.psum, a, psum_in, "")
        assert int(dut.en_out.value) == en, f"cycle {self.cycle}: en_out {int(dut.en_out.value)} != {en}"
        got_a = self._as_read(a, self.a_fmt)
        assert signed_value(dut.a_out) == got_a, f"cycle {self.cycle}: a_out != a_in {a}"
        count, flag = int(dut.ovf_count.value), int(dut.ovf.value)
        assert count == self.events, (
            f"cycle {self.cycle}: overflow count expected {self.events}, actual {count} "
            f"(a={a} w={self.weight} psum_in={psum_in} exact={exact} {self.mode} {self.acc_fmt})"
        )
        assert flag == int(self.events > 0), f"cycle {self.cycle}: sticky flag {flag}, events {self.events}"

    def _check_psum(self, expected: int, a: int, psum_in: int, kind: str) -> None:
        actual = signed_value(self.dut.psum_out)
        assert actual == expected, (
            f"cycle {self.cycle}: {kind}psum_out expected {expected}, actual {actual} "
            f"(a={a} w={self.weight} psum_in={psum_in}, exact {psum_in + a * self.weight}, "
            f"{self.mode} to {self.acc_fmt})"
        )

    @staticmethod
    def _as_read(value: int, fmt: IntFormat) -> int:
        """What a signed read of a ``fmt`` port shows for ``value`` (unsigned codes wrap)."""
        bits = fmt.bits
        return value - (1 << bits) if value >= 1 << (bits - 1) else value


@cocotb.test()
async def pe_directed_corners(dut: SimHandleBase) -> None:
    """Every corner activation x corner weight, added to partial sums at the accumulator's edges."""
    tb = MacPeTB(dut)
    await tb.reset()
    acc = tb.acc_fmt
    psums = [0, acc.max, acc.min, -1, 1, acc.max // 2, acc.min // 2]
    for w in corner_codes(tb.w_fmt):
        await tb.load_weight(w)
        for a, p in itertools.product(corner_codes(tb.a_fmt), psums):
            await tb.mac(a, p)
    assert tb.events > 0, "the corners never overflowed the accumulator"


@cocotb.test()
async def pe_random_accumulate(dut: SimHandleBase) -> None:
    """The PE's output fed back as its partial sum: a running accumulator driven into overflow both ways."""
    tb = MacPeTB(dut)
    cfg = tb_config()
    rng = np.random.default_rng(int(cfg.get("seed", 1)))
    await tb.reset()
    n = int(cfg.get("cycles", 2000))
    hi_before = lo_before = 0
    for i in range(n):
        if i % 50 == 0:
            # Phases biased to one sign of the product push the accumulator over both edges.
            phase = (i // 50) % 3
            w = int(random_codes(rng, tb.w_fmt, 1)[0])
            if phase == 0:
                w = tb.w_fmt.max
            elif phase == 1 and tb.w_fmt.signed:
                w = tb.w_fmt.min
            await tb.load_weight(w)
        a = int(random_codes(rng, tb.a_fmt, 1)[0])
        en = int(rng.random() < 0.9)
        before = tb.psum
        await tb.mac(a, tb.psum, en)
        exact = before + a * tb.weight
        hi_before += en and exact > tb.acc_fmt.max
        lo_before += en and exact < tb.acc_fmt.min
    dut._log.info("%d cycles, %d overflow events (%d high, %d low)", n, tb.events, hi_before, lo_before)
    assert tb.events == hi_before + lo_before


@cocotb.test()
async def pe_weight_shift_blocks_mac(dut: SimHandleBase) -> None:
    """A cycle that shifts weights does no MAC and kills the valid bit, whatever `en` says."""
    tb = MacPeTB(dut)
    await tb.reset()
    await tb.load_weight(tb.w_fmt.max)
    dut.en.value, dut.a_in.value, dut.psum_in.value = 1, tb.a_fmt.max, 5
    dut.w_load.value, dut.w_in.value = 1, 1
    await tb.step()
    dut.w_load.value = 0
    assert int(dut.en_out.value) == 0, "en_out must be 0 after a weight-shift cycle"
    assert int(dut.ovf_count.value) == 0
    if tb.registered:
        assert signed_value(dut.psum_out) == 0, "psum_out changed in a weight-shift cycle"
    tb.weight = 1
    await tb.mac(3, 10)
