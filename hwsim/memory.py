"""On-chip buffers and DRAM: tiling forced by buffer capacity, traffic, double-buffered stalls, bound.

Place in the flow: ``timing`` gives a layer's array cycles; this module adds what memory costs
and says whether the layer is compute- or memory-bound. ``simulate`` reports it per layer.

The model (one layer at a time, all sizes in bytes of packed codes):

* Operands: the input feature map ``C_in*H*W*batch`` codes of ``a_bits``; the weights
  ``K*N*groups`` codes of ``w_bits``; the partial sums ``M*N*groups`` at ``acc_bits`` (held in the
  output buffer across K-folds); the output written back to DRAM, ``M*N*groups`` codes of
  ``out_bits`` (the requantized activation).
* Double buffering: each buffer works on one half while the other half fills (or drains), so a
  working set must fit half a buffer.
* Tiling: when the input map or the partial sums do not fit, the layer runs in ``m_tiles``
  passes over output rows (halo rows of a convolution are not counted); weights that do not fit
  are fetched again for every pass. When even one output row's partial sums do not fit, the
  output channels are split into ``n_tiles`` and the input is fetched once per split.
* Time: DRAM moves ``dram_bytes_per_cycle``. The first pass's input tile and the first fold's
  weights must arrive before the array starts, and the last pass's output leaves after it ends
  (prologue and epilogue, exposed); every other transfer overlaps with the array's work. The
  layer takes ``prologue + max(array cycles, overlapped transfers) + epilogue`` cycles; the
  difference from the array cycles (``hwsim.timing``) is its stall. Memory-bound when the
  overlapped transfers outlast the array's work.
* Buffer (SRAM) traffic: what the array reads from and writes to its buffers, per dataflow
  (streamed operands are re-read once per fold of the other dimension; each
  ``hwsim.dataflows`` module gives its counts, and the weights its first fold needs), also per
  buffer (ifmap: the input operand; weight: the weights; ofmap: the partial sums), which
  ``hwsim.energy`` prices at each buffer's capacity.
* A ``maxpool`` (the vector unit, :func:`pool_memory`): no weights and no partial sums; the input
  map is read from DRAM once and the output map (same code width) written once; passes over
  output rows (``m_tiles``) when either map does not fit half its buffer; the lanes read every
  window position from the input buffer (``kh * kw`` per output) and write each output once.
  Prologue, epilogue, overlap and bound as for a MAC layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.dataflows import dataflow
from hwsim.errors import UserError
from hwsim.hwconfig import HardwareConfig
from hwsim.mapping import GemmShape, LayerShape, PoolShape, gemm_shape


def _bytes(elements: int, bits: int) -> int:
    return math.ceil(elements * bits / 8)


@dataclass(frozen=True)
class LayerMemory:
    """Memory behaviour of one layer."""

    ifmap_bytes: int
    weight_bytes: int
    psum_bytes: int
    ofmap_bytes: int
    m_tiles: int
    n_tiles: int
    weight_fetches: int
    dram_read_bytes: int
    dram_write_bytes: int
    buffer_read_bytes: int
    buffer_write_bytes: int
    ifmap_buffer_bytes: int  # of buffer_read_bytes + buffer_write_bytes, those of each buffer
    weight_buffer_bytes: int
    ofmap_buffer_bytes: int
    dram_cycles: int
    prologue_cycles: int
    epilogue_cycles: int
    array_cycles: int
    total_cycles: int
    bound: str

    @property
    def dram_bytes(self) -> int:
        return self.dram_read_bytes + self.dram_write_bytes

    @property
    def buffer_bytes(self) -> int:
        return self.buffer_read_bytes + self.buffer_write_bytes

    @property
    def stall_cycles(self) -> int:
        return self.total_cycles - self.array_cycles


def _buffer_traffic(
    gemm: GemmShape, hw: HardwareConfig, a_bits: int, w_bits: int
) -> tuple[int, int, int, int, int]:
    """Bytes the array reads from / writes to its buffers, then those of the ifmap, weight, ofmap buffer.

    Reads: the operands and the partial sums carried across K-folds; writes: the partial sums.
    """
    m, n, g = gemm.m, gemm.n, gemm.groups
    acc = hw.pe.acc_bits
    a_reads, w_reads, psum_writes = dataflow(hw.array.dataflow).buffer_traffic(gemm, hw.array)
    psum_reads = psum_writes - m * n  # every K-fold but the first reads back the carried sums
    ifmap, weight = g * _bytes(a_reads, a_bits), g * _bytes(w_reads, w_bits)
    reads = ifmap + weight + g * _bytes(psum_reads, acc)
    writes = g * _bytes(psum_writes, acc)
    return reads, writes, ifmap, weight, reads + writes - ifmap - weight


def layer_memory(
    layer: LayerShape,
    hw: HardwareConfig,
    array_cycles: int,
    a_bits: int,
    w_bits: int,
    out_bits: int,
    batch: int = 1,
) -> LayerMemory:
    """Traffic, tiling, stalls and bound of ``layer`` whose array work takes ``array_cycles``."""
    for what, bits in (("a_bits", a_bits), ("w_bits", w_bits), ("out_bits", out_bits)):
        if not 1 <= bits <= 64:
            raise UserError(f"layer '{layer.name}': {what}={bits} outside 1..64")
    gemm = gemm_shape(layer, batch)
    m, n_all = gemm.m, gemm.n * gemm.groups
    half = {
        name: kb * 1024 / 2
        for name, kb in (
            ("ifmap", hw.buffers.ifmap_kb),
            ("weight", hw.buffers.weight_kb),
            ("ofmap", hw.buffers.ofmap_kb),
        )
    }
    ifmap = _bytes(layer.c_in * layer.h * layer.w * batch, a_bits)
    weights = _bytes(gemm.k * n_all, w_bits)
    psums = _bytes(m * n_all, hw.pe.acc_bits)
    ofmap = _bytes(m * n_all, out_bits)

    row_psums = _bytes(n_all, hw.pe.acc_bits)
    n_tiles = max(1, math.ceil(row_psums / half["ofmap"]))
    m_tiles = max(1, math.ceil(ifmap / half["ifmap"]), math.ceil(psums / n_tiles / half["ofmap"]))
    m_tiles = min(m_tiles, m)
    weight_fetches = 1 if weights <= half["weight"] else m_tiles
    reads = ifmap * n_tiles + weights * weight_fetches
    writes = ofmap
    bw = hw.dram_bytes_per_cycle
    dram_cycles = math.ceil((reads + writes) / bw)

    first_fold_weights = _bytes(dataflow(hw.array.dataflow).first_weights(gemm, hw.array), w_bits)
    prologue = math.ceil((ifmap / m_tiles + min(weights, first_fold_weights)) / bw)
    epilogue = math.ceil(ofmap / (m_tiles * n_tiles) / bw)
    overlapped = max(0, dram_cycles - prologue - epilogue)
    total = prologue + max(array_cycles, overlapped) + epilogue
    buf_reads, buf_writes, buf_ifmap, buf_weight, buf_ofmap = _buffer_traffic(gemm, hw, a_bits, w_bits)
    return LayerMemory(
        ifmap_bytes=ifmap,
        weight_bytes=weights,
        psum_bytes=psums,
        ofmap_bytes=ofmap,
        m_tiles=m_tiles,
        n_tiles=n_tiles,
        weight_fetches=weight_fetches,
        dram_read_bytes=reads,
        dram_write_bytes=writes,
        buffer_read_bytes=buf_reads,
        buffer_write_bytes=buf_writes,
        ifmap_buffer_bytes=buf_ifmap,
        weight_buffer_bytes=buf_weight,
        ofmap_buffer_bytes=buf_ofmap,
        dram_cycles=dram_cycles,
        prologue_cycles=prologue,
        epilogue_cycles=epilogue,
        array_cycles=array_cycles,
        total_cycles=total,
        bound="memory" if overlapped > array_cycles else "compute",
    )


def pool_memory(
    pool: PoolShape, hw: HardwareConfig, vector_cycles: int, a_bits: int, batch: int = 1
) -> LayerMemory:
    """Traffic, tiling, stalls and bound of a ``maxpool`` whose vector-unit work takes ``vector_cycles``."""
    if not 1 <= a_bits <= 64:
        raise UserError(f"layer '{pool.name}': a_bits={a_bits} outside 1..64")
    ifmap = _bytes(pool.inputs(batch), a_bits)
    ofmap = _bytes(pool.outputs(batch), a_bits)
    m_tiles = max(
        1,
        math.ceil(ifmap / (hw.buffers.ifmap_kb * 1024 / 2)),
        math.ceil(ofmap / (hw.buffers.ofmap_kb * 1024 / 2)),
    )
    m_tiles = min(m_tiles, pool.h_out * batch)
    bw = hw.dram_bytes_per_cycle
    dram_cycles = math.ceil((ifmap + ofmap) / bw)
    prologue = math.ceil(ifmap / m_tiles / bw)
    epilogue = math.ceil(ofmap / m_tiles / bw)
    overlapped = max(0, dram_cycles - prologue - epilogue)
    total = prologue + max(vector_cycles, overlapped) + epilogue
    return LayerMemory(
        ifmap_bytes=ifmap,
        weight_bytes=0,
        psum_bytes=0,
        ofmap_bytes=ofmap,
        m_tiles=m_tiles,
        n_tiles=1,
        weight_fetches=0,
        dram_read_bytes=ifmap,
        dram_write_bytes=ofmap,
        buffer_read_bytes=_bytes(pool.outputs(batch) * pool.window, a_bits),
        buffer_write_bytes=ofmap,
        ifmap_buffer_bytes=_bytes(pool.outputs(batch) * pool.window, a_bits),
        weight_buffer_bytes=0,
        ofmap_buffer_bytes=ofmap,
        dram_cycles=dram_cycles,
        prologue_cycles=prologue,
        epilogue_cycles=epilogue,
        array_cycles=vector_cycles,
        total_cycles=total,
        bound="memory" if overlapped > vector_cycles else "compute",
    )
