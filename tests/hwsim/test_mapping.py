"""hwsim.mapping: layer -> GEMM shapes and the folds each dataflow runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle, tiny_bundle
from hwsim.errors import UserError
from hwsim.hwconfig import ArrayConfig
from hwsim.mapping import (
    GemmShape,
    LayerShape,
    fold_count,
    fold_plan,
    gemm_shape,
    layer_from_node,
    layers_from_bundle,
    scalesim_gemm_shape,
)


def test_conv_gemm_shapes() -> None:
    conv = LayerShape("c", "conv2d", c_in=16, h=32, w=32, c_out=32, kh=3, kw=3, stride=(2, 2), padding=(1, 1))
    assert (conv.h_out, conv.w_out) == (16, 16)
    assert gemm_shape(conv) == GemmShape(m=256, k=144, n=32)
    assert gemm_shape(conv, batch=4) == GemmShape(m=1024, k=144, n=32)
    assert conv.macs() == 256 * 144 * 32
    # SCALE-Sim sizes the output of the pre-padded 34x34 map as ceil((34 - 3 + 2) / 2) = 17
    assert scalesim_gemm_shape(conv) == GemmShape(m=17 * 17, k=144, n=32)
    stride1 = LayerShape("c", "conv2d", c_in=16, h=32, w=32, c_out=16, kh=3, kw=3, padding=(1, 1))
    assert scalesim_gemm_shape(stride1) == gemm_shape(stride1) == GemmShape(1024, 144, 16)


def test_depthwise_and_linear() -> None:
    dw = LayerShape("dw", "conv2d", c_in=8, h=6, w=6, c_out=8, kh=3, kw=3, padding=(1, 1), groups=8)
    assert dw.depthwise
    assert gemm_shape(dw) == GemmShape(m=36, k=9, n=1, groups=8)
    assert fold_count(gemm_shape(dw), ArrayConfig(4, 4, "ws")) == 8 * 3
    fc = LayerShape("fc", "linear", c_in=64, h=1, w=1, c_out=10)
    assert gemm_shape(fc, batch=3) == GemmShape(m=3, k=64, n=10)


def test_bad_layers_are_rejected() -> None:
    with pytest.raises(UserError, match="groups=3 must divide"):
        LayerShape("x", "conv2d", c_in=4, h=4, w=4, c_out=4, groups=3)
    with pytest.raises(UserError, match="does not fit"):
        LayerShape("x", "conv2d", c_in=1, h=2, w=2, c_out=1, kh=3, kw=3)
    with pytest.raises(UserError, match="m=0"):
        GemmShape(0, 1, 1)


@given(
    m=st.integers(1, 40),
    k=st.integers(1, 40),
    n=st.integers(1, 40),
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    dataflow=st.sampled_from(["ws", "os", "is"]),
)
def test_folds_cover_every_mac_once_with_k_ascending(
    m: int, k: int, n: int, rows: int, cols: int, dataflow: str
) -> None:
    array = ArrayConfig(rows, cols, dataflow)
    gemm = GemmShape(m, k, n)
    folds = fold_plan(gemm, array)
    assert len(folds) == fold_count(gemm, array)
    covered = np.zeros((m, k, n), dtype=np.int64)
    last_k = np.full((m, n), -1)
    for f in folds:
        assert f.mt >= 1 and f.kt >= 1 and f.nt >= 1
        stationary = {"ws": (f.kt, f.nt), "os": (f.mt, f.nt), "is": (f.kt, f.mt)}[dataflow]
        assert stationary[0] <= rows and stationary[1] <= cols
        covered[f.m0 : f.m0 + f.mt, f.k0 : f.k0 + f.kt, f.n0 : f.n0 + f.nt] += 1
        # every output sees its K-folds in ascending order
        assert (last_k[f.m0 : f.m0 + f.mt, f.n0 : f.n0 + f.nt] < f.k0).all()
        last_k[f.m0 : f.m0 + f.mt, f.n0 : f.n0 + f.nt] = f.k0 + f.kt - 1
    assert (covered == 1).all()


def test_fold_order_per_dataflow() -> None:
    gemm = GemmShape(m=5, k=5, n=5)
    ws = [(f.n0, f.k0) for f in fold_plan(gemm, ArrayConfig(2, 3, "ws"))]
    assert ws == [(0, 0), (0, 2), (0, 4), (3, 0), (3, 2), (3, 4)]  # N-fold outer, K-fold inner
    os_ = [(f.n0, f.m0) for f in fold_plan(gemm, ArrayConfig(2, 3, "os"))]
    assert os_ == [(0, 0), (0, 2), (0, 4), (3, 0), (3, 2), (3, 4)]  # N-fold outer, M-fold inner
    is_ = [(f.m0, f.k0) for f in fold_plan(gemm, ArrayConfig(2, 3, "is"))]
    assert is_ == [(0, 0), (0, 2), (0, 4), (3, 0), (3, 2), (3, 4)]  # M-fold outer, K-fold inner


def test_layers_from_bundles(tmp_path: Path) -> None:
    tiny = load_bundle(tiny_bundle(tmp_path / "tiny"))
    shapes = {s.name: s for s in layers_from_bundle(tiny)}
    assert shapes["conv1"] == LayerShape("conv1", "conv2d", 2, 4, 4, 3, 3, 3, (1, 1), (1, 1), 1)
    assert shapes["conv2"].depthwise and gemm_shape(shapes["conv2"]) == GemmShape(16, 9, 1, 3)
    assert shapes["fc"] == LayerShape("fc", "linear", 3, 1, 1, 4)
    with pytest.raises(UserError, match="does not run on the MAC array"):
        layer_from_node(tiny.node("act1"), tiny)
    rn = load_bundle(random_resnet20_bundle(tmp_path / "rn", 4, 4))
    layers = layers_from_bundle(rn)
    assert len(layers) == 22
    assert sum(s.macs() for s in layers) == rn.total_macs
    for s in layers:
        assert s.macs() == rn.macs(s.name)
