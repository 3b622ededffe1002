"""rtl_models.synth: Yosys' figures of the PE move the right way with the widths, its flip-flops are
the registers mac_pe.v declares, the table round-trips into hwsim.area, and bad input exits 2.

Yosys missing is a failure with the fix (as a missing simulator is, tests/rtl/conftest.py).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hwsim.area import area_estimate
from hwsim.dataflows import DATAFLOWS
from hwsim.errors import UserError
from hwsim.hwconfig import HardwareConfig
from rtl_models import synth
from rtl_models.sim import RTL_DIR
from rtl_models.synth import RtlTarget, SynthError, SynthPoint, SynthTable, run_grid

pytestmark = pytest.mark.rtl

PE_WIDTHS = ((4, 4), (8, 8))  # (w_bits, a_bits)
ACC_BITS = 24


def require_yosys() -> None:
    if shutil.which("yosys") is None:
        pytest.fail(
            "Yosys is not installed; run scripts/setup.sh --rtl (Debian/Ubuntu: apt-get install yosys)"
        )


@pytest.fixture(scope="module")
def pe_results() -> dict[tuple[int, int, str], synth.SynthResult]:
    """The ws PE at two widths, wrapping and saturating (four Yosys runs, about 3 s)."""
    require_yosys()
    points = [
        SynthPoint("pe", "ws", w, a, ACC_BITS, ovf) for w, a in PE_WIDTHS for ovf in ("wrap", "saturate")
    ]
    return {
        (p.w_bits, p.a_bits, p.overflow): r for p, r in zip(points, run_grid(points, jobs=2), strict=True)
    }


def test_more_bits_more_cells(pe_results: dict[tuple[int, int, str], synth.SynthResult]) -> None:
    for ovf in ("wrap", "saturate"):
        small, large = pe_results[(4, 4, ovf)], pe_results[(8, 8, ovf)]
        assert large.cells > small.cells, ovf
        assert large.transistors > small.transistors, ovf
        assert large.flip_flops > small.flip_flops, ovf


def test_saturate_costs_more_than_wrap(pe_results: dict[tuple[int, int, str], synth.SynthResult]) -> None:
    # measured: the saturating PE has the clamp multiplexer on top of the same overflow detection
    for w, a in PE_WIDTHS:
        wrap, sat = pe_results[(w, a, "wrap")], pe_results[(w, a, "saturate")]
        assert sat.cells > wrap.cells, (w, a)
        assert sat.transistors > wrap.transistors, (w, a)
        assert sat.flip_flops == wrap.flip_flops, (w, a)


def test_pe_flip_flops_are_the_declared_registers(
    pe_results: dict[tuple[int, int, str], synth.SynthResult],
) -> None:
    # mac_pe.v (PSUM_REG=1) registers w_reg (W_BITS), a_out (A_BITS), en_out, psum_q (ACC_BITS), ovf
    # and ovf_count (CNT_BITS, its default)
    source = (RTL_DIR / "mac_pe.v").read_text()
    found = re.search(r"parameter\s+integer\s+CNT_BITS\s*=\s*(\d+)", source)
    assert found is not None
    cnt_bits = int(found.group(1))
    for (w, a, ovf), result in pe_results.items():
        assert result.flip_flops == w + a + 1 + ACC_BITS + 1 + cnt_bits, (w, a, ovf)
        assert result.longest_path > 0
        assert result.cells == sum(n for _, n in result.cells_by_type)


def test_input_stationary_swaps_the_operands() -> None:
    point = SynthPoint("array", "is", w_bits=2, a_bits=8, acc_bits=16, overflow="wrap", rows=4, cols=4)
    params = point.parameters()
    assert point.top() == "systolic_array"
    assert (params["A_BITS"], params["W_BITS"], params["A_SIGNED"], params["W_SIGNED"]) == (2, 8, 1, 0)
    ws = SynthPoint("array", "ws", w_bits=2, a_bits=8, acc_bits=16, overflow="wrap", rows=4, cols=4)
    assert (ws.parameters()["A_BITS"], ws.parameters()["W_BITS"], ws.parameters()["A_SIGNED"]) == (8, 2, 0)


def test_every_rtl_dataflow_is_synthesized_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert synth.rtl_dataflows() == tuple(name for name, flow in DATAFLOWS.items() if flow.rtl)
    monkeypatch.setattr(synth, "RTL_TARGETS", {k: v for k, v in synth.RTL_TARGETS.items() if k != "ws"})
    with pytest.raises(SynthError, match="'ws' is marked rtl.*names no Verilog top"):
        synth.rtl_dataflows()
    targets = {**synth.RTL_TARGETS, "ws": RtlTarget("mac_pe", "no_such_array")}
    monkeypatch.setattr(synth, "RTL_TARGETS", targets)
    with pytest.raises(
        SynthError, match="'ws': its array top no_such_array .* is not in rtl_models.sim.TOPS"
    ):
        synth.rtl_dataflows()
    targets = {**synth.RTL_TARGETS, "ws": RtlTarget("no_such_pe", "systolic_array")}
    monkeypatch.setattr(synth, "RTL_TARGETS", targets)
    with pytest.raises(
        SynthError, match="'ws': its PE top no_such_pe .* is not a module of systolic_array's"
    ):
        synth.rtl_dataflows()


def test_table_round_trips_into_hwsim_area(tmp_path: Path) -> None:
    require_yosys()
    points = [
        SynthPoint("pe", "ws", 2, 2, 16, "wrap"),
        SynthPoint("array", "ws", 2, 2, 16, "wrap", rows=2, cols=2),
    ]
    pe, arr = run_grid(points, jobs=2)
    table = SynthTable("Yosys test", "test", (pe, arr), wall_s=1.0, jobs=2, array_size=(2, 2))
    files = synth.write_table(table, tmp_path)
    assert [f.name for f in files] == ["synth.json", "synth.csv", "synth.md", "synth.png"]
    loaded = SynthTable.from_json(json.loads(files[0].read_text()))
    assert [r.row() for r in loaded.results] == [r.row() for r in table.results]
    hw = HardwareConfig().with_overrides(rows=8, cols=6, dataflow="ws", acc_bits=16, overflow="wrap")
    est = area_estimate(files[0], hw, w_bits=2, a_bits=2)
    assert (est.pe_cells, est.pe_flip_flops, est.pe_transistors) == (pe.cells, pe.flip_flops, pe.transistors)
    assert est.array_cells == round(arr.cells * 48 / 4)
    assert est.array_transistors == round(arr.transistors * 48 / 4)
    assert (est.synthesized_rows, est.synthesized_cols, est.rows, est.cols) == (2, 2, 8, 6)
    assert "scaled per PE" in est.note
    with pytest.raises(UserError, match="ws w4a2 acc16 wrap is not in the table"):
        area_estimate(files[0], hw, w_bits=4, a_bits=2)


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert synth.main(["--out", out, "--jobs", "0"]) == 2
    assert "--jobs '0': expected a whole number >= 1" in capsys.readouterr().err
    assert synth.main(["--out", out, "--grid", "huge"]) == 2
    assert "--grid 'huge': expected one of small, full" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert synth.main(["--out", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtl_models.synth: error: --out") and "Traceback" not in err
    assert (foreign / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()
