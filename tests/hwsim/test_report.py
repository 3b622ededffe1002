"""hwsim.report: the files of a run report, written atomically, with strict JSON and embedded PNGs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from hwsim.atomic import write_atomic
from hwsim.output import MARKER
from hwsim.report import Report, plot_error_per_layer, write_report


def sample_report() -> Report:
    rows = [
        {
            "name": "conv1",
            "type": "conv2d",
            "macs": 442368,
            "w_bits": 4,
            "a_bits": 8,
            "acc_bits": 32,
            "overflow_count": 0,
            "peak_acc_abs": 7000,
            "min_safe_acc_bits": 15,
            "min_safe_acc_bits_observed": 14,
            "mismatch_rate": 0.0,
            "max_abs_err_lsb": 0,
            "mean_abs_err_lsb": 0.0,
            "sqnr_db": math.inf,
            "cycles": None,
            "mac_nodes": ["conv1.conv"],
            "extra_field": "kept",
        },
        {
            "name": "layer1.0.relu2",
            "type": "conv2d+add",
            "macs": 2359296,
            "w_bits": 4,
            "a_bits": 4,
            "acc_bits": 32,
            "overflow_count": 12,
            "peak_acc_abs": 900,
            "min_safe_acc_bits": 14,
            "min_safe_acc_bits_observed": 11,
            "mismatch_rate": 0.015,
            "max_abs_err_lsb": 1,
            "mean_abs_err_lsb": 0.015,
            "sqnr_db": 41.5,
            "cycles": None,
            "mac_nodes": ["layer1.0.conv2"],
        },
    ]
    return Report(
        "test report",
        {"bundle": "b", "acc_bits": 32},
        rows,
        {"top1_reference": 0.9, "top1_emulator": 0.89, "top1_agreement": 0.99, "nan_total": math.nan},
        ["a note"],
    )


def test_write_report_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    written = write_report(sample_report(), out)
    assert set(written) == {
        "report.json",
        "layers.csv",
        "report.md",
        "report.html",
        "error_per_layer.png",
        "accumulator_bits.png",
    }
    # no temporary files left behind; the marker names the kind of output (hwsim.output)
    assert sorted(p.name for p in out.iterdir()) == sorted([*written, MARKER])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    doc = json.loads(
        (out / "report.json").read_text(),
        parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(f"non-standard JSON constant {c}")),
    )
    assert doc["layers"][0]["sqnr_db"] is None and doc["layers"][1]["sqnr_db"] == 41.5
    assert doc["totals"]["nan_total"] is None and doc["totals"]["top1_agreement"] == 0.99
    with (out / "layers.csv").open() as f:
        table = list(csv.reader(f))
    header = table[0]
    assert header == [*sample_report().rows[0]]  # the rows' keys, in the order they first appear
    assert header[-1] == "extra_field" and table[1][header.index("sqnr_db")] == "inf"
    md = (out / "report.md").read_text()
    assert "| name | type | macs |" in md and "![error_per_layer.png](error_per_layer.png)" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and 'src="http' not in page and "a note" in page
    for png in ("error_per_layer.png", "accumulator_bits.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_extra_plots_plug_in(tmp_path: Path) -> None:
    calls = []

    def custom(rows: list, path: Path, title: str) -> Path:
        calls.append(len(rows))
        return plot_error_per_layer(rows, path, title + " (custom)")

    written = write_report(sample_report(), tmp_path, plots={"custom.png": custom})
    assert calls == [2] and "custom.png" in written and "error_per_layer.png" not in written


def test_rewriting_replaces_files(tmp_path: Path) -> None:
    report = sample_report()
    write_report(report, tmp_path)
    report.rows[1]["overflow_count"] = 99
    write_report(report, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["layers"][1]["overflow_count"] == 99


def test_extra_files_are_written_with_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    extras = {"points.csv": "layer,bits\nconv1,4\n", "blob.bin": b"\x00\x01\xff"}
    written = write_report(sample_report(), out, plots={}, extra_files=extras)
    assert written["points.csv"] == out / "points.csv" and written["blob.bin"] == out / "blob.bin"
    assert (out / "points.csv").read_text() == "layer,bits\nconv1,4\n"
    assert (out / "blob.bin").read_bytes() == b"\x00\x01\xff"
    # no temporary files left behind; the marker names the kind of output (hwsim.output)
    assert sorted(p.name for p in out.iterdir()) == sorted([*written, MARKER])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    for bad in ("../escape.csv", "sub/points.csv", "", "report.json", "error_per_layer.png"):
        with pytest.raises(ValueError, match="extra_files"):
            write_report(sample_report(), tmp_path / "bad", extra_files={bad: "x"})
    assert not (tmp_path / "bad").exists() and not (tmp_path / "escape.csv").exists()


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "table.csv"
    assert write_atomic(target, "first\n") == target and target.read_text() == "first\n"
    write_atomic(str(target), b"second\n")
    assert target.read_bytes() == b"second\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]
