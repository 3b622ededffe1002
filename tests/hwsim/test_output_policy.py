"""hwsim.output: no command deletes or replaces what it did not create; reports appear whole.

Every writing hwsim command is tried against outputs it must refuse (an unrelated directory or
file, a path below a file, /proc, its own input) and must exit 2 without a traceback, leaving what
was there byte for byte; re-running into its own output works, --force replaces but never an
input; two concurrent runs and SIGTERM/SIGINT leave one whole report; file names from data are
checked by one validator.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.bundle.synthetic import tiny_bundle
from hwsim.cli import main as hwsim_main
from hwsim.errors import UserError
from hwsim.hwconfig import HwConfigError, load_hw_config
from hwsim.output import (
    MARKER,
    REPORT,
    VECTORS,
    OutputError,
    UnsafeNameError,
    claim,
    publish_directory,
    safe_name,
)
from hwsim.report import Report, write_report, write_report_files

REPO = Path(__file__).resolve().parents[2]
HW = REPO / "configs" / "hw" / "ws_16x16.yaml"
Snapshot = Callable[[Path], dict[str, bytes | None]]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """``inputs/b``: a tiny bundle with 4 reference images; ``inputs/bundles/tiny``: one for the demo."""
    root = tmp_path / "inputs"
    tiny_bundle(root / "b", reference_images=4)
    tiny_bundle(root / "bundles" / "tiny", reference_images=4)
    (root / "model.onnx").write_bytes(b"not read: the output is refused first")
    return root


def argv(command: str, inputs: Path, out: Path) -> list[str]:
    """The command line of ``command`` writing to ``out`` (its inputs under ``inputs``)."""
    b, o = str(inputs / "b"), str(out)
    return {
        "compare": ["compare", b, "--report", o],
        "simulate": ["simulate", b, "--hw", str(HW), "--images", "2", "--report", o, "--no-progress"],
        "simulate-grid": [
            *("simulate", b, "--hw", str(HW), "--grid", "rows=4,8", "--images", "2"),
            *("--report", o, "--no-progress"),
        ],
        "sweep": [
            *("sweep", b, "--what", "acc_bits", "--range", "8..9", "--images", "2", "--jobs", "1"),
            *("--report", o, "--no-progress"),
        ],
        "vectors": ["vectors", b, "--layer", "conv1", "--hw", str(HW), "--out", o],
        "demo": [
            *("demo", "--bundles", str(inputs / "bundles"), "--out", o, "--jobs", "1", "--no-progress"),
            *(
                "--sim-images",
                "1",
                "--sweep-images",
                "2",
                "--acc-widths",
                "8,16",
                "--precision-sweep",
                "none",
            ),
        ],
        "import-qonnx": ["import-qonnx", str(inputs / "model.onnx"), "--out", o],
        "emulate": ["emulate", b, "--out", o],
        "export-qonnx": ["export-qonnx", b, "--out", o],
    }[command]


DIRECTORY_COMMANDS = ("compare", "simulate", "simulate-grid", "sweep", "vectors", "demo", "import-qonnx")
FILE_COMMANDS = ("emulate", "export-qonnx")


def bad_outputs(tmp_path: Path, inputs: Path, command: str) -> dict[str, Path]:
    """Outputs ``command`` must refuse, created under ``tmp_path``."""
    wants_directory = command in DIRECTORY_COMMANDS
    source = inputs / {"demo": "bundles", "import-qonnx": "model.onnx"}.get(command, "b")
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("someone's notes\n")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("someone's file\n")
    cases = {
        "a file" if wants_directory else "an unrelated file": a_file,
        "below a file": a_file / "sub",
        "under /proc": Path("/proc/hwsim-output-policy-test"),
        "the input": source,
        "inside the input": source / "out",
        "containing the input": inputs,
    }
    cases["an unrelated directory" if wants_directory else "a directory"] = unrelated
    return cases


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = hwsim_main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", DIRECTORY_COMMANDS + FILE_COMMANDS)
def test_every_command_refuses_outputs_it_did_not_create(
    command: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    cases = bad_outputs(tmp_path, inputs, command)
    for case, out in cases.items():
        before = snapshot(tmp_path)
        code, err = run_cli(argv(command, inputs, out), capsys)
        assert code == 2, (case, err)
        assert "Traceback" not in err and str(out) in err, (case, err)
        assert snapshot(tmp_path) == before, case  # nothing created, changed or deleted
        assert not Path("/proc/hwsim-output-policy-test").exists()
    # --force replaces what is not the command's own output, but never an input
    for case in ("the input", "containing the input", "inside the input"):
        before = snapshot(tmp_path)
        code, err = run_cli([*argv(command, inputs, cases[case]), "--force"], capsys)
        assert code == 2 and "input" in err, (case, err)
        assert snapshot(tmp_path) == before, case


@pytest.mark.parametrize("command", ["compare", "simulate-grid", "vectors", "emulate"])
def test_rerun_into_own_output_and_force(
    command: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    out = tmp_path / ("out.npz" if command in FILE_COMMANDS else "out")
    for _ in range(2):  # the second run replaces the first one's output
        code, err = run_cli(argv(command, inputs, out), capsys)
        assert code == 0, err
    first = snapshot(out)
    assert first
    if command not in FILE_COMMANDS:
        assert (out / MARKER).is_file()
    # an output of another kind is refused, then replaced with --force
    other = tmp_path / "other"
    other.mkdir()
    (other / MARKER).write_text("bundle\n")
    (other / "graph.yaml").write_text("not a report\n")
    target = other if command not in FILE_COMMANDS else other / "graph.yaml"
    before = snapshot(other)
    code, err = run_cli(argv(command, inputs, target), capsys)
    assert code == 2 and "--force" in err, err
    assert snapshot(other) == before
    code, err = run_cli([*argv(command, inputs, target), "--force"], capsys)
    assert code == 0, err
    assert snapshot(target) != before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no staging or set-aside directories


def test_a_design_space_report_is_not_replaced_by_a_single_report(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    out = tmp_path / "space"
    code, err = run_cli(argv("simulate-grid", inputs, out), capsys)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(names) == 2 and all((out / n / "report.json").is_file() for n in names)
    before = snapshot(out)
    code, err = run_cli(argv("simulate", inputs, out), capsys)
    assert code == 2 and "design-space report" in err, err
    assert snapshot(out) == before


def test_a_bundle_written_before_markers_stays_replaceable(tmp_path: Path) -> None:
    old = tiny_bundle(tmp_path / "b")
    (old / MARKER).unlink()  # as written by an earlier version
    from hwsim.bundle import BUNDLE

    assert claim(old, BUNDLE).path == old
    (old / "notes.txt").write_text("not a bundle file\n")
    with pytest.raises(OutputError, match="--force"):
        claim(old, BUNDLE)


def test_publishing_is_whole_and_an_interrupt_leaves_the_old_output(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    report = Report("hwsim test", {"run": 1}, [{"name": "a", "type": "conv2d"}], {}, [])
    out = write_report(report, tmp_path / "r", plots={})["report.json"].parent
    before = snapshot(out)
    for interrupt in (KeyboardInterrupt, RuntimeError):
        with pytest.raises(interrupt), publish_directory(out, REPORT) as staged:
            write_report_files(Report("hwsim test", {"run": 2}, [], {}, []), staged, plots={})
            assert staged.parent == out.parent and staged.name.startswith(".r.")
            raise interrupt()
        assert snapshot(out) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_a_write_that_fails_is_a_user_error_naming_the_path(tmp_path: Path) -> None:
    report = Report("hwsim test", {}, [], {}, [])
    long_name = "x" * 300 + ".csv"  # longer than any file system allows: the write itself fails
    with pytest.raises(OutputError, match=r"--out .*cannot write .*File name too long"):
        write_report(report, tmp_path / "r", plots={}, extra_files={long_name: "a"})
    assert list(tmp_path.iterdir()) == []


def test_vectors_cannot_replace_a_report(tmp_path: Path) -> None:
    out = tmp_path / "r"
    write_report(Report("hwsim test", {}, [], {}, []), out, plots={})
    with pytest.raises(OutputError, match="a report output, not a vectors"):
        claim(out, VECTORS)


# ------------------------------------------------------------------------------------------------
# Concurrent runs and signals, in real processes
# ------------------------------------------------------------------------------------------------


def hwsim_process(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hwsim.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def test_two_concurrent_compares_leave_one_whole_report(tmp_path: Path, inputs: Path) -> None:
    out = tmp_path / "R"
    for _ in range(3):
        procs = [hwsim_process([*argv("compare", inputs, out), "--acc-bits", bits]) for bits in ("6", "31")]
        results = [p.communicate(timeout=300) for p in procs]
        codes = [p.returncode for p in procs]
        # each run either published its report or (having lost a race it could not win) said why
        assert all(c in (0, 2) for c in codes) and 0 in codes, results
        for _, err in results:
            assert "Traceback" not in err, err
        doc = json.loads((out / "report.json").read_text())
        bits = doc["meta"]["acc_bits"]
        assert bits in (6, 31)
        assert re.search(rf"- \*\*acc_bits\*\*: {bits}\n", (out / "report.md").read_text())
        assert f"<li><b>acc_bits</b>: {bits}</li>" in (out / "report.html").read_text()
        csv_rows = (out / "layers.csv").read_text().splitlines()
        assert len(csv_rows) == len(doc["layers"]) + 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["R", "inputs"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_leaves_the_old_report_and_no_staging(
    signum: int, tmp_path: Path, inputs: Path, snapshot: Snapshot
) -> None:
    out = tmp_path / "space"
    grid = ["--grid", "rows=2,3,4,5,6,7,8,9", "cols=2,3,4,5,6,7,8,9"]  # 64 configurations: long enough
    small = hwsim_process([*argv("simulate-grid", inputs, out)])
    assert small.wait(timeout=300) == 0, small.communicate()
    before = snapshot(out)
    proc = hwsim_process([*argv("simulate", inputs, out)[:-1], *grid])  # argv ends in --no-progress
    deadline = time.monotonic() + 120
    journal = tmp_path / ".space.tasks"
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_dir() and any(journal.glob("task-*.npz")):  # a configuration was simulated
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert snapshot(out) == before
    # no staging left; the configurations simulated so far stay in the task journal (hwsim.journal;
    # resuming from it: tests/hwsim/test_execute.py)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".space.tasks", "inputs", "space"]
    assert "--resume runs only the rest" in err, err


# ------------------------------------------------------------------------------------------------
# Names from files
# ------------------------------------------------------------------------------------------------


@given(st.text(max_size=120) | st.sampled_from(["..", ".", "../x", "/abs", "a/b", "a\\b", "ok_name-1.2"]))
def test_safe_name_returns_one_plain_component_or_refuses(name: str) -> None:
    try:
        got = safe_name(name, "test field")
    except UnsafeNameError as err:
        assert "test field" in str(err) and len(str(err)) < 400
        return
    assert got == name and 1 <= len(got) <= 100
    assert Path(got).name == got and got not in (".", "..") and not got.startswith(".")
    assert not any(c in got for c in "/\\\0") and ".." not in got
    base = Path("/base")
    assert (base / got).parent == base


@pytest.mark.parametrize("name", ["../x", "/abs/path", "a/b", ".hidden", "x" * 101, "sp ace"])
def test_a_hardware_name_that_is_not_a_file_name_is_refused(name: str, tmp_path: Path) -> None:
    path = tmp_path / "hw.yaml"
    path.write_text(HW.read_text() + f"name: {json.dumps(name)}\n")
    with pytest.raises(HwConfigError, match=rf"{re.escape(str(path))}: field 'name'"):
        load_hw_config(path)


def test_simulate_with_a_traversing_hardware_name_writes_nothing(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text(HW.read_text() + 'name: "../escaped"\n')
    before = snapshot(tmp_path)
    out = tmp_path / "R"
    code, err = run_cli(
        ["simulate", str(inputs / "b"), "--hw", str(HW), str(evil), "--report", str(out)], capsys
    )
    assert code == 2 and "field 'name'" in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before


def test_user_errors_are_user_errors() -> None:
    assert issubclass(OutputError, UserError) and issubclass(UnsafeNameError, UserError)
