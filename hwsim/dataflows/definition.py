"""What a dataflow is: the facts and formulas one module per dataflow gives the array model.

Place in the flow: each module of ``hwsim.dataflows`` (``weight_stationary``, ...) builds one
:class:`Dataflow`; the registry (``hwsim.dataflows``) holds them by name; ``mapping``,
``timing``, ``systolic`` and ``memory`` read them instead of branching on the name. This
module imports nothing of the array model at run time (``hwconfig`` imports the registry, and
``mapping``/``timing`` import ``hwconfig``), so the formulas return plain integers
(:class:`Cycles`, :class:`Traffic`) that ``timing`` and ``memory`` turn into their own types.

A GEMM ``Y[M, N] = A[M, K] * W[K, N]`` has three dimensions ``m``, ``k``, ``n``. A dataflow tiles
two of them over the array (``rows_dim`` over the ``R`` rows, ``cols_dim`` over the ``C``
columns) and streams the third whole through every fold (``streamed_dim``); the operand whose
dimensions are the two tiled ones stays in the PEs (``stationary``: ``W``, ``A`` or ``Y``). Its
folds run ``outer_dim``-fold outer, the other tiled dimension inner, both ascending.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from hwsim.hwconfig import ArrayConfig
    from hwsim.mapping import Fold, GemmShape

GEMM_DIMS = ("m", "k", "n")
OPERAND_DIMS = {"A": frozenset("mk"), "W": frozenset("kn"), "Y": frozenset("mn")}


class Cycles(NamedTuple):
    """Array cycles split as ``hwsim.timing.CycleBreakdown`` splits them."""

    compute: int
    preload: int
    fill_drain: int


class Traffic(NamedTuple):
    """Codes the array moves through its buffers for one group's GEMM (elements, not bytes)."""

    a_reads: int  # activation codes read from the input buffer
    w_reads: int  # weight codes read from the weight buffer
    psum_writes: int  # partial sums written to the output buffer (one per output per K-fold)


def no_carry_load(gemm: GemmShape, array: ArrayConfig) -> int:
    """Cycles spent loading an initial C of ``Y = C + A * W``: none (it enters with the first K-fold)."""
    return 0


@dataclass(frozen=True)
class Dataflow:
    """One dataflow: how its folds tile the GEMM and what they cost, for every model of the array.

    The functions take the GEMM of one group and the array; they are the only place their
    formula is written (docs/dataflow.md and docs/scalesim.md give them in prose).
    """

    name: str  # the hardware YAML's ``array.dataflow``, e.g. ``ws``
    title: str  # e.g. ``weight-stationary``
    rows_dim: str  # the GEMM dimension tiled over the array's rows
    cols_dim: str  # the GEMM dimension tiled over the array's columns
    outer_dim: str  # the tiled dimension whose folds form the outer loop
    stationary: str  # the operand held in the PEs during a fold: ``A``, ``W`` or ``Y``
    fold_cycles: Callable[[Fold, GemmShape, ArrayConfig], Cycles]  # native cycles of one fold
    native_cycles: Callable[[GemmShape, ArrayConfig], Cycles]  # closed form of their sum
    scalesim_fold: Callable[[GemmShape, ArrayConfig], Cycles]  # SCALE-Sim 3.0.0's cycles per fold
    buffer_traffic: Callable[[GemmShape, ArrayConfig], Traffic]  # buffer reads/writes of the folds
    first_weights: Callable[[GemmShape, ArrayConfig], int]  # weight codes needed before the start
    # cycles an accumulating GEMM (Y = C + A * W, hwsim.systolic.run_gemm_cycles(carry=C)) adds
    carry_load: Callable[[GemmShape, ArrayConfig], int] = no_carry_load
    rtl: bool = False  # rtl_models/ implements this array (hwconfig.verilog_parameters)

    def __post_init__(self) -> None:
        # A malformed definition is a bug in its module, not bad input: ValueError, not UserError.
        where = f"dataflow {self.name!r}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"dataflow name {self.name!r}: expected a short identifier such as 'ws'")
        for attr in ("rows_dim", "cols_dim", "outer_dim"):
            if getattr(self, attr) not in GEMM_DIMS:
                raise ValueError(f"{where}: {attr}={getattr(self, attr)!r} is not one of {GEMM_DIMS}")
        if self.rows_dim == self.cols_dim:
            raise ValueError(f"{where}: rows_dim and cols_dim are both {self.rows_dim!r}; tile two dims")
        if self.outer_dim not in (self.rows_dim, self.cols_dim):
            raise ValueError(
                f"{where}: outer_dim={self.outer_dim!r} must be a tiled dim "
                f"({self.rows_dim!r} or {self.cols_dim!r})"
            )
        if OPERAND_DIMS.get(self.stationary) != frozenset((self.rows_dim, self.cols_dim)):
            raise ValueError(
                f"{where}: stationary={self.stationary!r} does not match the tiled dims "
                f"{self.rows_dim!r} x {self.cols_dim!r} (A is m x k, W is k x n, Y is m x n)"
            )

    @property
    def inner_dim(self) -> str:
        """The tiled dimension whose folds form the inner loop."""
        return self.cols_dim if self.outer_dim == self.rows_dim else self.rows_dim

    @property
    def streamed_dim(self) -> str:
        """The GEMM dimension every fold streams whole (not tiled)."""
        (dim,) = set(GEMM_DIMS) - {self.rows_dim, self.cols_dim}
        return dim

    def fold_count(self, gemm: GemmShape, array: ArrayConfig) -> int:
        """Folds of one group's GEMM: ``ceil(rows_dim / R) * ceil(cols_dim / C)``."""
        return math.ceil(getattr(gemm, self.rows_dim) / array.rows) * math.ceil(
            getattr(gemm, self.cols_dim) / array.cols
        )
