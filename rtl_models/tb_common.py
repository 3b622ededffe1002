"""Shared pieces of the cocotb testbenches: run configuration, clock, signed reads and code streams.

Place in the flow: imported by the ``rtl_models/tb_*.py`` testbenches, which run inside the
simulator; ``rtl_models/sim.py`` passes the configuration as JSON in ``RTL_TB_CONFIG``.
Every testbench drives inputs just after a falling edge and samples outputs at the next falling
edge, so registered outputs have settled and no read races a write.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import FallingEdge

from hwsim.fixed import IntFormat
from hwsim.hwconfig import ArrayConfig, HardwareConfig, PEConfig

CLOCK_NS = 10


def tb_config() -> dict[str, Any]:
    """The per-run configuration that sim.run_testbench passed in (an empty dict when none)."""
    return json.loads(os.environ.get("RTL_TB_CONFIG", "{}") or "{}")


def param(dut: SimHandleBase, name: str) -> int:
    """A Verilog parameter of the DUT, read back from the simulator."""
    return int(getattr(dut, name).value)


def signed_value(handle: SimHandleBase) -> int:
    return int(handle.value.to_signed())


def unsigned_value(handle: SimHandleBase) -> int:
    return int(handle.value.to_unsigned())


class ClockedTB:
    """Clock on ``dut.clk``, synchronous reset on ``dut.rst``, and a cycle counter."""

    def __init__(self, dut: SimHandleBase) -> None:
        self.dut = dut
        self.cycle = 0
        self._edge = FallingEdge(dut.clk)
        # The clock toggles from C (cocotb's GPI clock), not from a Python coroutine: on Icarus this
        # saves a Python wake-up per edge. The testbenches never write in a clock edge's time step.
        Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()

    async def reset(self, cycles: int = 2) -> None:
        self.dut.rst.value = 1
        for _ in range(cycles):
            await self._edge
        self.dut.rst.value = 0
        self.cycle = 0

    async def step(self, n: int = 1) -> None:
        """Let ``n`` rising edges pass; returns just after the next falling edge."""
        for _ in range(n):
            await self._edge
            self.cycle += 1


class ArrayTB(ClockedTB):
    """A MAC array's testbench: its shape and code formats read from the DUT, and hwsim's model of it.

    ``self.hw`` is built from the DUT's own parameters (so the two cannot disagree) in ``flow``.
    """

    def __init__(self, dut: SimHandleBase, flow: str) -> None:
        super().__init__(dut)
        self.rows, self.cols = param(dut, "ROWS"), param(dut, "COLS")
        self.a_fmt = IntFormat(param(dut, "A_BITS"), bool(param(dut, "A_SIGNED")))
        self.w_fmt = IntFormat(param(dut, "W_BITS"), bool(param(dut, "W_SIGNED")))
        self.acc_fmt = IntFormat(param(dut, "ACC_BITS"), True)
        self.mode = "saturate" if param(dut, "SATURATE") else "wrap"
        self.hw = HardwareConfig(
            array=ArrayConfig(self.rows, self.cols, flow), pe=PEConfig(self.acc_fmt.bits, self.mode)
        )


def corner_codes(fmt: IntFormat) -> list[int]:
    """Directed corners of a code format: min, max, 0, +-1 and the sign boundaries."""
    values = {fmt.min, fmt.max, 0, 1, fmt.max - 1, fmt.min + 1, (fmt.max + 1) // 2, (fmt.max + 1) // 2 - 1}
    if fmt.signed:
        values |= {-1, fmt.min // 2, fmt.min // 2 - 1}
    return sorted(v for v in values if fmt.min <= v <= fmt.max)


def random_codes(rng: np.random.Generator, fmt: IntFormat, size: int | tuple[int, ...]) -> np.ndarray:
    """Uniform random legal codes of ``fmt`` as int64."""
    return rng.integers(fmt.min, fmt.max, size=size, endpoint=True, dtype=np.int64)
