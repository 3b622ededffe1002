"""Analytic array latency: closed-form cycle counts per layer, native and SCALE-Sim-compatible.

Place in the flow: ``mapping`` gives the GEMM and its folds, this module counts their cycles
without executing anything (microseconds per layer), ``memory`` adds DRAM stalls, ``simulate``
reports them. ``systolic`` executes the same folds register by register and must arrive at the
same counts (tests compare them with ``==``).

Every formula is its dataflow's (``hwsim.dataflows``, one module each; docs/dataflow.md is
normative for ``ws``); this module applies them to a layer and its groups.

Native timing (``timing: native``): per fold, folds never overlap (``R`` rows, ``C`` columns);
:func:`fold_cycles` is the dataflow's per-fold rule, :func:`native_gemm_cycles` the closed form
of its sum over the folds. For ``ws``: preload ``R`` + stream ``M + R + nt - 2``; compute ``M``,
preload ``R``, fill/drain ``R + nt - 2``.

SCALE-Sim-compatible timing (``timing: scalesim``) reproduces SCALE-Sim 3.0.0's COMPUTE_REPORT
"Total Cycles" for a layer without memory stalls: every fold is padded to the full array
(``nt = C``, ``mt = R`` or ``C``), output sizes are ``ceil((H + 2p - kh + s)/s)``, and the layer
total is one less than the sum of its folds (docs/scalesim.md): ``folds * per_fold - 1`` with
the dataflow's ``per_fold`` (``ws``: ``M + 2R + C - 2``).

A ``maxpool`` runs on the vector unit of ``C`` lanes (docs/dataflow.md, "Vector unit"), in both
timing modes: ``ceil(outputs / C)`` passes of ``kh * kw`` cycles each, all compute
(:func:`pool_timing`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.dataflows import Cycles, dataflow
from hwsim.hwconfig import HardwareConfig
from hwsim.mapping import (
    Fold,
    GemmShape,
    LayerShape,
    PoolShape,
    fold_count,
    gemm_shape,
    scalesim_gemm_shape,
)


@dataclass(frozen=True)
class CycleBreakdown:
    """Cycles of the array split into compute, weight/input preload and fill/drain (skew)."""

    compute: int
    preload: int
    fill_drain: int

    @property
    def total(self) -> int:
        return self.compute + self.preload + self.fill_drain

    def __add__(self, other: CycleBreakdown) -> CycleBreakdown:
        return CycleBreakdown(
            self.compute + other.compute, self.preload + other.preload, self.fill_drain + other.fill_drain
        )

    def scaled(self, factor: int) -> CycleBreakdown:
        return CycleBreakdown(self.compute * factor, self.preload * factor, self.fill_drain * factor)


ZERO = CycleBreakdown(0, 0, 0)


@dataclass(frozen=True)
class LayerTiming:
    """Array cycles of one layer (no memory stalls) and what they achieve."""

    cycles: CycleBreakdown
    folds: int
    macs: int
    pes: int

    @property
    def total(self) -> int:
        return self.cycles.total

    @property
    def utilization(self) -> float:
        """Fraction of PE-cycles doing a useful MAC."""
        return self.macs / (self.total * self.pes) if self.total else 0.0


def _breakdown(cycles: Cycles) -> CycleBreakdown:
    return CycleBreakdown(compute=cycles.compute, preload=cycles.preload, fill_drain=cycles.fill_drain)


def fold_cycles(fold: Fold, gemm: GemmShape, hw: HardwareConfig) -> CycleBreakdown:
    """Native cycles of one fold (the per-fold rule the register-level model follows)."""
    return _breakdown(dataflow(hw.array.dataflow).fold_cycles(fold, gemm, hw.array))


def native_gemm_cycles(gemm: GemmShape, hw: HardwareConfig) -> CycleBreakdown:
    """Closed form of the sum of :func:`fold_cycles` over every fold of every group."""
    return _breakdown(dataflow(hw.array.dataflow).native_cycles(gemm, hw.array)).scaled(gemm.groups)


def scalesim_gemm_cycles(gemm: GemmShape, hw: HardwareConfig) -> CycleBreakdown:
    """SCALE-Sim 3.0.0's total cycles for ``gemm`` (already sized with :func:`scalesim_gemm_shape`).

    A grouped GEMM is ``groups`` separate SCALE-Sim layers (its depthwise ``DP`` layers), each
    paying the ``- 1``.
    """
    flow = dataflow(hw.array.dataflow)
    folds = flow.fold_count(gemm, hw.array)
    per_fold = flow.scalesim_fold(gemm, hw.array)
    compute, preload, skew = folds * per_fold.compute, folds * per_fold.preload, folds * per_fold.fill_drain
    # SCALE-Sim's total is the index of the last cycle: one less than the cycles its folds span.
    if skew >= 1:
        per = CycleBreakdown(compute=compute, preload=preload, fill_drain=skew - 1)
    else:
        per = CycleBreakdown(compute=compute - 1, preload=preload, fill_drain=skew)
    return per.scaled(gemm.groups)


def layer_timing(layer: LayerShape, hw: HardwareConfig, batch: int = 1) -> LayerTiming:
    """Array cycles of ``layer`` for ``batch`` images in ``hw.timing`` mode."""
    gemm = gemm_shape(layer, batch)
    if hw.timing == "scalesim":
        sgemm = scalesim_gemm_shape(layer, batch)
        cycles = scalesim_gemm_cycles(sgemm, hw)
        folds = fold_count(sgemm, hw.array)
    else:
        cycles = native_gemm_cycles(gemm, hw)
        folds = fold_count(gemm, hw.array)
    return LayerTiming(cycles=cycles, folds=folds, macs=gemm.macs, pes=hw.array.pes)


def pool_timing(pool: PoolShape, hw: HardwareConfig, batch: int = 1) -> LayerTiming:
    """Vector-unit cycles of a ``maxpool`` for ``batch`` images: ``ceil(outputs / cols) * kh * kw``.

    Each of the ``cols`` lanes holds one output's running maximum (starting at -inf) and compares
    one window position per cycle, padded positions included; a pass of ``cols`` outputs takes
    ``kh * kw`` cycles and the passes do not overlap. ``folds`` counts the passes; no MACs.
    """
    passes = math.ceil(pool.outputs(batch) / hw.array.cols)
    cycles = CycleBreakdown(compute=passes * pool.window, preload=0, fill_drain=0)
    return LayerTiming(cycles=cycles, folds=passes, macs=0, pes=hw.array.pes)


def cycles_to_us(cycles: int | float, hw: HardwareConfig) -> float:
    """Latency in microseconds at ``hw.clock_mhz``."""
    return float(cycles) / hw.clock_mhz
