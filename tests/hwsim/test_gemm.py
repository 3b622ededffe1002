"""hwsim.gemm: im2col/weight_matrix against direct convolution, and gemm_exact (all exactness tiers,
wrap and saturate) against a naive Python-int accumulator that narrows after every product."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.bundle import CodeFormat, Conv2dNode, LinearNode
from hwsim.fixed import IntFormat
from hwsim.gemm import abs_bound, gemm_exact, im2col, operand_dtype, weight_matrix


def naive_gemm(a: np.ndarray, w: np.ndarray, acc: IntFormat, mode: str) -> tuple[list[int], int, int]:
    """Python ints, ascending k, one narrowing per product -> (values, overflow events, peak |exact|)."""
    span = 1 << acc.bits
    out, events, peak = [], 0, 0
    for m in range(a.shape[0]):
        for n in range(w.shape[1]):
            exact = sum(int(a[m, k]) * int(w[k, n]) for k in range(a.shape[1]))
            peak = max(peak, abs(exact))
            if mode == "wrap":
                v = (exact - acc.min) % span + acc.min
                events += v != exact
            else:
                v, clamped = 0, False
                for k in range(a.shape[1]):
                    t = v + int(a[m, k]) * int(w[k, n])
                    v = min(max(t, acc.min), acc.max)
                    clamped |= v != t
                events += clamped
            out.append(v)
    return out, events, peak


@settings(max_examples=150)
@given(
    m=st.integers(1, 6),
    k=st.integers(1, 12),
    n=st.integers(1, 5),
    a_bits=st.integers(1, 40),
    w_bits=st.integers(1, 40),
    acc_bits=st.integers(1, 64),
    mode=st.sampled_from(["wrap", "saturate"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gemm_exact_matches_python_ints(
    m: int, k: int, n: int, a_bits: int, w_bits: int, acc_bits: int, mode: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    amax, wmax = (1 << (a_bits - 1)) - 1 or 1, (1 << (w_bits - 1)) - 1 or 1
    a = rng.integers(-amax, amax + 1, size=(m, k))
    w = rng.integers(-wmax, wmax + 1, size=(k, n))
    acc = IntFormat(acc_bits, True)
    got = gemm_exact(a, w, acc, mode)
    values, events, peak = naive_gemm(a, w, acc, mode)
    assert got.acc.reshape(-1).tolist() == values
    assert got.overflow_count == events
    assert got.peak_abs == peak


@pytest.mark.parametrize("a_bits, w_bits", [(4, 4), (12, 12), (28, 28), (33, 33)])
@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_every_exactness_tier_agrees_with_python_ints(a_bits: int, w_bits: int, mode: str) -> None:
    # float32 (bound <= 2^24), float64 (<= 2^53), int64 (<= 2^63 - 1), Python ints (beyond)
    rng = np.random.default_rng(a_bits)
    a = rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), size=(2, 9, 20))
    w = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), size=(2, 20, 3))
    bound = abs_bound(int(np.abs(a).max()), w)
    expected_dtype = {4: np.float32, 12: np.float64, 28: np.int64, 33: np.object_}[a_bits]
    assert operand_dtype(bound) is expected_dtype
    acc = IntFormat(min(64, a_bits + w_bits + 1), True)  # narrow enough for sums to overflow now and then
    for g in range(2):
        got = gemm_exact(a[g], w[g], acc, mode)
        values, events, _ = naive_gemm(a[g], w[g], acc, mode)
        assert got.acc.reshape(-1).tolist() == values and got.overflow_count == events
    both = gemm_exact(a, w, acc, mode)  # the grouped form is the groups side by side
    assert np.array_equal(both.acc[1], gemm_exact(a[1], w[1], acc, mode).acc)


def test_saturate_depends_on_the_order_and_follows_ascending_k() -> None:
    # acc int4 [-8, 7]; products +6, +6, -6: ascending k clamps 12 -> 7, then 7 - 6 = 1 (exact sum is 6)
    a = np.array([[2, 2, 2]])
    w = np.array([[3], [3], [-3]])
    res = gemm_exact(a, w, IntFormat(4, True), "saturate")
    assert res.acc.tolist() == [[1]] and res.overflow_count == 1 and res.peak_abs == 6
    wrapped = gemm_exact(a, w, IntFormat(4, True), "wrap")
    assert wrapped.acc.tolist() == [[6]] and wrapped.overflow_count == 0  # wrap is modular: no event


def _conv_node(
    c_in: int,
    c_out: int,
    kh: int,
    kw: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    groups: int,
    weight: np.ndarray,
) -> Conv2dNode:
    return Conv2dNode(
        "conv", "x", "y", weight, "w", CodeFormat(8, True), np.ones(c_out), "s", stride, padding, groups
    )


@settings(max_examples=60)
@given(
    groups=st.sampled_from([1, 2]),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    sh=st.integers(1, 2),
    sw=st.integers(1, 2),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_im2col_gemm_is_the_direct_convolution(
    groups: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    c_in, c_out, h, w_ = 2 * groups, 2 * groups, 5, 4
    x = rng.integers(-8, 8, size=(2, c_in, h, w_))
    weight = rng.integers(-8, 8, size=(c_out, c_in // groups, kh, kw))
    node = _conv_node(c_in, c_out, kh, kw, (sh, sw), (ph, pw), groups, weight)
    a, wm = im2col(x, node), weight_matrix(node)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w_ + 2 * pw - kw) // sw + 1
    assert a.shape == (groups, 2 * ho * wo, (c_in // groups) * kh * kw)
    y = gemm_exact(a, wm, IntFormat(32, True), "wrap").acc  # [G, M, N/G]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cg, ng = c_in // groups, c_out // groups
    for img in range(2):
        for co in range(c_out):
            g = co // ng
            for oh in range(ho):
                for ow in range(wo):
                    direct = sum(
                        int(xp[img, g * cg + c, oh * sh + i, ow * sw + j]) * int(weight[co, c, i, j])
                        for c in range(cg)
                        for i in range(kh)
                        for j in range(kw)
                    )
                    assert y[g, (img * ho + oh) * wo + ow, co % ng] == direct


def test_k_order_is_channel_then_row_then_column() -> None:
    # k = c * kh * kw + i * kw + j: the row of A for output (0, 0) lists the patch in that order
    x = np.arange(2 * 2 * 2).reshape(1, 2, 2, 2)  # c, h, w
    node = _conv_node(2, 1, 2, 2, (1, 1), (0, 0), 1, np.zeros((1, 2, 2, 2), dtype=np.int64))
    assert im2col(x, node)[0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    lin = LinearNode("fc", "x", "y", np.arange(6).reshape(2, 3), "w", CodeFormat(8, True), np.ones(2), "s")
    assert weight_matrix(lin)[0].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert im2col(np.array([[1, 2, 3]]), lin).tolist() == [[[1, 2, 3]]]
