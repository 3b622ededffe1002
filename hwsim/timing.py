"""Analytic array latency: closed-form cycle counts per layer, native (ws/os/is) and SCALE-Sim-compatible.

Place in the flow: ``mapping`` gives the GEMM and its folds, this module counts their cycles
without executing anything (microseconds per layer), ``memory`` adds DRAM stalls, ``simulate``
reports them. ``systolic`` executes the same folds register by register and must arrive at the
same counts (tests compare them with ``==``).

Native timing (``timing: native``), per fold, folds never overlap (``R`` rows, ``C`` columns):

* ``ws`` (docs/dataflow.md, normative): preload ``R`` + stream ``M + R + nt - 2``;
  compute ``M``, preload ``R``, fill/drain ``R + nt - 2``.
* ``is``: the same machine with A and W swapped (A's tile is stationary, W's columns stream):
  preload ``R`` + stream ``N + R + mt - 2``; compute ``N``, preload ``R``, fill/drain ``R + mt - 2``.
* ``os``: stream ``K + mt + nt - 2`` (A enters row ``r`` at cycle ``k + r``, W enters column ``c``
  at cycle ``k + c``, PE ``(r, c)`` multiplies at ``k + r + c``), then drain ``R`` (the
  accumulators shift down and out of the bottom row); compute ``K``, fill/drain ``mt + nt - 2 + R``.

SCALE-Sim-compatible timing (``timing: scalesim``) reproduces SCALE-Sim 3.0.0's COMPUTE_REPORT
"Total Cycles" for a layer without memory stalls: every fold is padded to the full array
(``nt = C``, ``mt = R`` or ``C``), output sizes are ``ceil((H + 2p - kh + s)/s)``, and the layer
total is one less than the sum of its folds (docs/scalesim.md):

* ``ws``: ``ceil(K/R) * ceil(N/C) * (M + 2R + C - 2) - 1``
* ``os``: ``ceil(M/R) * ceil(N/C) * (K + R + C - 2) - 1``
* ``is``: ``ceil(K/R) * ceil(M/C) * (N + 2R + C - 2) - 1``

A ``maxpool`` runs on the vector unit of ``C`` lanes (docs/dataflow.md, "Vector unit"), in both
timing modes: ``ceil(outputs / C)`` passes of ``kh * kw`` cycles each, all compute
(:func:`pool_timing`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def fold_cycles(fold: Fold, gemm: GemmShape, hw: HardwareConfig) -> CycleBreakdown:
    """Native cycles of one fold (the per-fold rule the register-level model follows)."""
    r = hw.array.rows
    df = hw.array.dataflow
    if df == "ws":
        return CycleBreakdown(compute=gemm.m, preload=r, fill_drain=r + fold.nt - 2)
    if df == "is":
        return CycleBreakdown(compute=gemm.n, preload=r, fill_drain=r + fold.mt - 2)
    return CycleBreakdown(compute=gemm.k, preload=0, fill_drain=fold.mt + fold.nt - 2 + r)


def native_gemm_cycles(gemm: GemmShape, hw: HardwareConfig) -> CycleBreakdown:
    """Closed form of the sum of :func:`fold_cycles` over every fold of every group."""
    r, c = hw.array.rows, hw.array.cols
    m, k, n = gemm.m, gemm.k, gemm.n
    df = hw.array.dataflow
    if df == "ws":
        nk, nn = math.ceil(k / r), math.ceil(n / c)
        per = CycleBreakdown(compute=nk * nn * m, preload=nk * nn * r, fill_drain=nk * (nn * (r - 2) + n))
    elif df == "is":
        nk, nm = math.ceil(k / r), math.ceil(m / c)
        per = CycleBreakdown(compute=nk * nm * n, preload=nk * nm * r, fill_drain=nk * (nm * (r - 2) + m))
    else:
        nm, nn = math.ceil(m / r), math.ceil(n / c)
        per = CycleBreakdown(compute=nm * nn * k, preload=0, fill_drain=nm * nn * (r - 2) + nn * m + nm * n)
    return per.scaled(gemm.groups)


def scalesim_gemm_cycles(gemm: GemmShape, hw: HardwareConfig) -> CycleBreakdown:
    """SCALE-Sim 3.0.0's total cycles for ``gemm`` (already sized with :func:`scalesim_gemm_shape`).

    A grouped GEMM is ``groups`` separate SCALE-Sim layers (its depthwise ``DP`` layers), each
    paying the ``- 1``.
    """
    r, c = hw.array.rows, hw.array.cols
    m, k, n = gemm.m, gemm.k, gemm.n
    df = hw.array.dataflow
    if df == "ws":
        folds = math.ceil(k / r) * math.ceil(n / c)
        compute, preload = folds * m, folds * r
    elif df == "is":
        folds = math.ceil(k / r) * math.ceil(m / c)
        compute, preload = folds * n, folds * r
    else:
        folds = math.ceil(m / r) * math.ceil(n / c)
        compute, preload = folds * k, 0
    skew = folds * (r + c - 2)
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
