"""hwsim.systolic.execute_gemm steps only the outputs that may narrow, and still equals the register level.

Most rows of ``A`` are small (their outputs provably never leave the accumulator) and a few are
large (their outputs overflow), so the executor computes most outputs as exact sums and steps the
rest through k; values, overflow counts, overflow events and peaks must equal those of
:func:`hwsim.systolic.run_gemm_cycles`, with and without a carried partial sum.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.hwconfig import ArrayConfig, HardwareConfig, PEConfig
from hwsim.systolic import execute_gemm, run_gemm_cycles


def mostly_small(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    a = rng.integers(-2, 3, size=(m, k))
    big = rng.choice(m, size=max(1, m // 8), replace=False)
    a[big] = rng.integers(-127, 128, size=(big.size, k))
    return a


@pytest.mark.parametrize(
    "overflow, track", [("wrap", None), ("wrap", True), ("saturate", False), ("saturate", None)]
)
@pytest.mark.parametrize("with_carry", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_overflow_equals_register_level(
    overflow: str, track: bool | None, with_carry: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    m, k, n = 40, 12, 6
    a = mostly_small(rng, m, k)
    w = rng.integers(-7, 8, size=(k, n))
    carry = rng.integers(-300, 301, size=(m, n)) if with_carry else None
    cfg = HardwareConfig(array=ArrayConfig(4, 3, "ws"), pe=PEConfig(12, overflow))
    tile = run_gemm_cycles(a, w, cfg, carry=carry)
    fast = execute_gemm(a, w, cfg, carry=carry, track_partials=track)
    assert tile.overflow_events > 0  # the large rows do overflow, or the case tests nothing
    assert np.array_equal(fast.values, tile.values)
    assert fast.overflow_count == tile.overflow_count
    assert fast.overflow_events == tile.overflow_events
    assert fast.peak_abs == tile.peak_abs
    assert (fast.min_sum, fast.max_sum) == (tile.min_sum, tile.max_sum)
    assert fast.cycles == tile.cycles


def test_grouped_sparse_overflow_equals_each_group() -> None:
    rng = np.random.default_rng(5)
    a = np.stack([mostly_small(rng, 24, 9) for _ in range(3)])
    w = rng.integers(-7, 8, size=(3, 9, 4))
    cfg = HardwareConfig(array=ArrayConfig(3, 3, "os"), pe=PEConfig(11, "wrap"))
    fast = execute_gemm(a, w, cfg)
    tiles = [run_gemm_cycles(a[g], w[g], cfg) for g in range(3)]
    assert sum(t.overflow_events for t in tiles) > 0
    assert np.array_equal(fast.values, np.stack([t.values for t in tiles]))
    assert fast.overflow_events == sum(t.overflow_events for t in tiles)
    assert fast.overflow_count == sum(t.overflow_count for t in tiles)
