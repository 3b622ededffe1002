"""The input-stationary dataflow (``is``): a tile of A stays in the PEs while all of W streams through.

Place in the flow: one entry of the ``hwsim.dataflows`` registry; ``mapping`` folds a GEMM with
its facts, ``timing`` counts its cycles with its formulas, ``systolic`` runs it on the
stationary-tile machine with A and W swapped (``Y^T = W^T A^T``), ``memory`` costs its buffer
traffic.

A fold holds a ``kt x mt`` tile of A transposed (``kt <= R`` rows, ``mt <= C`` columns) and
streams all ``N`` columns of W; folds run M-fold outer, K-fold inner. Native cycles per fold:
preload ``R``, then stream ``N + R + mt - 2`` (compute ``N``, fill/drain ``R + mt - 2``).
SCALE-Sim 3.0.0 pads every fold to the full array: ``N + 2R + C - 2`` per fold.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hwsim.dataflows.definition import Cycles, Dataflow, Traffic

if TYPE_CHECKING:
    from hwsim.hwconfig import ArrayConfig
    from hwsim.mapping import Fold, GemmShape


def fold_cycles(fold: Fold, gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """Native cycles of one fold: ``N`` compute, ``R`` preload, ``R + mt - 2`` fill/drain."""
    r = array.rows
    return Cycles(compute=gemm.n, preload=r, fill_drain=r + fold.mt - 2)


def native_cycles(gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """The sum of :func:`fold_cycles` over one group's folds, in closed form."""
    r, c = array.rows, array.cols
    nk, nm = math.ceil(gemm.k / r), math.ceil(gemm.m / c)
    return Cycles(compute=nk * nm * gemm.n, preload=nk * nm * r, fill_drain=nk * (nm * (r - 2) + gemm.m))


def scalesim_fold(gemm: GemmShape, array: ArrayConfig) -> Cycles:
    """SCALE-Sim 3.0.0's cycles per (full-array) fold: ``N`` streamed, ``R`` preload, ``R + C - 2`` skew."""
    r, c = array.rows, array.cols
    return Cycles(compute=gemm.n, preload=r, fill_drain=r + c - 2)


def buffer_traffic(gemm: GemmShape, array: ArrayConfig) -> Traffic:
    """A is read once, W re-read once per M-fold, partial sums written once per K-fold."""
    r, c = array.rows, array.cols
    m, k, n = gemm.m, gemm.k, gemm.n
    return Traffic(a_reads=m * k, w_reads=k * n * math.ceil(m / c), psum_writes=m * n * math.ceil(k / r))


def first_weights(gemm: GemmShape, array: ArrayConfig) -> int:
    """The weights the first fold streams (``kt`` rows of all ``N`` columns), needed before the start."""
    return min(gemm.k, array.rows) * gemm.n


DATAFLOW = Dataflow(
    name="is",
    title="input-stationary",
    rows_dim="k",
    cols_dim="m",
    outer_dim="m",
    stationary="A",
    fold_cycles=fold_cycles,
    native_cycles=native_cycles,
    scalesim_fold=scalesim_fold,
    buffer_traffic=buffer_traffic,
    first_weights=first_weights,
    rtl=True,
)
