"""The verification kit on real simulators: foreign RTL, a broken variant, bad input, a hang, our array.

The foreign design is cocotb's matrix_multiplier example (rtl_models/third_party/, unsigned-only
operands: signed codes travel with zero points, 16-bit accumulators that wrap), checked on layers of
the bundled a4w4 ResNet20 (the first conv, the 1x1 strided shortcut conv, the fc) with stress on.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import require_simulator

from rtl_models import check
from rtl_models.sim import SIMULATORS

pytestmark = pytest.mark.rtl

REPO = Path(__file__).resolve().parents[2]
DESIGNS = REPO / "rtl_models" / "kit" / "designs"
BUNDLE = REPO / "hwsim" / "pretrained" / "bundles" / "dorefa_a4w4"
MM = DESIGNS / "cocotb_matrix_multiplier.yaml"


def _variant(tmp_path: Path, **changes: object) -> Path:
    """A copy of the matrix multiplier's description with some fields changed, beside the original's paths."""
    data = yaml.safe_load(MM.read_text())
    data["sources"] = [str((DESIGNS / s).resolve()) for s in data["sources"]]
    data.update(changes)
    path = tmp_path / "dut.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(
    args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("RTL_KIT_BUILD", str(tmp_path / "build"))
    status = check.main(args)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("sim", SIMULATORS)
def test_foreign_parallel_design_on_real_layers(sim, monkeypatch, tmp_path, capsys) -> None:
    require_simulator(sim)
    status, out, err = _run(
        [
            "--dut",
            str(MM),
            "--bundle",
            str(BUNDLE),
            "--layer",
            "conv1,layer2.0.shortcut.0",
            "--layer",
            "fc",
            "--rows",
            "8",
            "--stress",
            "--seed",
            "7",
            "--random",
            "6",
            "--sim",
            sim,
        ],
        monkeypatch,
        tmp_path,
        capsys,
    )
    assert status == 0, out + err
    assert re.search(r"conv1 +32  items ==, 4 K block\(s\) added up == emulator's layer", out), out
    assert re.search(r"layer2.0.shortcut.0 +32  items ==, 2 K block", out), out
    assert re.search(r"fc +24  items ==, 8 K block", out), out
    assert f"PASS on {sim}: matrix_multiplier, 94 work items (stress on, seed 7)" in out
    assert "cycles: every item within 0 % of the formula model" in out


def test_a_k_off_by_one_design_is_caught_naming_the_element(monkeypatch, tmp_path, capsys) -> None:
    broken = _variant(
        tmp_path, sources=[str(REPO / "rtl_models" / "broken" / "matrix_multiplier_k_short.sv")]
    )
    status, out, _ = _run(
        ["--dut", str(broken), "--bundle", str(BUNDLE), "--layer", "fc", "--seed", "1", "--sim", "icarus"],
        monkeypatch,
        tmp_path,
        capsys,
    )
    assert status == 1
    assert (
        "FAIL on icarus: matrix_multiplier (stress off, seed 1; replay with --seed 1): layer fc, item 0"
        in out
    )
    assert "Y[m=0, n=0] of the layer (element [0, 0] of the item) on c_o, lane 0, cycle" in out
    assert "expected" in out and "actual" in out


def test_a_design_that_never_answers_is_a_hang_not_a_traceback(monkeypatch, tmp_path, capsys) -> None:
    stuck = _variant(tmp_path, out_valid="reset_i", timeout_cycles=50)  # a result strobe that never rises
    status, out, err = _run(
        ["--dut", str(stuck), "--bundle", str(BUNDLE), "--layer", "fc", "--seed", "1", "--sim", "icarus"],
        monkeypatch,
        tmp_path,
        capsys,
    )
    assert status == 1
    assert "no progress for 50 cycles (timeout_cycles 50)" in out
    assert "waiting for layer fc, item 0 (rows 0..0, K 0..7, columns 0..3): reset_i (the result)" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"in_valid": "start_i"}, "names ports that matrix_multiplier lacks: in_valid = start_i"),
        (
            {"parameters": {"DATA_WIDTH": 11, "DEPTH": 3}},
            "parameters DEPTH: module matrix_multiplier declares no",
        ),
        ({"protocol": "wishbone"}, "protocol: 'wishbone' is not one of stream, parallel, buffers"),
    ],
)
def test_bad_input_is_exit_2_with_one_message(changes, message, monkeypatch, tmp_path, capsys) -> None:
    status, out, err = _run(
        [
            "--dut",
            str(_variant(tmp_path, **changes)),
            "--bundle",
            str(BUNDLE),
            "--layer",
            "fc",
            "--sim",
            "icarus",
        ],
        monkeypatch,
        tmp_path,
        capsys,
    )
    assert status == 2, out + err
    assert message in err and "Traceback" not in err


def test_a_build_failure_is_exit_2_with_the_compilers_first_error(monkeypatch, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.sv"
    bad.write_text(
        "module matrix_multiplier #(parameter int DATA_WIDTH = 8)(input clk_i);\n  wire x = ;\nendmodule\n"
    )
    status, _, err = _run(
        [
            "--dut",
            str(_variant(tmp_path, sources=[str(bad)], parameters={})),
            "--bundle",
            str(BUNDLE),
            "--layer",
            "fc",
            "--sim",
            "icarus",
        ],
        monkeypatch,
        tmp_path,
        capsys,
    )
    assert status == 2
    assert "icarus could not build matrix_multiplier:" in err and "bad.sv:2" in err


def _array_description(tmp_path: Path, flow: str) -> Path:
    """The project's own array_top as the kit sees it: buffers, hwsim's timing enforced, overflow counted."""
    from hwsim.dataflows import DATAFLOWS

    rtl = REPO / "rtl_models"
    files = [
        "mac_pe.v",
        "systolic_array.v",
        "array_ws.v",
        "os_pe.v",
        "os_array.v",
        "array_os.v",
        "array_top.v",
    ]
    data = {
        "top": "array_top",
        "sources": [str(rtl / f) for f in files],
        "parameters": {
            "ROWS": 4,
            "COLS": 4,
            "A_BITS": 4,
            "W_BITS": 5,
            "ACC_BITS": 12,
            "A_SIGNED": 0,
            "W_SIGNED": 1,
            "SATURATE": 0,
            "DATAFLOW": list(DATAFLOWS).index(flow),
        },
        "clock": {"port": "clk"},
        "reset": {"port": "rst", "active": "high", "kind": "sync"},
        "gemm": {
            "a": {"bits": 4, "signed": False},
            "w": {"bits": 5, "signed": True},
            "acc_bits": 12,
            "overflow": "wrap",
            "tile": {"m": None, "k": None, "n": None},
        },
        "protocol": "buffers",
        "array": {"rows": 4, "cols": 4, "dataflow": flow},
        "compare": {"cycles": {"model": "hwsim", "enforce": True}, "overflow_counter": "ovf_count"},
    }
    path = tmp_path / f"array_top_{flow}.yaml"
    path.write_text(yaml.safe_dump(data, default_flow_style=None, width=110))
    return path


@pytest.mark.parametrize("flow", ["ws", "os", "is"])
def test_the_projects_own_array_through_the_kit(flow, monkeypatch, tmp_path, capsys) -> None:
    status, out, err = _run(
        [
            "--dut",
            str(_array_description(tmp_path, flow)),
            "--bundle",
            str(BUNDLE),
            "--layer",
            "layer1.0.conv1",
            "--rows",
            "6",
            "--random",
            "3",
            "--seed",
            "2",
            "--stress",
            "--sim",
            "icarus",
        ],
        monkeypatch,
        tmp_path,
        capsys,
    )
    assert status == 0, out + err
    assert re.search(r"layer1.0.conv1 +1  items ==, 1 K block\(s\) added up == emulator's layer", out), out
    assert "cycles: every item within 0 % of the hwsim model" in out
    assert "PASS on icarus: array_top, 4 work items" in out
