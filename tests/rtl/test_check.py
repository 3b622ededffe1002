"""python -m rtl_models.check: vector sets of hwsim on the project's array_top and on other sources."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import require_simulator
from test_array_top import CASES, _case, vector_sets, write_sets

from rtl_models.check import main
from rtl_models.sim import RTL_DIR


@pytest.fixture
def sets(tmp_path: Path) -> list[str]:
    _, hw, over, a_fmt, w_fmt, _ = _case(*CASES[0])  # 4x4, a8w8, acc24 wrap: sets that overflow
    return write_sets(vector_sets(hw, over, a_fmt, w_fmt)[:3], tmp_path / "sets")


@pytest.mark.rtl
def test_passes_on_array_top_and_fails_on_a_broken_pe(
    sets: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    require_simulator("icarus")
    assert main([*sets, "--sim", "icarus"]) == 0
    assert "PASS on icarus: 3 vector set(s)" in capsys.readouterr().out
    broken = [RTL_DIR / "broken/mac_pe_truncated.v", RTL_DIR / "systolic_array.v", RTL_DIR / "array_top.v"]
    assert main([*sets, "--sim", "icarus", "--sources", *map(str, broken)]) == 1
    out = capsys.readouterr().out
    assert "FAIL on icarus" in out and "outputs differ; first Y[m=" in out


def test_bad_input_exits_2(sets: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert "no manifest.json; pass a directory written by `hwsim vectors --out`" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(sets[0], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["parameters"]["ACC_BITS"] = 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main([sets[0], str(other)]) == 2
    assert "one run builds one design" in capsys.readouterr().err
    assert main([sets[0], "--sources", str(tmp_path / "nope.v")]) == 2
    assert "nope.v" in capsys.readouterr().err
