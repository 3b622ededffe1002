"""The weight-stationary dataflow (``ws``): a tile of W stays in the PEs while all of A streams through.

Place in the flow: one entry of the ``hwsim.dataflows`` registry; ``mapping`` folds a GEMM with
its facts, ``timing`` counts its cycles with its formulas, ``systolic`` runs it on the
stationary-tile machine, ``memory`` costs its buffer traffic. docs/dataflow.md is normative
for it, and it is the dataflow the RTL (rtl_models/) implements.

A fold holds a ``kt x nt`` tile of W (``kt <= R`` rows, ``nt <= C`` columns) and streams all
``M`` rows of A; folds run N-fold outer, K-fold inner. Native cycles per fold: preload ``R``,
then stream ``M + R + nt - 2`` (compute ``M``, fill/drain ``R + nt - 2``). SCALE-Sim 3.0.0
pads every fold to the full array: ``M + 2R + C - 2`` per fold.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hwsim.dataflows.definition import Cycles, Dataflow, Traffic

if TYPE_CHECKING:
    from hwsim.hwconfig import ArrayConfig
    from hwsim.mapping import Fold, GemmShape


def fold_cycles(fold: Fold, gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """Native cycles of one fold: ``M`` compute, ``R`` preload, ``R + nt - 2`` fill/drain."""
    r = array.rows
    return Cycles(compute=gemm.m, preload=r, fill_drain=r + fold.nt - 2)


def native_cycles(gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """The sum of :func:`fold_cycles` over one group's folds, in closed form."""
    r, c = array.rows, array.cols
    nk, nn = math.ceil(gemm.k / r), math.ceil(gemm.n / c)
    return Cycles(compute=nk * nn * gemm.m, preload=nk * nn * r, fill_drain=nk * (nn * (r - 2) + gemm.n))


def scalesim_fold(gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """SCALE-Sim 3.0.0's cycles per (full-array) fold: ``M`` streamed, ``R`` preload, ``R + C - 2`` skew."""
    r, c = array.rows, array.cols
    return Cycles(compute=gemm.m, preload=r, fill_drain=r + c - 2)


def buffer_traffic(gemm: GemmShape, array: ArrayConfig) -> Traffic:
    """A is re-read once per N-fold, W read once, partial sums written once per K-fold."""
    r, c = array.rows, array.cols
    m, k, n = gemm.m, gemm.k, gemm.n
    return Traffic(a_reads=m * k * math.ceil(n / c), w_reads=k * n, psum_writes=m * n * math.ceil(k / r))


def first_weights(gemm: GemmShape, array: ArrayConfig) -> int:
    """The first fold's W tile (``kt x nt``), which must be on chip before the array starts."""
    return min(gemm.k, array.rows) * min(gemm.n, array.cols)


DATAFLOW = Dataflow(
    name="ws",
    title="weight-stationary",
    rows_dim="k",
    cols_dim="n",
    outer_dim="n",
    stationary="W",
    fold_cycles=fold_cycles,
    native_cycles=native_cycles,
    scalesim_fold=scalesim_fold,
    buffer_traffic=buffer_traffic,
    first_weights=first_weights,
    rtl=True,
)
