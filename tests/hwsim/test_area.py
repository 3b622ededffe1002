"""hwsim.area without Yosys: exact lookup in a hand-written synthesis table, per-PE scaling, clear errors.

The table below has the layout rtl_models.synth writes (tests/rtl/test_synth.py checks a real one);
its figures are made up so that every expected value is simple arithmetic: a 4 x 4 array of 1600
cells is 100 cells per PE, so a 16 x 8 configuration gets 12800.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hwsim.area import AreaEstimate, area_estimate
from hwsim.errors import UserError
from hwsim.hwconfig import HardwareConfig


def row(design: str, w: int, a: int, acc: int, ovf: str, cells: int, **extra: Any) -> dict[str, Any]:
    rows, cols = (1, 1) if design == "pe" else (4, 4)
    return {
        "design": design,
        "dataflow": "ws",
        "w_bits": w,
        "a_bits": a,
        "acc_bits": acc,
        "overflow": ovf,
        "a_signed": False,
        "rows": rows,
        "cols": cols,
        "top": "mac_pe" if design == "pe" else "systolic_array",
        "cells": cells,
        "flip_flops": cells // 10,
        "transistors": cells * 10,
        "longest_path": 30,
        **extra,
    }


TABLE = {
    "format": "qnn-verify-synth",
    "version": 1,
    "area_unit": "transistors",
    "results": [
        row("pe", 8, 4, 24, "wrap", 90),
        row("array", 8, 4, 24, "wrap", 1600),
        row("pe", 8, 4, 24, "saturate", 95),
        row("array", 8, 4, 24, "saturate", 1680),
        row("pe", 4, 4, 24, "wrap", 70),  # its array is missing
    ],
}


def hw(**overrides: Any) -> HardwareConfig:
    return HardwareConfig().with_overrides(**{"rows": 16, "cols": 8, "acc_bits": 24, **overrides})


@pytest.fixture
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(TABLE))
    return path


def test_exact_lookup_and_per_pe_scaling(table_file: Path) -> None:
    est = area_estimate(table_file, hw(), w_bits=8, a_bits=4)
    assert isinstance(est, AreaEstimate)
    assert (est.pe_cells, est.pe_flip_flops, est.pe_transistors, est.pe_longest_path) == (90, 9, 900, 30)
    # 1600 cells / 16 PEs * (16 * 8) PEs; flip-flops 160 / 16 * 128; transistors 16000 / 16 * 128
    assert (est.array_cells, est.array_flip_flops, est.array_transistors) == (12800, 1280, 128000)
    assert (est.rows, est.cols, est.synthesized_rows, est.synthesized_cols) == (16, 8, 4, 4)
    assert "scaled per PE from the synthesized 4x4 array to 16x8" in est.note
    sat = area_estimate(TABLE, hw(overflow="saturate"), w_bits=8, a_bits=4)  # the parsed table works too
    assert (sat.pe_cells, sat.array_cells) == (95, 1680 * 8)


def test_a_configuration_not_in_the_table_is_named(table_file: Path) -> None:
    with pytest.raises(
        UserError, match=r"the pe and array of ws w4a8 acc24 wrap is not in the table; it holds 3"
    ):
        area_estimate(table_file, hw(), w_bits=4, a_bits=8)  # w and a swapped: not the same PE
    with pytest.raises(UserError, match=r"the array of ws w4a4 acc24 wrap is not in the table"):
        area_estimate(table_file, hw(), w_bits=4, a_bits=4)
    with pytest.raises(UserError, match=r"acc16 wrap is not in the table"):
        area_estimate(table_file, hw(acc_bits=16), w_bits=8, a_bits=4)
    with pytest.raises(UserError, match=r"os w8a4 acc24 wrap is not in the table"):
        area_estimate(table_file, hw(dataflow="os"), w_bits=8, a_bits=4)
    with pytest.raises(UserError, match=r"\(signed activations\) is not in the table"):
        area_estimate(table_file, hw(), w_bits=8, a_bits=4, a_signed=True)


def test_a_file_that_is_no_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot be read"):
        area_estimate(tmp_path / "missing.json", hw(), w_bits=8, a_bits=4)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        area_estimate(bad, hw(), w_bits=8, a_bits=4)
    bad.write_text(json.dumps({**TABLE, "format": "other"}))
    with pytest.raises(UserError, match="not a qnn-verify-synth table version 1"):
        area_estimate(bad, hw(), w_bits=8, a_bits=4)
    broken = {
        **TABLE,
        "results": [
            row("pe", 8, 4, 24, "wrap", 90),
            {**row("array", 8, 4, 24, "wrap", 1600), "cells": "many"},
        ],
    }
    with pytest.raises(UserError, match="the array row of ws w8a4 acc24 wrap lacks whole numbers for cells"):
        area_estimate(broken, hw(), w_bits=8, a_bits=4)
