"""Convolutions and linear layers as exact integer GEMMs with a narrowed accumulator.

Place in the flow: the emulator (hwsim.emulator) and the MAC-array model (hwsim.systolic) turn every
``conv2d``/``linear`` node of a bundle into ``Y[M, N] = A[M, K] @ W[K, N]`` with :func:`im2col` and
:func:`weight_matrix` (the K order of docs/export-format.md) and compute it with :func:`gemm_exact`:
products of codes summed over ascending ``k`` in a two's-complement accumulator of ``acc`` bits,
narrowed by ``wrap`` or ``saturate`` (hwsim.fixed), with every overflow event counted.

Exactness: the exact sums come from float32 or float64 BLAS only when the operands' magnitudes
prove that every partial sum, in any order, is an integer the float type represents exactly
(``max|A| * max_n sum_k |W[k, n]| <= 2**24`` or ``2**53``); otherwise from int64 (``<= 2**63 - 1``)
or Python integers. ``wrap`` is modular, so the wrapped exact sum equals the result of wrapping
after every product. ``saturate`` depends on the order: elements whose partial sums provably stay
in range take the exact sum; the others are accumulated one product at a time over ascending ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from hwsim.bundle import Conv2dNode, LinearNode, window_output
from hwsim.fixed import F32_EXACT, F64_EXACT, I64_MAX, OVERFLOW_MODES, FormatError, IntFormat, wrap

_SEQ_CHUNK = 1 << 20  # output elements accumulated at once by the sequential saturate path


@dataclass(frozen=True)
class GemmResult:
    """The narrowed accumulators and what narrowing did.

    ``acc``: int64 ``[..., M, N]`` after ``wrap``/``saturate`` to the accumulator format;
    ``overflow_count``: output elements whose result differs from the exact sum because of
    narrowing (wrap: the exact sum is out of range; saturate: at least one clamp happened);
    ``peak_abs``: the largest ``|exact sum|``; ``min_sum``/``max_sum``: the range of the exact sums
    (0 when there are no outputs).
    """

    acc: np.ndarray
    overflow_count: int
    peak_abs: int
    min_sum: int = 0
    max_sum: int = 0


def output_hw(node: Conv2dNode, h: int, w: int) -> tuple[int, int]:
    """``(H_out, W_out)`` of a conv on an ``h x w`` input."""
    return window_output((h, w), node.kernel, node.stride, node.padding)


def im2col(x: np.ndarray, node: Conv2dNode | LinearNode) -> np.ndarray:
    """Input codes ``[N, C, H, W]`` (``[N, F]`` for linear) -> ``A [groups, N*H_out*W_out, K]`` int64.

    Row ``m = (n * H_out + oh) * W_out + ow``; column ``k = c * kh * kw + i * kw + j`` (c within the group),
    padding is code 0.
    """
    x = np.asarray(x, dtype=np.int64)
    if isinstance(node, LinearNode):
        return x.reshape(1, x.shape[0], -1).copy()
    patches = _patches(x.transpose(0, 2, 3, 1), node)  # [N, Ho, Wo, C, kh, kw]
    n, ho, wo, c, kh, kw = patches.shape
    g = node.groups
    cg = c // g
    out = np.empty((g, n * ho * wo, cg * kh * kw), dtype=np.int64)
    for gi in range(g):
        out[gi] = patches[:, :, :, gi * cg : (gi + 1) * cg].reshape(n * ho * wo, cg * kh * kw)
    return out


def _patches(x_nhwc: np.ndarray, node: Conv2dNode) -> np.ndarray:
    """A strided view ``[N, H_out, W_out, C, kh, kw]`` of the zero-padded NHWC input.

    ``view[n, oh, ow, c, i, j] = padded[n, oh * sh + i, ow * sw + j, c]`` (read-only).
    """
    n, h, w, c = x_nhwc.shape
    ph, pw = node.padding
    if ph or pw:
        padded = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x_nhwc.dtype)
        padded[:, ph : ph + h, pw : pw + w] = x_nhwc
        x_nhwc = padded
    ho, wo = output_hw(node, h, w)
    (kh, kw), (sh, sw) = node.kernel, node.stride
    s0, s1, s2, s3 = x_nhwc.strides
    return as_strided(x_nhwc, (n, ho, wo, c, kh, kw), (s0, s1 * sh, s2 * sw, s3, s1, s2), writeable=False)


def weight_matrix(node: Conv2dNode | LinearNode) -> np.ndarray:
    """Weights -> ``W [groups, K, N/groups]`` int64, ``W[g, k, n] = weight[g * N/groups + n].flat[k]``."""
    w = np.asarray(node.weight, dtype=np.int64)
    g = node.groups
    n = w.shape[0] // g
    return np.ascontiguousarray(w.reshape(g, n, -1).transpose(0, 2, 1))


def abs_bound(a_max_abs: int, w: np.ndarray) -> int:
    """``a_max_abs * max_n sum_k |W[.., k, n]|``: a bound on ``|partial sum|`` of any order, any output."""
    w = np.asarray(w)
    if w.size == 0:
        return 0
    wmax = max(abs(int(w.min())), abs(int(w.max())))
    k = w.shape[-2]
    if wmax * k < F64_EXACT:
        col = int(np.abs(w.astype(np.int64)).sum(axis=-2).max())
    else:
        col = max(int(v) for v in np.abs(w.astype(object)).sum(axis=-2).reshape(-1))
    return int(a_max_abs) * col


def exact_matmul(a: np.ndarray, w: np.ndarray, bound: int) -> np.ndarray:
    """Exact ``a @ w`` of integer arrays, given ``bound`` >= every ``|partial sum|``.

    Returns int64, or an object array of Python ints when the sums may not fit int64.
    """
    dtype = operand_dtype(bound)
    if dtype is np.object_:
        return np.matmul(a.astype(object), w.astype(object))
    product = np.matmul(a.astype(dtype, copy=False), w.astype(dtype, copy=False))
    # Every partial sum is an integer the dtype represents exactly, so the product is exact.
    return product if dtype is np.int64 else product.astype(np.int64)


def _max_abs(a: np.ndarray) -> int:
    return 0 if a.size == 0 else max(abs(int(a.min())), abs(int(a.max())))


def gemm_exact(
    a: np.ndarray,
    w: np.ndarray,
    acc: IntFormat,
    mode: str = "wrap",
    a_max_abs: int | None = None,
) -> GemmResult:
    """``A [G, M, K] @ W [G, K, N]`` (or 2-D ``[M, K] @ [K, N]``) in an ``acc`` accumulator.

    ``mode`` is ``wrap`` or ``saturate``; ``a_max_abs`` (optional) bounds ``|A|`` when the caller knows
    it from the input format (otherwise it is read from ``A``). See the module docstring for how
    exactness is guaranteed.
    """
    if mode not in OVERFLOW_MODES:
        raise FormatError(f"overflow mode {mode!r} is not one of {OVERFLOW_MODES}")
    a = np.asarray(a)
    w = np.asarray(w)
    if a.dtype.kind not in "iu" or w.dtype.kind not in "iu":
        raise FormatError(f"gemm_exact: expected integer codes, got {a.dtype} and {w.dtype}")
    if a.ndim != w.ndim or a.ndim not in (2, 3) or a.shape[-1] != w.shape[-2] or a.shape[:-2] != w.shape[:-2]:
        raise FormatError(
            f"gemm_exact: shapes {a.shape} and {w.shape} do not form a GEMM [G, M, K] @ [G, K, N]"
        )
    amax = _max_abs(a) if a_max_abs is None else int(a_max_abs)
    return gemm_prepared(a, w, acc, mode, amax, abs_bound(amax, w))


def operand_dtype(bound: int) -> type[np.generic]:
    """The dtype in which a GEMM whose partial sums are bounded by ``bound`` is exact."""
    if bound <= F32_EXACT:
        return np.float32
    if bound <= F64_EXACT:
        return np.float64
    return np.int64 if bound <= I64_MAX else np.object_


def gemm_prepared(
    a: np.ndarray, w: np.ndarray, acc: IntFormat, mode: str, a_max_abs: int, bound: int
) -> GemmResult:
    """:func:`gemm_exact` for callers holding ``A`` and ``W`` in :func:`operand_dtype` ``(bound)`` already.

    ``A`` may be a float array holding integer codes (the emulator builds it so, to skip a
    conversion); ``bound`` must be :func:`abs_bound` ``(a_max_abs, W)`` or larger.
    """
    amax = a_max_abs
    exact = exact_matmul(a, w, bound)
    if exact.size == 0:
        return GemmResult(exact.astype(np.int64), 0, 0)
    lo_sum, hi_sum = int(exact.min()), int(exact.max())
    peak = max(abs(lo_sum), abs(hi_sum))
    if mode == "wrap":
        if exact.dtype == object:
            out_of_range = int(np.count_nonzero((exact < acc.min) | (exact > acc.max)))
            span = 1 << acc.bits
            wrapped = ((exact - acc.min) % span + acc.min).astype(np.int64)
            return GemmResult(wrapped, out_of_range, peak, lo_sum, hi_sum)
        if acc.min <= lo_sum and hi_sum <= acc.max:
            return GemmResult(exact, 0, peak, lo_sum, hi_sum)
        wrapped, out_of_range = wrap(exact, acc)
        return GemmResult(wrapped, out_of_range, peak, lo_sum, hi_sum)
    if bound <= acc.max:  # no partial sum of any output can leave the accumulator
        return GemmResult(exact.astype(np.int64), 0, peak, lo_sum, hi_sum)
    acc_out, clamped = _saturate_sequential(a, w, exact, acc, amax)
    return GemmResult(acc_out, clamped, peak, lo_sum, hi_sum)


def _saturate_sequential(
    a: np.ndarray, w: np.ndarray, exact: np.ndarray, acc: IntFormat, amax: int
) -> tuple[np.ndarray, int]:
    """Saturating accumulation over ascending k, one narrowing per product, where a clamp is possible."""
    squeeze = a.ndim == 2
    if squeeze:
        a, w, exact = a[None], w[None], exact[None]
    # Per-element bound on every partial sum: (|A| @ |W|), computed in float64 with a safety margin
    # (a sum of non-negative terms has relative error below K * 2**-53); flagged elements may clamp.
    prefix = np.matmul(np.abs(a.astype(np.float64)), np.abs(w.astype(np.float64)))
    flagged = prefix > float(acc.max) * (1.0 - 1e-9)
    result = np.empty(exact.shape, dtype=np.int64)
    safe = ~flagged
    result[safe] = exact[safe].astype(np.int64) if exact.dtype == object else exact[safe]
    gi, mi, ni = np.nonzero(flagged)
    wmax = _max_abs(w)
    dtype = np.int64 if amax * wmax + max(-acc.min, acc.max) <= I64_MAX else object
    lo, hi = (acc.min, acc.max) if dtype is object else (np.int64(acc.min), np.int64(acc.max))
    k = a.shape[-1]
    clamped_total = 0
    for g in np.unique(gi):
        sel = gi == g
        m_all, n_all = mi[sel], ni[sel]
        a_t = np.ascontiguousarray(a[g].T).astype(dtype)  # [K, M]: row k holds A[:, k]
        w_g = np.ascontiguousarray(w[g]).astype(dtype)  # [K, N]
        for start in range(0, m_all.size, _SEQ_CHUNK):
            m_c, n_c = m_all[start : start + _SEQ_CHUNK], n_all[start : start + _SEQ_CHUNK]
            psum = np.zeros(m_c.size, dtype=dtype)
            clamped = np.zeros(m_c.size, dtype=bool)
            for kk in range(k):  # ascending k, one narrowing per product
                t = psum + a_t[kk].take(m_c) * w_g[kk].take(n_c)
                psum = np.minimum(np.maximum(t, lo), hi)
                clamped |= t != psum
            result[g, m_c, n_c] = psum.astype(np.int64)
            clamped_total += int(np.count_nonzero(clamped))
    return (result[0] if squeeze else result), clamped_total
