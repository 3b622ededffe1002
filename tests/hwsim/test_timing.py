"""hwsim.timing: closed-form cycles; SCALE-Sim-compatible mode against SCALE-Sim 3.0.0's own numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.dataflows import DATAFLOWS
from hwsim.hwconfig import ArrayConfig, HardwareConfig
from hwsim.mapping import GemmShape, LayerShape, fold_plan, gemm_shape
from hwsim.timing import (
    ZERO,
    cycles_to_us,
    fold_cycles,
    layer_timing,
    native_gemm_cycles,
    scalesim_gemm_cycles,
)

GOLDENS = Path(__file__).parent / "goldens" / "scalesim_resnet20.csv"
GOLDEN_ARRAYS = [(8, 8), (16, 16), (32, 32), (8, 32), (32, 8)]  # goldens/make_scalesim_goldens.py

# Registered dataflows that have no SCALE-Sim goldens, each with the reason (e.g. SCALE-Sim 3.0.0
# has no such dataflow). Every other registered dataflow must have them: a new dataflow fails
# test_every_registered_dataflow_has_goldens until its goldens are made or it is listed here.
WITHOUT_GOLDENS: dict[str, str] = {}
GOLDEN_DATAFLOWS = [name for name in DATAFLOWS if name not in WITHOUT_GOLDENS]

# The topology SCALE-Sim ran (goldens/make_scalesim_goldens.py): pre-padded input size, filter,
# channels, filters, stride. A 3x3 conv here had padding 1 on a map 2 smaller; 1x1 convs none.
TOPOLOGY = {
    "conv1": (34, 3, 3, 16, 1),
    **{f"layer1.{b}.conv{i}": (34, 3, 16, 16, 1) for b in range(3) for i in (1, 2)},
    "layer2.0.conv1": (34, 3, 16, 32, 2),
    "layer2.0.conv2": (18, 3, 32, 32, 1),
    "layer2.0.shortcut.0": (32, 1, 16, 32, 2),
    **{f"layer2.{b}.conv{i}": (18, 3, 32, 32, 1) for b in (1, 2) for i in (1, 2)},
    "layer3.0.conv1": (18, 3, 32, 64, 2),
    "layer3.0.conv2": (10, 3, 64, 64, 1),
    "layer3.0.shortcut.0": (16, 1, 32, 64, 2),
    **{f"layer3.{b}.conv{i}": (10, 3, 64, 64, 1) for b in (1, 2) for i in (1, 2)},
    "fc": (1, 1, 64, 10, 1),
}


def layer(name: str) -> LayerShape:
    size, k, c_in, c_out, s = TOPOLOGY[name]
    pad = (k - 1) // 2
    return LayerShape(name, "conv2d", c_in, size - 2 * pad, size - 2 * pad, c_out, k, k, (s, s), (pad, pad))


def golden_rows() -> list[dict[str, str]]:
    with GOLDENS.open() as f:
        return list(csv.DictReader(f))


def test_every_registered_dataflow_has_goldens() -> None:
    in_goldens = {r["dataflow"] for r in golden_rows()}
    missing = [name for name in GOLDEN_DATAFLOWS if name not in in_goldens]
    assert not missing, (
        f"no SCALE-Sim goldens for dataflow(s) {missing}: add them to goldens/make_scalesim_goldens.py "
        "and regenerate scalesim_resnet20.csv, or list them in WITHOUT_GOLDENS with the reason"
    )
    assert in_goldens == set(GOLDEN_DATAFLOWS), "goldens for a dataflow that is not registered"
    stale = [name for name in WITHOUT_GOLDENS if name not in DATAFLOWS or name in in_goldens]
    assert not stale, f"WITHOUT_GOLDENS lists {stale}, which are unregistered or have goldens"


def test_goldens_cover_the_required_configurations() -> None:
    rows = golden_rows()
    configs = {(int(r["rows"]), int(r["cols"]), r["dataflow"]) for r in rows}
    for shape in [(8, 8), (16, 16), (32, 32), (8, 32)]:
        for df in GOLDEN_DATAFLOWS:
            assert (*shape, df) in configs
    assert {r["layer"] for r in rows} == set(TOPOLOGY)
    assert len(rows) == len(GOLDEN_ARRAYS) * len(GOLDEN_DATAFLOWS) * len(TOPOLOGY)  # 5 * 3 * 22
    assert all(int(r["stall_cycles"]) == 0 for r in rows), "the goldens are for runs without memory stalls"


@pytest.mark.parametrize("dataflow", GOLDEN_DATAFLOWS)
def test_scalesim_mode_matches_scalesim_exactly(dataflow: str) -> None:
    mismatches = []
    rows = [r for r in golden_rows() if r["dataflow"] == dataflow]
    assert len(rows) == len(GOLDEN_ARRAYS) * len(TOPOLOGY), f"{dataflow}: no golden per array and layer"
    assert {(int(r["rows"]), int(r["cols"])) for r in rows} == set(GOLDEN_ARRAYS)
    for r in rows:
        hw = HardwareConfig(
            array=ArrayConfig(int(r["rows"]), int(r["cols"]), r["dataflow"]), timing="scalesim"
        )
        ours = layer_timing(layer(r["layer"]), hw).total
        if ours != int(r["total_cycles"]):
            mismatches.append((r["rows"], r["cols"], r["dataflow"], r["layer"], ours, r["total_cycles"]))
    assert mismatches == []


def test_scalesim_formula_by_hand() -> None:
    # ws on 4x4: K = 9 -> 3 row folds, N = 5 -> 2 col folds; each fold M + 2R + C - 2 = 10 + 8 + 4 - 2 = 20
    hw = HardwareConfig(array=ArrayConfig(4, 4, "ws"), timing="scalesim")
    assert scalesim_gemm_cycles(GemmShape(10, 9, 5), hw).total == 6 * 20 - 1
    # os: ceil(10/4) * ceil(5/4) = 6 folds of K + R + C - 2 = 15
    # is: ceil(9/4) * ceil(10/4) = 9 folds of N + 2R + C - 2 = 15
    assert (
        scalesim_gemm_cycles(GemmShape(10, 9, 5), HardwareConfig(array=ArrayConfig(4, 4, "os"))).total
        == 6 * 15 - 1
    )
    assert (
        scalesim_gemm_cycles(GemmShape(10, 9, 5), HardwareConfig(array=ArrayConfig(4, 4, "is"))).total
        == 9 * 15 - 1
    )
    # grouped GEMMs are separate SCALE-Sim layers
    assert scalesim_gemm_cycles(GemmShape(10, 9, 1, groups=3), hw).total == 3 * (3 * 20 - 1)


@given(
    m=st.integers(1, 300),
    k=st.integers(1, 300),
    n=st.integers(1, 70),
    groups=st.integers(1, 3),
    rows=st.integers(1, 33),
    cols=st.integers(1, 33),
    dataflow=st.sampled_from(list(DATAFLOWS)),
)
def test_native_closed_form_is_the_sum_over_folds(
    m: int, k: int, n: int, groups: int, rows: int, cols: int, dataflow: str
) -> None:
    hw = HardwareConfig(array=ArrayConfig(rows, cols, dataflow))
    gemm = GemmShape(m, k, n, groups)
    total = ZERO
    for fold in fold_plan(gemm, hw.array):
        cyc = fold_cycles(fold, gemm, hw)
        assert min(cyc.compute, cyc.preload, cyc.fill_drain) >= 0
        total = total + cyc
    assert native_gemm_cycles(gemm, hw) == total.scaled(groups)


def test_ws_native_matches_docs_dataflow() -> None:
    # docs/dataflow.md: a fold costs R + (M + R + nt - 2); K = 144 on 16 rows: 9 K-folds; N = 16: one N-fold
    hw = HardwareConfig()
    conv = LayerShape("l", "conv2d", 16, 32, 32, 16, 3, 3, (1, 1), (1, 1))
    t = layer_timing(conv, hw)
    assert t.total == 9 * (16 + 1024 + 16 + 16 - 2)
    assert (t.cycles.compute, t.cycles.preload, t.cycles.fill_drain) == (9 * 1024, 9 * 16, 9 * 30)
    assert t.folds == 9
    assert t.utilization == pytest.approx(conv.macs() / (t.total * 256))
    assert layer_timing(conv, hw, batch=2).cycles.compute == 2 * 9 * 1024
    assert cycles_to_us(500, hw) == 1.0


def test_native_differs_from_scalesim_where_documented() -> None:
    # stride 2 on 32x32: native M = 16*16, SCALE-Sim M = 17*17; partial column fold: native nt, SCALE-Sim C
    conv = LayerShape("l", "conv2d", 16, 32, 32, 8, 3, 3, (2, 2), (1, 1))
    native = layer_timing(conv, HardwareConfig()).total
    scalesim = layer_timing(conv, HardwareConfig(timing="scalesim")).total
    assert gemm_shape(conv).m == 256
    assert native == 9 * (16 + 256 + 16 + 8 - 2)
    assert scalesim == 9 * (289 + 32 + 16 - 2) - 1
