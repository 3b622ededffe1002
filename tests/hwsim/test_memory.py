"""hwsim.memory: buffer-driven tiling, DRAM traffic, double-buffered stalls and the bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.dataflows import DATAFLOWS, Traffic, dataflow
from hwsim.errors import UserError
from hwsim.hwconfig import ArrayConfig, BufferConfig, HardwareConfig
from hwsim.mapping import GemmShape, LayerShape, fold_plan
from hwsim.memory import layer_memory

CONV = LayerShape("l", "conv2d", c_in=16, h=32, w=32, c_out=16, kh=3, kw=3, padding=(1, 1))


def test_everything_fits_one_pass() -> None:
    hw = HardwareConfig()  # 64 KiB buffers, 16 B/cycle
    mem = layer_memory(CONV, hw, array_cycles=10_000, a_bits=4, w_bits=4, out_bits=4)
    # ifmap 16*32*32 codes of 4 bits = 8 KiB; weights 144*16 of 4 bits = 1152 B; outputs 8 KiB
    assert (mem.ifmap_bytes, mem.weight_bytes, mem.ofmap_bytes) == (8192, 1152, 8192)
    assert mem.psum_bytes == 16 * 1024 * 3  # 24-bit partial sums: 48 KiB > half the ofmap buffer
    assert mem.m_tiles == 2 and mem.weight_fetches == 1
    assert mem.dram_read_bytes == 8192 + 1152 and mem.dram_write_bytes == 8192
    assert mem.dram_cycles == math.ceil((8192 + 1152 + 8192) / 16)
    # prologue: the first pass's input (8192/2) and the first fold's weights (16x16 of 4 bits = 128 B)
    assert mem.prologue_cycles == math.ceil((4096 + 128) / 16)
    assert mem.epilogue_cycles == math.ceil(8192 / 2 / 16)
    assert mem.total_cycles == mem.prologue_cycles + 10_000 + mem.epilogue_cycles
    assert mem.stall_cycles == mem.prologue_cycles + mem.epilogue_cycles
    assert mem.bound == "compute"


def test_small_buffers_force_tiling_and_weight_refetch() -> None:
    hw = HardwareConfig(buffers=BufferConfig(ifmap_kb=2, weight_kb=1, ofmap_kb=4))
    mem = layer_memory(CONV, hw, array_cycles=10_000, a_bits=8, w_bits=8, out_bits=8)
    # ifmap 16 KiB over a 1 KiB half: 16 passes; psums 48 KiB over a 2 KiB half: 24 passes
    assert mem.m_tiles == 24
    assert mem.weight_bytes == 2304 > 512 and mem.weight_fetches == 24
    assert mem.dram_read_bytes == 16384 + 24 * 2304


def test_memory_bound_when_dram_is_slow() -> None:
    hw = HardwareConfig(dram_bytes_per_cycle=0.5)
    mem = layer_memory(CONV, hw, array_cycles=1_000, a_bits=8, w_bits=8, out_bits=8)
    assert mem.bound == "memory"
    overlapped = mem.dram_cycles - mem.prologue_cycles - mem.epilogue_cycles
    assert mem.total_cycles == mem.prologue_cycles + overlapped + mem.epilogue_cycles
    assert mem.stall_cycles == mem.total_cycles - 1_000 > 0


@pytest.mark.parametrize("dataflow", list(DATAFLOWS))
def test_buffer_traffic_counts_operand_rereads(dataflow: str) -> None:
    hw = HardwareConfig().with_overrides(dataflow=dataflow, acc_bits=32)
    mem = layer_memory(CONV, hw, array_cycles=1, a_bits=8, w_bits=8, out_bits=8)
    m, k, n = 1024, 144, 16
    expected_reads = {
        "ws": m * k * 1 + k * n + m * n * 4 * (9 - 1),
        "is": m * k + k * n * 64 + m * n * 4 * (9 - 1),
        "os": m * k * 1 + k * n * 64,
    }
    expected_writes = {"ws": m * n * 4 * 9, "is": m * n * 4 * 9, "os": m * n * 4}
    assert dataflow in expected_reads, f"no traffic counted by hand for dataflow {dataflow!r}: add it here"
    assert (mem.buffer_read_bytes, mem.buffer_write_bytes) == (
        expected_reads[dataflow],
        expected_writes[dataflow],
    )


@given(
    m=st.integers(1, 40),
    k=st.integers(1, 40),
    n=st.integers(1, 40),
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    name=st.sampled_from(list(DATAFLOWS)),
)
def test_buffer_traffic_is_what_the_folds_touch(
    m: int, k: int, n: int, rows: int, cols: int, name: str
) -> None:
    # each fold reads its A block [mt, kt] and W block [kt, nt] once and writes its Y block [mt, nt]
    array = ArrayConfig(rows, cols, name)
    gemm = GemmShape(m, k, n)
    folds = fold_plan(gemm, array)
    walked = Traffic(
        a_reads=sum(f.mt * f.kt for f in folds),
        w_reads=sum(f.kt * f.nt for f in folds),
        psum_writes=sum(f.mt * f.nt for f in folds),
    )
    assert dataflow(name).buffer_traffic(gemm, array) == walked


def test_bad_widths() -> None:
    with pytest.raises(UserError, match="a_bits=0"):
        layer_memory(CONV, HardwareConfig(), 1, a_bits=0, w_bits=8, out_bits=8)
