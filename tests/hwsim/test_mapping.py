"""hwsim.mapping: layer -> GEMM shapes and the folds each dataflow runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle, tiny_bundle
from hwsim.dataflows import DATAFLOWS, dataflow, register
from hwsim.dataflows import weight_stationary as ws_module
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
    name=st.sampled_from(list(DATAFLOWS)),
)
def test_folds_cover_every_mac_once_with_k_ascending(
    m: int, k: int, n: int, rows: int, cols: int, name: str
) -> None:
    array = ArrayConfig(rows, cols, name)
    flow = dataflow(name)
    gemm = GemmShape(m, k, n)
    folds = fold_plan(gemm, array)
    assert len(folds) == fold_count(gemm, array)
    assert [f.index for f in folds] == list(range(len(folds)))
    covered = np.zeros((m, k, n), dtype=np.int64)
    last_k = np.full((m, n), -1)
    for f in folds:
        assert f.mt >= 1 and f.kt >= 1 and f.nt >= 1
        size = {"m": f.mt, "k": f.kt, "n": f.nt}
        assert size[flow.rows_dim] <= rows and size[flow.cols_dim] <= cols  # the stationary tile fits
        assert size[flow.streamed_dim] == getattr(gemm, flow.streamed_dim)  # the streamed dim is whole
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


def test_the_three_dataflows_facts() -> None:
    # (rows_dim, cols_dim, outer_dim, stationary, streamed_dim), as the mapping docstring states them
    facts = {
        "ws": ("k", "n", "n", "W", "m"),
        "os": ("m", "n", "n", "Y", "k"),
        "is": ("k", "m", "m", "A", "n"),
    }
    for name, expected in facts.items():
        flow = dataflow(name)
        assert (flow.rows_dim, flow.cols_dim, flow.outer_dim, flow.stationary, flow.streamed_dim) == expected
    assert [name for name, flow in DATAFLOWS.items() if flow.rtl] == ["ws", "os", "is"]  # array_top.v
    assert all(flow.name == name for name, flow in DATAFLOWS.items())


def test_registry_lookup_and_registration() -> None:
    with pytest.raises(UserError, match="dataflow 'rs' is unknown; registered dataflows: ws, os, is"):
        dataflow("rs")
    with pytest.raises(UserError, match="is unknown"):
        dataflow(["ws"])  # type: ignore[arg-type]  # an unhashable YAML value
    with pytest.raises(ValueError, match="already registered"):
        register(DATAFLOWS["ws"])
    with pytest.raises(TypeError, match="expected a Dataflow"):
        register(ws_module)  # type: ignore[arg-type]  # the module, not its DATAFLOW
    base = ws_module.DATAFLOW
    bad = [
        ({"rows_dim": "x"}, "rows_dim='x' is not one of"),
        ({"cols_dim": "k"}, "rows_dim and cols_dim are both 'k'"),
        ({"outer_dim": "m"}, "outer_dim='m' must be a tiled dim"),
        ({"stationary": "A"}, "stationary='A' does not match the tiled dims 'k' x 'n'"),
        ({"name": "w s"}, "expected a short identifier"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            replace(base, **change)


def test_a_registered_dataflow_is_folded_by_its_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    # ws with the loop order swapped (K-fold outer): ArrayConfig accepts it, fold_plan follows it
    k_outer = replace(ws_module.DATAFLOW, name="ws_k_outer", outer_dim="k", rtl=False)
    monkeypatch.setitem(DATAFLOWS, k_outer.name, k_outer)
    gemm = GemmShape(m=5, k=5, n=5)
    order = [(f.k0, f.n0) for f in fold_plan(gemm, ArrayConfig(2, 3, "ws_k_outer"))]
    assert order == [(0, 0), (0, 3), (2, 0), (2, 3), (4, 0), (4, 3)]
    assert fold_count(GemmShape(5, 5, 5, groups=2), ArrayConfig(2, 3, "ws_k_outer")) == 2 * 6


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
