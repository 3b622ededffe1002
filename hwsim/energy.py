"""Energy per layer and per inference: first-order estimates from the operation and access counts.

Place in the flow: ``hwsim.simulate`` prices every layer's MACs, buffer traffic and DRAM traffic
(the counts of ``hwsim.memory``) and its latency (``hwsim.timing`` + memory stalls) with the
hardware description's technology table (``hwsim.hwconfig.EnergyConfig``, the YAML ``energy:``
section; defaults: Horowitz, ISSCC 2014, 45 nm). These are first-order estimates (docs/energy.md):
no wires, clock tree, control or data-dependent switching; use them to compare layers, dataflows
and precisions, not as a sign-off figure. With ``e = hw.energy`` (pJ, mW), per layer:

* compute: ``macs x (e.mult_8b_pj x w_bits x a_bits / 64 + e.add_32b_pj x acc_bits / 32)``: a
  multiplier's energy grows with the product of its operand widths, an adder's with its width;
  a maxpool's comparisons (``window - 1`` per output) each cost an add at ``a_bits``.
* buffers: each buffer's bytes (``hwsim.memory``: the array's reads and writes) x
  ``e.sram_64b_pj x (capacity_kb / e.sram_ref_kb) ** e.sram_exponent / 8`` (a 64-bit access
  costs more in a bigger SRAM; Horowitz: about the square root). Fills from and drains to DRAM
  are in the DRAM term only.
* DRAM: ``dram_bytes x e.dram_64b_pj / 8``.
* static: ``e.static_mw x latency_us`` (mW x us = nJ): leakage over the layer's whole time,
  stalls included.
* total ``energy_nj`` = the four; energy-delay product ``edp_nj_us = energy_nj x latency_us``.

Everything is returned in nJ; per inference is the sum over the layers (EDP: the total energy
times the total latency).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.hwconfig import EnergyConfig, HardwareConfig

PJ_PER_NJ = 1000.0


def mac_pj(e: EnergyConfig, w_bits: int, a_bits: int, acc_bits: int) -> float:
    """One multiply-accumulate: a ``w_bits x a_bits`` multiply and an ``acc_bits`` add (pJ)."""
    return e.mult_8b_pj * w_bits * a_bits / 64 + add_pj(e, acc_bits)


def add_pj(e: EnergyConfig, bits: int) -> float:
    """One ``bits``-wide integer add (or comparison), linear in the width (pJ)."""
    return e.add_32b_pj * bits / 32


def sram_pj_per_byte(e: EnergyConfig, capacity_kb: float) -> float:
    """One byte read from or written to an SRAM of ``capacity_kb`` KiB (pJ)."""
    return e.sram_64b_pj * (capacity_kb / e.sram_ref_kb) ** e.sram_exponent / 8


@dataclass(frozen=True)
class LayerEnergy:
    """One layer's energy per inference (nJ) and its energy-delay product (nJ x us)."""

    compute_nj: float
    buffer_nj: float
    dram_nj: float
    static_nj: float
    latency_us: float

    @property
    def total_nj(self) -> float:
        return self.compute_nj + self.buffer_nj + self.dram_nj + self.static_nj

    @property
    def edp_nj_us(self) -> float:
        return self.total_nj * self.latency_us


def layer_energy(
    hw: HardwareConfig,
    *,
    compute_pj: float,
    buffer_bytes: tuple[int, int, int],
    dram_bytes: int,
    latency_us: float,
) -> LayerEnergy:
    """Price a layer: ``compute_pj`` (:func:`mac_pj` x MACs, or the comparisons), ``buffer_bytes``
    (ifmap, weight, ofmap buffer), ``dram_bytes`` and ``latency_us`` with ``hw.energy``."""
    e = hw.energy
    caps = (hw.buffers.ifmap_kb, hw.buffers.weight_kb, hw.buffers.ofmap_kb)
    buffer_pj = sum(n * sram_pj_per_byte(e, kb) for n, kb in zip(buffer_bytes, caps, strict=True))
    return LayerEnergy(
        compute_nj=compute_pj / PJ_PER_NJ,
        buffer_nj=buffer_pj / PJ_PER_NJ,
        dram_nj=dram_bytes * e.dram_64b_pj / 8 / PJ_PER_NJ,
        static_nj=e.static_mw * latency_us,
        latency_us=latency_us,
    )
