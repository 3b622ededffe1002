"""The output-stationary dataflow (``os``): a tile of Y accumulates in the PEs while all of K streams through.

Place in the flow: one entry of the ``hwsim.dataflows`` registry; ``mapping`` folds a GEMM with
its facts, ``timing`` counts its cycles with its formulas, ``systolic`` runs it on the
output-stationary machine, ``memory`` costs its buffer traffic.

A fold holds an ``mt x nt`` tile of Y (``mt <= R`` rows, ``nt <= C`` columns) and streams all of
``K``: A enters row ``r`` at cycle ``k + r``, W enters column ``c`` at cycle ``k + c``, PE
``(r, c)`` multiplies at ``k + r + c``; folds run N-fold outer, M-fold inner. Native cycles per
fold: stream ``K + mt + nt - 2``, then drain ``R`` (the accumulators shift down and out of the
bottom row): compute ``K``, fill/drain ``mt + nt - 2 + R``, no preload. SCALE-Sim 3.0.0 pads
every fold to the full array and has no separate drain: ``K + R + C - 2`` per fold.

An accumulating GEMM ``Y = C + A * W`` (``hwsim.systolic.run_gemm_cycles(..., carry=C)``) first
loads each fold's tile of ``C`` into the accumulators through the same shift-down path, from the
top (load cycle ``i`` brings C's row ``R-1-i`` of the tile, 0 past ``mt`` and ``nt``): ``R`` more
cycles per fold, counted as preload. The formulas here count a GEMM without ``C`` (accumulators
cleared at no cost), as a layer of a network runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hwsim.dataflows.definition import Cycles, Dataflow, Traffic

if TYPE_CHECKING:
    from hwsim.hwconfig import ArrayConfig
    from hwsim.mapping import Fold, GemmShape


def fold_cycles(fold: Fold, gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """Native cycles of one fold: ``K`` compute, no preload, ``mt + nt - 2 + R`` fill/drain."""
    return Cycles(compute=gemm.k, preload=0, fill_drain=fold.mt + fold.nt - 2 + array.rows)


def native_cycles(gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """The sum of :func:`fold_cycles` over one group's folds, in closed form."""
    r, c = array.rows, array.cols
    nm, nn = math.ceil(gemm.m / r), math.ceil(gemm.n / c)
    return Cycles(
        compute=nm * nn * gemm.k, preload=0, fill_drain=nm * nn * (r - 2) + nn * gemm.m + nm * gemm.n
    )


def scalesim_fold(gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """SCALE-Sim 3.0.0's cycles per (full-array) fold: ``K`` streamed, no preload, ``R + C - 2`` skew."""
    r, c = array.rows, array.cols
    return Cycles(compute=gemm.k, preload=0, fill_drain=r + c - 2)


def buffer_traffic(gemm: GemmShape, array: ArrayConfig) -> Traffic:
    """A is re-read once per N-fold, W once per M-fold, every output written once."""
    r, c = array.rows, array.cols
    m, k, n = gemm.m, gemm.k, gemm.n
    return Traffic(a_reads=m * k * math.ceil(n / c), w_reads=k * n * math.ceil(m / r), psum_writes=m * n)


def first_weights(gemm: GemmShape, array: ArrayConfig) -> int:
    """Weight codes on chip before the array starts: an ``R x C`` tile's worth (``min(K, R) x min(N, C)``)."""
    return min(gemm.k, array.rows) * min(gemm.n, array.cols)


def carry_load(gemm: GemmShape, array: ArrayConfig) -> int:
    """An accumulating GEMM loads each fold's C tile into the accumulators first: ``R`` cycles per fold."""
    return array.rows * math.ceil(gemm.m / array.rows) * math.ceil(gemm.n / array.cols)


DATAFLOW = Dataflow(
    name="os",
    title="output-stationary",
    rows_dim="m",
    cols_dim="n",
    outer_dim="n",
    stationary="Y",
    fold_cycles=fold_cycles,
    native_cycles=native_cycles,
    scalesim_fold=scalesim_fold,
    buffer_traffic=buffer_traffic,
    first_weights=first_weights,
    carry_load=carry_load,
    rtl=True,
)
