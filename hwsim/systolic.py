"""Executing GEMMs on the array: a register-level cycle-stepped model and a fast fold-level executor.

Place in the flow: ``mapping`` cuts a GEMM into folds, ``timing`` counts their cycles in closed
form; this module *runs* them and computes the values the PEs would produce.

* :func:`run_gemm_cycles` steps an ``R x C`` grid of PE registers one clock at a time (weights
  shifting in, activations moving right, partial sums moving down, exactly as docs/dataflow.md
  says for ``ws``; the other dataflows as their ``hwsim.dataflows`` modules say). Two machines
  run every dataflow, chosen by the operand it keeps stationary (:data:`MACHINE_LAYOUTS`): the
  stationary-tile machine (a W tile, or an A tile with A and W swapped) and the
  output-stationary one; both run the dataflow's own fold plan. It is the scoreboard of
  the RTL testbenches (values, cycle count and the cycle at which each output is written back)
  and the ground truth the other models are tested against. Slow: Python per cycle.
* :func:`execute_gemm` computes the same values in the same order (every output accumulated
  over ascending ``k``, one narrowing per product, partial sums carried across K-folds at
  ``acc_bits``) vectorized over all outputs, and counts the same cycles fold by fold from the
  same schedule. Used for whole networks.

Overflow is counted two ways. ``overflow_events``: narrowings that changed a value (one per PE
per product, the hardware's event count). ``overflow_count``: output elements that overflowed:
with ``wrap``, those whose result differs from the exact sum (a PE's partial sum carries its net
number of wraps with it, as guard bits would); with ``saturate``, those clamped at least once.
``overflow_count`` is what the emulator (``hwsim.gemm.gemm_exact``) counts. ``peak_abs`` is the
largest ``|exact sum|`` of an output, as the emulator reports it.

Cycle-level timing is always native (``timing: scalesim`` only changes the analytic count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.dataflows import Dataflow, dataflow
from hwsim.errors import UserError
from hwsim.fixed import F64_EXACT, IntFormat, narrow, wrap
from hwsim.gemm import abs_bound, exact_matmul
from hwsim.hwconfig import HardwareConfig
from hwsim.mapping import Fold, GemmShape, fold_plan
from hwsim.timing import ZERO, CycleBreakdown

# The register-level machines: the operand a dataflow keeps stationary -> the GEMM dims its tile
# must lay over (rows, cols). W and A: the stationary-tile machine (K down the rows, where the
# partial sums flow); Y: the output-stationary machine (A enters the rows, W the columns).
MACHINE_LAYOUTS: dict[str, tuple[str, str]] = {"W": ("k", "n"), "A": ("k", "m"), "Y": ("m", "n")}


def _machine(flow: Dataflow) -> str:
    """The stationary operand of ``flow``, once its layout is checked against :data:`MACHINE_LAYOUTS`."""
    if MACHINE_LAYOUTS.get(flow.stationary) != (flow.rows_dim, flow.cols_dim):
        raise UserError(
            f"dataflow {flow.name!r}: the register-level model has no machine for a stationary "
            f"{flow.stationary} tiled {flow.rows_dim} over rows and {flow.cols_dim} over columns "
            f"(it has {MACHINE_LAYOUTS}); add one to hwsim/systolic.py or use another dataflow"
        )
    return flow.stationary


def _tile(fold: Fold, dim: str) -> tuple[int, int]:
    """``(start, size)`` of ``fold`` along the GEMM dimension ``dim``."""
    return {"m": (fold.m0, fold.mt), "k": (fold.k0, fold.kt), "n": (fold.n0, fold.nt)}[dim]


@dataclass(frozen=True)
class OutputWrite:
    """One write-back to the output buffer: at ``cycle`` (from the GEMM's start), ``Y[m, n] = value``.

    A K-fold that is not the last writes a partial sum, which the next K-fold reads back.
    """

    cycle: int
    fold: int
    m: int
    n: int
    value: int


@dataclass(frozen=True)
class TileRun:
    """The result of running one GEMM ``Y[M, N] = A[M, K] * W[K, N]`` on the array."""

    values: np.ndarray  # int64 [M, N], narrowed to acc_bits
    cycles: CycleBreakdown
    folds: int
    overflow_count: int
    overflow_events: int
    peak_abs: int
    min_sum: int = 0  # range of the exact sums of the outputs
    max_sum: int = 0
    partial_range: tuple[int, int] | None = None  # range of every exact partial sum (execute_gemm on request)
    writes: tuple[OutputWrite, ...] | None = None  # with trace=True (register-level model only)

    @property
    def total_cycles(self) -> int:
        return self.cycles.total


def _check_operands(a: np.ndarray, w: np.ndarray, carry: np.ndarray | None) -> tuple[np.ndarray, ...]:
    a = np.asarray(a)
    w = np.asarray(w)
    if a.dtype.kind not in "iu" or w.dtype.kind not in "iu":
        raise UserError(f"array GEMM: expected integer codes, got A {a.dtype} and W {w.dtype}")
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0] or 0 in a.shape or w.shape[1] == 0:
        raise UserError(
            f"array GEMM: A {a.shape} and W {w.shape} do not form a non-empty GEMM [M, K] x [K, N]"
        )
    a64, w64 = a.astype(np.int64), w.astype(np.int64)
    if carry is None:
        c64 = np.zeros((a.shape[0], w.shape[1]), dtype=np.int64)
    else:
        carry = np.asarray(carry)
        if carry.shape != (a.shape[0], w.shape[1]) or carry.dtype.kind not in "iu":
            raise UserError(
                f"array GEMM: carry must be integer [M, N] = {(a.shape[0], w.shape[1])}, "
                f"got {carry.dtype} {carry.shape}"
            )
        c64 = carry.astype(np.int64)
    return a64, w64, c64


def _overflow_update(
    mark: np.ndarray, exact: np.ndarray, narrowed: np.ndarray, fmt: IntFormat, mode: str
) -> None:
    """Track per-output overflow: net wraps (wrap) or a sticky clamp flag (saturate), in place."""
    if mode == "wrap":
        mark += (exact - narrowed) >> np.int64(fmt.bits)
    else:
        mark |= (exact != narrowed).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Register-level, cycle-stepped model
# ----------------------------------------------------------------------------------------------


class _StationaryMachine:
    """The ws array (and, transposed, the is array): a stationary tile, a streamed operand, psums moving down.

    Registers per PE ``(r, c)``: ``w`` (stationary operand), ``x`` (streamed operand, moves right
    one PE per cycle), ``p`` (partial sum, moves down one PE per cycle) and ``o`` (the partial
    sum's overflow mark, moving with it).
    """

    def __init__(self, rows: int, cols: int, fmt: IntFormat, mode: str) -> None:
        self.rows, self.cols, self.fmt, self.mode = rows, cols, fmt, mode
        self.w = np.zeros((rows, cols), dtype=np.int64)
        self.events = 0

    def preload(self, tile: np.ndarray) -> int:
        """Shift ``tile`` (``[kt, pt]``, zero-padded to ``R x C``) in from the top, one row per cycle."""
        padded = np.zeros((self.rows, self.cols), dtype=np.int64)
        padded[: tile.shape[0], : tile.shape[1]] = tile
        for t in range(self.rows):
            self.w[1:] = self.w[:-1].copy()
            self.w[0] = padded[self.rows - 1 - t]
        return self.rows

    def stream(
        self, x: np.ndarray, carry: np.ndarray, carry_mark: np.ndarray, pt: int, on_write: object
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Stream rows ``x [S, kt]``; the top of column ``c`` receives ``carry[s, c]`` for row ``s``.

        Returns the bottom outputs ``[S, pt]``, their overflow marks and the stream's cycle count.
        """
        r_count, c_count = self.rows, self.cols
        s_count, kt = x.shape
        rows = np.arange(r_count)
        cols = np.arange(c_count)
        xr = np.zeros((r_count, c_count), dtype=np.int64)
        p = np.zeros((r_count, c_count), dtype=np.int64)
        o = np.zeros((r_count, c_count), dtype=np.int64)
        out = np.zeros((s_count, pt), dtype=np.int64)
        out_mark = np.zeros((s_count, pt), dtype=np.int64)
        length = s_count + r_count + pt - 2
        for t in range(length):
            s_left = t - rows
            valid = (s_left >= 0) & (s_left < s_count) & (rows < kt)
            x_in = np.zeros(r_count, dtype=np.int64)
            x_in[valid] = x[s_left[valid], rows[valid]]
            xr[:, 1:] = xr[:, :-1].copy()
            xr[:, 0] = x_in
            s_top = t - cols
            top_valid = (s_top >= 0) & (s_top < s_count) & (cols < pt)
            p_top = np.zeros(c_count, dtype=np.int64)
            o_top = np.zeros(c_count, dtype=np.int64)
            p_top[top_valid] = carry[s_top[top_valid], cols[top_valid]]
            o_top[top_valid] = carry_mark[s_top[top_valid], cols[top_valid]]
            above = np.vstack([p_top[None, :], p[:-1]])
            o = np.vstack([o_top[None, :], o[:-1]])
            exact = above + xr * self.w
            p, changed = narrow(exact, self.fmt, self.mode)  # type: ignore[arg-type]
            self.events += changed
            _overflow_update(o, exact, p, self.fmt, self.mode)
            s_bot = t - (r_count - 1) - cols
            bot_valid = (s_bot >= 0) & (s_bot < s_count) & (cols < pt)
            out[s_bot[bot_valid], cols[bot_valid]] = p[r_count - 1, bot_valid]
            out_mark[s_bot[bot_valid], cols[bot_valid]] = o[r_count - 1, bot_valid]
            if on_write is not None:
                for s, c in zip(s_bot[bot_valid], cols[bot_valid], strict=True):
                    on_write(t, int(s), int(c), int(p[r_count - 1, c]))  # type: ignore[operator]
        return out, out_mark, length


def _run_stationary(
    stream_op: np.ndarray,
    stat_op: np.ndarray,
    carry: np.ndarray,
    hw: HardwareConfig,
    trace: bool,
    plan: list[tuple[int, int, int, int]],
    transpose_out: bool,
) -> tuple[np.ndarray, np.ndarray, CycleBreakdown, int, int, list[OutputWrite]]:
    """Run ``Y[S, P] = stream_op[S, K] * stat_op[K, P]`` on the stationary machine, fold by fold.

    ``plan``: the folds in order, each ``(p0, pt, k0, kt)``, its stationary tile of ``stat_op``.
    """
    r, c = hw.array.rows, hw.array.cols
    machine = _StationaryMachine(r, c, hw.pe.acc_format, hw.pe.overflow)
    s_count = stream_op.shape[0]
    buf = carry.copy()
    mark = np.zeros_like(buf)
    cycles = ZERO
    clock = 0
    writes: list[OutputWrite] = []
    folds = 0
    for p0, pt, k0, kt in plan:
        start = clock
        preload = machine.preload(stat_op[k0 : k0 + kt, p0 : p0 + pt])
        clock += preload

        def on_write(
            t: int, s: int, col: int, value: int, base: int = clock, fold: int = folds, p0: int = p0
        ) -> None:
            m, n = (p0 + col, s) if transpose_out else (s, p0 + col)
            writes.append(OutputWrite(base + t, fold, m, n, value))

        out, out_mark, length = machine.stream(
            stream_op[:, k0 : k0 + kt],
            buf[:, p0 : p0 + pt],
            mark[:, p0 : p0 + pt],
            pt,
            on_write if trace else None,
        )
        buf[:, p0 : p0 + pt] = out
        mark[:, p0 : p0 + pt] = out_mark
        clock += length
        cycles = cycles + CycleBreakdown(
            compute=s_count, preload=preload, fill_drain=clock - start - preload - s_count
        )
        folds += 1
    return buf, mark, cycles, machine.events, folds, writes


def _run_output_stationary(
    a: np.ndarray, w: np.ndarray, carry: np.ndarray, hw: HardwareConfig, trace: bool, load_carry: bool
) -> tuple[np.ndarray, np.ndarray, CycleBreakdown, int, int, list[OutputWrite]]:
    """The os array: each PE keeps one output; A moves right, W moves down, then the outputs drain down.

    ``load_carry``: each fold first shifts its tile of ``carry`` into the accumulators from the top,
    one row per cycle (``R`` preload cycles); otherwise the accumulators start at 0 at no cost.
    """
    r_count, c_count = hw.array.rows, hw.array.cols
    fmt, mode = hw.pe.acc_format, hw.pe.overflow
    m_count, k = a.shape
    n_count = w.shape[1]
    rows = np.arange(r_count)
    cols = np.arange(c_count)
    result = np.zeros((m_count, n_count), dtype=np.int64)
    result_mark = np.zeros_like(result)
    cycles = ZERO
    clock = 0
    events = 0
    folds = 0
    writes: list[OutputWrite] = []
    gemm = GemmShape(m_count, k, n_count)
    for fold in fold_plan(gemm, hw.array):
        m0, mt, n0, nt = fold.m0, fold.mt, fold.n0, fold.nt
        acc = np.zeros((r_count, c_count), dtype=np.int64)
        o = np.zeros((r_count, c_count), dtype=np.int64)
        ar = np.zeros((r_count, c_count), dtype=np.int64)
        wr = np.zeros((r_count, c_count), dtype=np.int64)
        start = clock
        preload = 0
        if load_carry:
            # Carry load: the word of load cycle i (C's row ROWS-1-i, 0 past the tile) enters row 0
            # while the accumulators shift down, so it ends in row ROWS-1-i.
            tile = np.zeros((r_count, c_count), dtype=np.int64)
            tile[:mt, :nt] = carry[m0 : m0 + mt, n0 : n0 + nt]
            for i in range(r_count):
                acc[1:] = acc[:-1].copy()
                acc[0] = tile[r_count - 1 - i]
            preload = r_count
            clock += preload
        length = k + mt + nt - 2
        for t in range(length):
            k_left = t - rows
            valid = (k_left >= 0) & (k_left < k) & (rows < mt)
            a_in = np.zeros(r_count, dtype=np.int64)
            a_in[valid] = a[m0 + rows[valid], k_left[valid]]
            k_top = t - cols
            valid_c = (k_top >= 0) & (k_top < k) & (cols < nt)
            w_in = np.zeros(c_count, dtype=np.int64)
            w_in[valid_c] = w[k_top[valid_c], n0 + cols[valid_c]]
            ar[:, 1:] = ar[:, :-1].copy()
            ar[:, 0] = a_in
            wr[1:] = wr[:-1].copy()
            wr[0] = w_in
            exact = acc + ar * wr
            acc, changed = narrow(exact, fmt, mode)  # type: ignore[arg-type]
            events += changed
            _overflow_update(o, exact, acc, fmt, mode)
        clock += length
        # Drain: the accumulators shift down one row per cycle; the bottom row leaves the array.
        for d in range(r_count):
            row = r_count - 1 - d
            if row < mt:
                result[m0 + row, n0 : n0 + nt] = acc[r_count - 1, :nt]
                result_mark[m0 + row, n0 : n0 + nt] = o[r_count - 1, :nt]
                if trace:
                    writes.extend(
                        OutputWrite(clock, folds, m0 + row, n0 + j, int(acc[r_count - 1, j]))
                        for j in range(nt)
                    )
            acc[1:] = acc[:-1].copy()
            acc[0] = 0
            o[1:] = o[:-1].copy()
            o[0] = 0
            clock += 1
        cycles = cycles + CycleBreakdown(compute=k, preload=preload, fill_drain=clock - start - preload - k)
        folds += 1
    return result, result_mark, cycles, events, folds, writes


def run_gemm_cycles(
    a: np.ndarray, w: np.ndarray, hw: HardwareConfig, carry: np.ndarray | None = None, trace: bool = False
) -> TileRun:
    """Run ``Y = carry + A[M, K] * W[K, N]`` on the ``hw`` array, one clock cycle at a time.

    ``carry`` is what the output buffer holds before the first K-fold (0 when ``None``). With
    ``trace=True`` the result lists every write-back to the output buffer with its cycle
    (counted from the GEMM's start, preload included) in order. A ``carry`` costs the dataflow's
    ``carry_load`` preload cycles (os: ``R`` per fold, loading it into the accumulators); ``None``
    costs nothing, and the cycles equal ``hwsim.timing``'s native count.
    """
    a64, w64, c64 = _check_operands(a, w, carry)
    flow = dataflow(hw.array.dataflow)
    stationary = _machine(flow)
    gemm = GemmShape(a64.shape[0], a64.shape[1], w64.shape[1])
    if stationary == "Y":
        values, mark, cycles, events, folds, writes = _run_output_stationary(
            a64, w64, c64, hw, trace, carry is not None
        )
    else:
        # (p0, pt, k0, kt): the stationary tile's columns (the cols dim) and rows (K) per fold
        plan = [(*_tile(f, flow.cols_dim), f.k0, f.kt) for f in fold_plan(gemm, hw.array)]
        if stationary == "W":
            values, mark, cycles, events, folds, writes = _run_stationary(
                a64, w64, c64, hw, trace, plan, False
            )
        else:  # "A": the same machine on Y^T = W^T A^T
            values_t, mark_t, cycles, events, folds, writes = _run_stationary(
                w64.T, a64.T, c64.T, hw, trace, plan, True
            )
            values, mark = values_t.T.copy(), mark_t.T.copy()
    exact = c64 + a64 @ w64
    return TileRun(
        values=values,
        cycles=cycles,
        folds=folds,
        overflow_count=int(np.count_nonzero(mark)),
        overflow_events=int(events),
        peak_abs=int(np.abs(exact).max()),
        min_sum=int(exact.min()),
        max_sum=int(exact.max()),
        writes=tuple(sorted(writes, key=lambda wr: (wr.cycle, wr.n, wr.m))) if trace else None,
    )


# ----------------------------------------------------------------------------------------------
# Fast fold-level executor
# ----------------------------------------------------------------------------------------------


def fold_schedule_cycles(gemm: GemmShape, hw: HardwareConfig) -> tuple[CycleBreakdown, int]:
    """Cycles of every fold of one group from its machine's schedule: the cycle of its last write-back.

    Stationary-tile machine (``ws``, ``is``): after the ``R``-cycle preload, stream row ``s``
    leaves column ``c`` at ``s + R - 1 + c`` (``s`` over the streamed dim, ``c`` over the fold's
    columns); output-stationary machine (``os``): the last MAC of PE ``(mt-1, nt-1)`` is at
    ``K-1 + mt-1 + nt-1``, then ``R`` drain cycles.
    """
    flow = dataflow(hw.array.dataflow)
    stationary = _machine(flow)
    r = hw.array.rows
    streamed = getattr(gemm, flow.streamed_dim)
    total = ZERO
    folds = fold_plan(gemm, hw.array)
    for fold in folds:
        if stationary == "Y":
            stream = (streamed - 1) + (fold.mt - 1) + (fold.nt - 1) + 1
            cycles = CycleBreakdown(compute=streamed, preload=0, fill_drain=stream - streamed + r)
        else:
            width = _tile(fold, flow.cols_dim)[1]
            last_write = (streamed - 1) + (r - 1) + (width - 1)
            cycles = CycleBreakdown(compute=streamed, preload=r, fill_drain=last_write + 1 - streamed)
        total = total + cycles
    return total, len(folds)


def execute_gemm(
    a: np.ndarray,
    w: np.ndarray,
    hw: HardwareConfig,
    carry: np.ndarray | None = None,
    track_partials: bool | None = None,
) -> TileRun:
    """Values, overflow and native cycles of ``Y = carry + A * W`` on ``hw``, vectorized.

    ``A`` is ``[M, K]`` or ``[G, M, K]`` (``G`` groups, each its own GEMM with ``W [G, K, N]``).
    Every output accumulates over ascending ``k`` with one narrowing per product, exactly as the
    PEs do across folds; the result equals :func:`run_gemm_cycles`'s. ``track_partials`` (default:
    on for ``saturate``, where intermediate sums matter) also records the range of every exact
    partial sum (``partial_range``).
    """
    a = np.asarray(a)
    w = np.asarray(w)
    grouped = a.ndim == 3
    if not grouped:
        a, w = a[None], w[None]
        if carry is not None:
            carry = np.asarray(carry)[None]
    if a.ndim != 3 or w.ndim != 3 or a.shape[0] != w.shape[0] or a.shape[2] != w.shape[1]:
        raise UserError(f"array GEMM: A {a.shape} and W {w.shape} do not form [G, M, K] x [G, K, N]")
    if a.dtype.kind not in "iu" or w.dtype.kind not in "iu":
        raise UserError(f"array GEMM: expected integer codes, got A {a.dtype} and W {w.dtype}")
    g, m, k = a.shape
    n = w.shape[2]
    if 0 in (g, m, k, n):
        raise UserError(f"array GEMM: empty GEMM A {a.shape} x W {w.shape}")
    fmt, mode = hw.pe.acc_format, hw.pe.overflow
    if track_partials is None:
        track_partials = mode == "saturate"
    a64 = a.astype(np.int64, copy=False)
    w64 = w.astype(np.int64, copy=False)
    carry64 = np.zeros((g, m, n), dtype=np.int64) if carry is None else np.asarray(carry, dtype=np.int64)
    bound = abs_bound(int(np.abs(a64).max()), w64) + int(np.abs(carry64).max())
    exact = (exact_matmul(a64, w64, bound) if bound <= F64_EXACT else np.matmul(a64, w64)) + carry64
    # An output whose partial sums all stay within the accumulator never narrows: its value is
    # its exact sum and it has no overflow event; only the others are stepped through k. Per
    # output, |carry| + sum_k |a w| bounds them (float64, with a margin for its rounding).
    if bound <= fmt.max:
        may_narrow = np.zeros(exact.shape, dtype=bool)
    else:
        reach = np.matmul(np.abs(a64).astype(np.float64), np.abs(w64).astype(np.float64)) + np.abs(carry64)
        may_narrow = reach > float(fmt.max) * (1.0 - 1e-9)
    flagged = int(np.count_nonzero(may_narrow))
    if track_partials or flagged > may_narrow.size // 4:
        acc, events, sticky, partials = _step_all(a64, w64, carry64, fmt, mode, track_partials)
    else:
        acc = wrap(exact, fmt)[0] if mode == "wrap" else exact.copy()  # wrap is modular
        events, sticky, partials = 0, np.zeros(acc.shape, dtype=bool), None
        if flagged:
            events = _step_flagged(a64, w64, carry64, may_narrow, fmt, mode, acc, sticky)
    lo, hi = fmt.min, fmt.max
    if mode == "saturate":
        overflowed = int(np.count_nonzero(sticky))
    else:
        overflowed = int(np.count_nonzero((exact < lo) | (exact > hi)))
    per_group, folds = fold_schedule_cycles(GemmShape(m, k, n), hw)
    if carry is not None:  # loading C into the array (the dataflow's carry_load; os: R cycles a fold)
        load = dataflow(hw.array.dataflow).carry_load(GemmShape(m, k, n), hw.array)
        per_group = per_group + CycleBreakdown(compute=0, preload=load, fill_drain=0)
    return TileRun(
        values=acc if grouped else acc[0],
        cycles=per_group.scaled(g),
        folds=folds * g,
        overflow_count=overflowed,
        overflow_events=events,
        peak_abs=int(np.abs(exact).max()),
        min_sum=int(exact.min()),
        max_sum=int(exact.max()),
        partial_range=partials,
    )


def _step_all(
    a64: np.ndarray, w64: np.ndarray, carry64: np.ndarray, fmt: IntFormat, mode: str, track_partials: bool
) -> tuple[np.ndarray, int, np.ndarray, tuple[int, int] | None]:
    """Every output over ascending k, one narrowing per product.

    Returns the values, the overflow events, which outputs were clamped, and (``track_partials``)
    the range of every exact partial sum.
    """
    acc = carry64.copy()
    exact_run = acc.copy() if track_partials else None
    lo_seen = int(acc.min()) if track_partials else 0
    hi_seen = int(acc.max()) if track_partials else 0
    sticky = np.zeros(acc.shape, dtype=bool)
    events = 0
    lo, hi = fmt.min, fmt.max
    for kk in range(a64.shape[2]):  # K-folds ascend and each fold's rows ascend: the order is simply k
        product = a64[:, :, kk, None] * w64[:, None, kk, :]
        total = acc + product
        out_of_range = (total < lo) | (total > hi)
        count = int(np.count_nonzero(out_of_range))
        if count:
            events += count
            sticky |= out_of_range
            total, _ = narrow(total, fmt, mode)  # type: ignore[arg-type]
        acc = total
        if exact_run is not None:
            exact_run += product
            lo_seen = min(lo_seen, int(exact_run.min()))
            hi_seen = max(hi_seen, int(exact_run.max()))
    return acc, events, sticky, (lo_seen, hi_seen) if track_partials else None


_STEP_CHUNK = 1 << 18  # flagged outputs stepped through k at once


def _step_flagged(
    a64: np.ndarray,
    w64: np.ndarray,
    carry64: np.ndarray,
    flagged: np.ndarray,
    fmt: IntFormat,
    mode: str,
    acc: np.ndarray,
    sticky: np.ndarray,
) -> int:
    """:func:`_step_all` for the ``flagged`` outputs only: their values into ``acc``, clamps into ``sticky``.

    Returns their overflow events (the others have none: no partial sum of theirs leaves the range).
    """
    lo, hi = fmt.min, fmt.max
    events = 0
    gi, mi, ni = np.nonzero(flagged)
    for group in np.unique(gi):
        sel = gi == group
        a_t = np.ascontiguousarray(a64[group].T)  # [K, M]: row k holds A[:, k]
        w_g = w64[group]
        for start in range(0, int(np.count_nonzero(sel)), _STEP_CHUNK):
            m_c = mi[sel][start : start + _STEP_CHUNK]
            n_c = ni[sel][start : start + _STEP_CHUNK]
            psum = carry64[group, m_c, n_c]
            clamped = np.zeros(m_c.size, dtype=bool)
            for kk in range(a64.shape[2]):
                total = psum + a_t[kk].take(m_c) * w_g[kk].take(n_c)
                out_of_range = (total < lo) | (total > hi)
                events += int(np.count_nonzero(out_of_range))
                clamped |= out_of_range
                psum, _ = narrow(total, fmt, mode)  # type: ignore[arg-type]
            acc[group, m_c, n_c] = psum
            sticky[group, m_c, n_c] = clamped
    return events
