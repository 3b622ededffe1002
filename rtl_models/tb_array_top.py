"""cocotb testbench of array_top.v: runs hwsim.vectors sets, checks values, cycles and overflow counts.

Place in the flow: runs inside the simulator, started by tests/rtl/test_array_top.py (and
benchmarks/bench_rtl.py) through rtl_models/sim.py with ``{"vectors": [dir, ...], "dump": dir}``
(``dump``, optional: where to save each run's output accumulators as ``<name>.rtl_y.npy`` and
its cycle count, wall and CPU time as ``<name>.timing.json``). Any RTL with
array_top's port interface (docs/rtl.md) can be checked with it. Per vector set it loads the
buffers through the host ports (for an accumulating set also the output buffer with C, and
``accumulate`` high with ``start``), pulses ``start``, waits for ``done`` and requires:

* every output accumulator ``==`` hwsim's (a failure names the first mismatching element, the
  array column and the bottom PE that produced it, the cycle that wrote it, expected and actual);
* the cycle counter ``==`` hwsim's cycle count, and ``==`` the clock edges the testbench itself
  counted between start and done;
* the overflow counter ``==`` hwsim's count of narrowing events (one per PE and product).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import RisingEdge, with_timeout
from cocotb.utils import get_sim_time

from hwsim.fixed import IntFormat
from hwsim.output import safe_name
from hwsim.vectors import (
    BufferLayout,
    VectorSet,
    buffer_images,
    buffer_layout,
    formats,
    from_image,
    pack_words,
    read_vectors,
    unpack_words,
)
from rtl_models.tb_common import CLOCK_NS, ClockedTB, param, tb_config, unsigned_value

CHECKED_PARAMETERS = ("ROWS", "COLS", "A_BITS", "W_BITS", "ACC_BITS", "SATURATE", "A_SIGNED", "W_SIGNED")


class ArrayTopTB(ClockedTB):
    """Loads buffers, runs one GEMM and reads the output buffer of array_top."""

    def __init__(self, dut: SimHandleBase) -> None:
        super().__init__(dut)
        self.params = {name: param(dut, name) for name in (*CHECKED_PARAMETERS, "ADDR_BITS")}
        # A design without DATAFLOW (your own single-dataflow array_top) is taken to be the sets' dataflow.
        if hasattr(dut, "DATAFLOW"):
            self.params["DATAFLOW"] = param(dut, "DATAFLOW")
        for name in (
            "a_we",
            "w_we",
            "o_we",
            "start",
            "accumulate",
            "a_addr",
            "w_addr",
            "o_addr",
            "a_wdata",
            "w_wdata",
            "o_wdata",
            "m_rows",
            "k_depth",
            "n_cols",
        ):
            getattr(dut, name).value = 0

    def check_fits(self, vs: VectorSet) -> None:
        wrong = {
            k: (vs.parameters.get(k, 1 if k == "W_SIGNED" else 0), self.params[k])
            for k in (*CHECKED_PARAMETERS, "DATAFLOW")
            if k in self.params and vs.parameters.get(k, 1 if k == "W_SIGNED" else 0) != self.params[k]
        }
        assert not wrong, (
            f"{vs.name}: vectors made for other parameters (vectors, DUT): {wrong}; rebuild or regenerate"
        )
        assert vs.addr_bits <= self.params["ADDR_BITS"], (
            f"{vs.name}: needs ADDR_BITS >= {vs.addr_bits}, the DUT has {self.params['ADDR_BITS']}"
        )

    async def write_buffer(self, prefix: str, words: list[int]) -> None:
        await write_buffer(self.dut, prefix, words, self.step)

    async def load(self, vs: VectorSet) -> None:
        """Write the activation and weight buffers, and for an accumulating set the output buffer (C)."""
        a_fmt, w_fmt, acc_fmt = formats(vs.parameters)
        images = buffer_images(vs)  # the dataflow's layout (hwsim.vectors.BUFFER_LAYOUTS)
        await self.write_buffer("a", pack_words(images["abuf"], a_fmt.bits))
        await self.write_buffer("w", pack_words(images["wbuf"], w_fmt.bits))
        if vs.carry is not None:
            await self.write_buffer("o", pack_words(images["carry_obuf"], acc_fmt.bits))

    async def run(self, vs: VectorSet) -> tuple[int, int]:
        """Pulse start, wait for done; returns (cycle counter, clock edges counted here)."""
        dut = self.dut
        m, k, n = vs.shape
        dut.m_rows.value, dut.k_depth.value, dut.n_cols.value = m, k, n
        dut.accumulate.value = int(vs.carry is not None)
        dut.start.value = 1
        await self.step()  # the rising edge that samples start, half a period ago
        t0 = get_sim_time("ns") - CLOCK_NS / 2
        dut.start.value = 0
        dut.accumulate.value = 0
        timeout = (10 * vs.cycles + 1000) * CLOCK_NS  # generous: a design of your own may be slower
        if not int(dut.done.value):
            await with_timeout(RisingEdge(dut.done), timeout, "ns")
        edges = round((get_sim_time("ns") - t0) / CLOCK_NS)
        await self.step()
        assert int(dut.done.value) == 1 and int(dut.busy.value) == 0
        # a design of your own without a cycle counter: the edges counted here
        return (unsigned_value(dut.cycles) if hasattr(dut, "cycles") else edges), edges

    async def read_outputs(self, vs: VectorSet) -> np.ndarray:
        """Y [M, N] from the output buffer; lanes that hold no element of Y (never written) are skipped."""
        m, _, n = vs.shape
        _, _, acc_fmt = formats(vs.parameters)
        rows, cols = self.params["ROWS"], self.params["COLS"]
        return await read_output_buffer(
            self.dut, buffer_layout(vs.dataflow), (m, n), rows, cols, acc_fmt, self.step
        )


async def write_buffer(
    dut: SimHandleBase, prefix: str, words: list[int], step: Callable[[], Awaitable[None]]
) -> None:
    """Write ``words`` to buffer ``prefix`` (``a``, ``w`` or ``o``) through its host port, one per cycle."""
    we, addr, data = (getattr(dut, f"{prefix}_{s}") for s in ("we", "addr", "wdata"))
    we.value = 1
    for i, word in enumerate(words):
        addr.value, data.value = i, word
        await step()
    we.value = 0


async def read_output_buffer(
    dut: SimHandleBase,
    layout: BufferLayout,
    shape: tuple[int, int],
    rows: int,
    cols: int,
    acc_fmt: IntFormat,
    step: Callable[[], Awaitable[None]],
) -> np.ndarray:
    """Y ``shape`` from the output buffer in ``layout``, one word a cycle through ``o_addr``/``o_rdata``;
    lanes that hold no element of Y (never written) are skipped."""
    used = layout.obuf(np.ones(shape, dtype=np.int64), rows, cols) != 0  # [words, lanes]
    words = []
    for addr in range(used.shape[0]):
        dut.o_addr.value = addr
        await step()
        words.append(word_of_used_lanes(str(dut.o_rdata.value), acc_fmt.bits, used[addr], addr))
    return from_image(layout.obuf, unpack_words(words, cols, acc_fmt), shape, rows, cols)


def word_of_used_lanes(bits: str, lane_bits: int, used: np.ndarray, addr: int) -> int:
    """One obuf word: lanes holding no output (never written, may read X) are 0, X elsewhere fails."""
    word = 0
    for c, wanted in enumerate(used):
        if not wanted:
            continue
        lane = bits[len(bits) - (c + 1) * lane_bits : len(bits) - c * lane_bits]
        assert set(lane) <= {"0", "1"}, f"obuf word {addr}, column {c} reads {lane!r} (never written?)"
        word |= int(lane, 2) << (c * lane_bits)
    return word


def first_mismatch(vs: VectorSet, actual: np.ndarray) -> str:
    """A readable account of where RTL and hwsim first disagree (row-major over Y)."""
    bad = np.argwhere(actual != vs.expected)
    m, n = (int(v) for v in bad[0])
    return (
        f"{vs.name}: {len(bad)} of {actual.size} outputs differ ({vs.dataflow.name}); first Y[m={m}, n={n}] "
        f"({vs.origin(m, n)}): expected {int(vs.expected[m, n])}, actual {int(actual[m, n])}"
    )


async def check_vector_set(
    tb: ArrayTopTB, vs: VectorSet, dump: str | None = None, values_only: bool = False
) -> None:
    """Run one vector set and require hwsim's values, cycles and overflow events (``values_only``: the
    values alone, for a design with another timing or no overflow counter); ``dump``: save Y as .npy."""
    tb.check_fits(vs)
    await tb.load(vs)
    wall, cpu = time.perf_counter(), time.process_time()
    cycles, edges = await tb.run(vs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    actual = await tb.read_outputs(vs)
    if dump:
        name = safe_name(vs.name, "the vector set's manifest.json, field 'name'")  # a file name from data
        np.save(Path(dump) / f"{name}.rtl_y.npy", actual)
        timing = {
            "cycles": cycles,
            "overflow_events": unsigned_value(tb.dut.ovf_count) if hasattr(tb.dut, "ovf_count") else None,
            "run_seconds": wall,
            "run_cpu_seconds": cpu,
            "cycles_per_second": cycles / max(wall, 1e-9),
            "cycles_per_cpu_second": cycles / max(cpu, 1e-9),
        }
        (Path(dump) / f"{name}.timing.json").write_text(json.dumps(timing) + "\n")
    events = unsigned_value(tb.dut.ovf_count) if hasattr(tb.dut, "ovf_count") else -1
    m, k, n = vs.shape
    tb.dut._log.info(
        "%s: M=%d K=%d N=%d, %d cycles (hwsim %d), %d overflow events (hwsim %s), %.3f s, %.0f cycles/s",
        vs.name,
        m,
        k,
        n,
        cycles,
        vs.cycles,
        events,
        vs.overflow_events,
        wall,
        cycles / max(wall, 1e-9),
    )
    if not np.array_equal(actual, vs.expected):
        raise AssertionError(first_mismatch(vs, actual))
    if values_only:
        return
    assert cycles == vs.cycles, f"{vs.name}: cycle counter {cycles}, hwsim {vs.cycles} (edges seen {edges})"
    assert edges == cycles, f"{vs.name}: cycle counter {cycles} but {edges} clock edges from start to done"
    assert events == vs.overflow_events, (
        f"{vs.name}: overflow events expected {vs.overflow_events}, actual {events}"
    )
    assert int(tb.dut.ovf.value) == int(events > 0), f"{vs.name}: sticky flag disagrees with {events} events"


@cocotb.test()
async def array_top_vectors(dut: SimHandleBase) -> None:
    """Every vector set named in the configuration, one after the other on the same DUT."""
    tb = ArrayTopTB(dut)
    await tb.reset()
    cfg = tb_config()
    directories = cfg.get("vectors", [])
    assert directories, "no vector sets given (config key 'vectors')"
    for directory in directories:
        await check_vector_set(tb, read_vectors(directory), cfg.get("dump"), bool(cfg.get("values_only")))


@cocotb.test()
async def array_top_zero_size(dut: SimHandleBase) -> None:
    """A start with M = 0 finishes at once: done, 0 cycles."""
    tb = ArrayTopTB(dut)
    await tb.reset()
    dut.m_rows.value, dut.k_depth.value, dut.n_cols.value, dut.start.value = 0, 3, 3, 1
    await tb.step()
    dut.start.value = 0
    await tb.step()
    assert int(dut.done.value) == 1 and unsigned_value(dut.cycles) == 0
