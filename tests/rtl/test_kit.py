"""The verification kit on real simulators: foreign RTL, broken variants, bad input, a hang, our array.

Two designs by other authors (rtl_models/third_party/), each on layers of the bundled a4w4 ResNet20
(the first conv, the 1x1 strided shortcut conv, the fc) with stress on:

* cocotb's matrix_multiplier example: parallel load, unsigned-only operands (signed codes travel
  with zero points), 16-bit accumulators that wrap; Icarus and Verilator;
* FINN's matrix-vector unit: three AXI-Stream channels with backpressure; Verilator (Icarus 11
  cannot compile it). Its output queue overflows when MW == SIMD and the output stalls (docs/rtl.md):
  that configuration is kept as an expected failure the kit must find.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import require_simulator

from rtl_models import check
from rtl_models.sim import SIMULATORS, sources_for

pytestmark = pytest.mark.rtl

REPO = Path(__file__).resolve().parents[2]
DESIGNS = REPO / "rtl_models" / "kit" / "designs"
BUNDLE = REPO / "hwsim" / "pretrained" / "bundles" / "dorefa_a4w4"
MM = DESIGNS / "cocotb_matrix_multiplier.yaml"
FINN = DESIGNS / "finn_mvu.yaml"
BROKEN = REPO / "rtl_models" / "broken"


def _variant(tmp_path: Path, base: Path = MM, **changes: object) -> Path:
    """A copy of a description with some fields changed (paths made absolute, so it may live elsewhere)."""
    data = yaml.safe_load(base.read_text())
    data["sources"] = [str((DESIGNS / s).resolve()) for s in data["sources"]]
    if "prepare" in data:
        data["prepare"] = str((DESIGNS / data["prepare"]).resolve())
    extra_sources = changes.pop("extra_sources", [])
    data["sources"] += [str(x) for x in extra_sources]  # type: ignore[union-attr]
    data.update(changes)
    path = tmp_path / "dut.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def kit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``python -m rtl_models.check`` in this process, building under tmp_path: (status, stdout, stderr)."""
    monkeypatch.setenv("RTL_KIT_BUILD", str(tmp_path / "build"))

    def run(dut: object, *args: object, sim: str = "icarus", bundle: object = BUNDLE) -> tuple[int, str, str]:
        """``--dut DUT [--bundle BUNDLE] ARGS --sim SIM``."""
        head = ["--dut", dut] + ([] if bundle is None else ["--bundle", bundle])
        status = check.main([str(a) for a in [*head, *args, "--sim", sim]])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


@pytest.mark.parametrize("sim", SIMULATORS)
def test_foreign_parallel_design_on_real_layers(sim, kit) -> None:
    require_simulator(sim)
    status, out, err = kit(
        str(MM),
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
        sim=sim,
    )
    assert status == 0, out + err
    assert re.search(r"conv1 +32  items ==, 4 K block\(s\) added up == emulator's layer", out), out
    assert re.search(r"layer2.0.shortcut.0 +32  items ==, 2 K block", out), out
    assert re.search(r"fc +24  items ==, 8 K block", out), out
    assert f"PASS on {sim}: matrix_multiplier, 94 work items (stress on (valid pause 0.35," in out
    assert "cycles: every item within 0 % of the formula model" in out


@pytest.mark.parametrize("defines", [{}, {"SIGN_FLIP": 1}], ids=["k_short", "sign_flip"])
def test_a_broken_multiplier_is_caught_naming_the_element(defines, tmp_path, kit) -> None:
    broken = _variant(tmp_path, sources=[str(BROKEN / "matrix_multiplier_broken.sv")], defines=defines)
    status, out, _ = kit(str(broken), "--layer", "fc", "--seed", "1")
    assert status == 1
    assert (
        "FAIL on icarus: matrix_multiplier (stress off, seed 1; replay with --seed 1): layer fc, item 0"
        in out
    )
    assert "Y[m=0, n=0] of the layer (element [0, 0] of the item) on c_o, lane 0, cycle" in out
    assert "expected" in out and "actual" in out


def test_a_design_that_never_answers_is_a_hang_not_a_traceback(tmp_path, kit) -> None:
    stuck = _variant(tmp_path, out_valid="reset_i", timeout_cycles=50)  # a result strobe that never rises
    status, out, err = kit(str(stuck), "--layer", "fc", "--seed", "1")
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
def test_bad_input_is_exit_2_with_one_message(changes, message, tmp_path, kit) -> None:
    status, out, err = kit(_variant(tmp_path, **changes), "--layer", "fc")
    assert status == 2, out + err
    assert message in err and "Traceback" not in err


def test_a_build_failure_is_exit_2_with_the_compilers_first_error(tmp_path, kit) -> None:
    bad = tmp_path / "bad.sv"
    bad.write_text(
        "module matrix_multiplier #(parameter int DATA_WIDTH = 8)(input clk_i);\n  wire x = ;\nendmodule\n"
    )
    status, _, err = kit(str(_variant(tmp_path, sources=[str(bad)], parameters={})), "--layer", "fc")
    assert status == 2
    assert "icarus could not build matrix_multiplier:" in err and "bad.sv:2" in err


def _array_description(tmp_path: Path, flow: str) -> Path:
    """The project's own array_top as the kit sees it: buffers, hwsim's timing enforced, overflow counted."""
    from hwsim.dataflows import DATAFLOWS

    data = {
        "top": "array_top",
        "sources": [str(f) for f in sources_for("array_top")],
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
def test_the_projects_own_array_through_the_kit(flow, tmp_path, kit) -> None:
    status, out, err = kit(
        str(_array_description(tmp_path, flow)),
        "--layer",
        "layer1.0.conv1",
        "--rows",
        "6",
        "--random",
        "3",
        "--seed",
        "2",
        "--stress",
    )
    assert status == 0, out + err
    assert re.search(r"layer1.0.conv1 +1  items ==, 1 K block\(s\) added up == emulator's layer", out), out
    assert "cycles: every item within 0 % of the hwsim model" in out
    assert "PASS on icarus: array_top, 4 work items" in out


def _finn_parameters(**changes: int) -> dict[str, int]:
    return {**yaml.safe_load(FINN.read_text())["parameters"], **changes}


def test_foreign_streaming_design_on_real_layers(kit) -> None:
    require_simulator("verilator")
    status, out, err = kit(
        str(FINN),
        "--layer",
        "conv1,layer2.0.shortcut.0,fc",
        "--rows",
        "4",
        "--stress",
        "--seed",
        "5",
        "--random",
        "3",
        sim="verilator",
    )
    assert status == 0, out + err
    assert re.search(r"conv1 +4  items ==, 1 K block\(s\) added up == emulator's layer", out), out
    assert re.search(r"layer2.0.shortcut.0 +8  items ==, 1 K block", out), out
    assert re.search(r"fc +2  items ==, 2 K block\(s\) added up", out), out
    assert (
        "PASS on verilator: mvu_vvu_axi, 17 work items (stress on (valid pause 0.35, ready pause 0.35)" in out
    )


def test_a_dropped_beat_is_caught_naming_the_beat(tmp_path, kit) -> None:
    """FINN's unit behind a wrapper that takes its third output beat and never shows it."""
    require_simulator("verilator")
    dropped = _variant(
        tmp_path, FINN, top="finn_mvu_drop_beat", extra_sources=[BROKEN / "finn_mvu_drop_beat.sv"]
    )
    status, out, _ = kit(str(dropped), "--layer", "fc", "--seed", "1", sim="verilator")
    assert status == 1, out
    assert (
        "layer fc, item 0 (rows 0..0, K 0..47, columns 0..9): Y[m=0, n=8] of the layer (element [0, 8] of "
        "the item) on m_axis_output, beat 2 of 4, lane 0, cycle"
    ) in out


def test_finns_output_queue_overflow_is_found_expected_failure(tmp_path, kit) -> None:
    """A finding about FINN's unit (docs/rtl.md): with MW == SIMD (one input beat per vector) and the
    output's ready low most of the time, results are lost or wrong. The kit must see it, with the seed."""
    require_simulator("verilator")
    one_beat = _variant(
        tmp_path,
        FINN,
        parameters=_finn_parameters(MW=8, SIMD=8),
        gemm={**yaml.safe_load(FINN.read_text())["gemm"], "tile": {"m": 1, "k": 8, "n": 16}},
        plusargs=["+verilator+error+limit+1000000"],  # the design's own assertion reports it; run on
    )
    status, out, _ = kit(
        str(one_beat),
        "--layer",
        "fc",
        "--stress",
        "--pause-valid",
        "0",
        "--pause-ready",
        "0.9",
        "--seed",
        "1",
        sim="verilator",
    )
    assert status == 1, out
    assert (
        "replay with --seed 1): layer fc, item 0 (rows 0..0, K 0..7, columns 0..9): Y[m=0, n=4] of the layer "
        "(element [0, 4] of the item) on m_axis_output, beat 1 of 4, lane 0"
    ) in out
    # the same configuration without output stalls passes: the failure is the stall's
    status, out, _ = kit(
        str(one_beat),
        "--layer",
        "fc",
        "--stress",
        "--pause-valid",
        "0",
        "--pause-ready",
        "0.2",
        "--seed",
        "1",
        sim="verilator",
    )
    assert status == 0, out


def test_vector_sets_through_a_described_design(tmp_path, kit) -> None:
    """`rtl_models.check VECTORS --dut`: hwsim vector sets on a design with ports of its own, values only."""
    import numpy as np

    from hwsim.fixed import IntFormat
    from hwsim.hwconfig import load_hw_config
    from hwsim.vectors import make_vector_set, write_vectors

    rng = np.random.default_rng(3)
    a, w = (
        rng.integers(0, 15, size=(5, 20), endpoint=True),
        rng.integers(-15, 15, size=(20, 6), endpoint=True),
    )
    hw = load_hw_config(REPO / "configs" / "hw" / "ws_8x8.yaml")
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(4, False), w_fmt=IntFormat(5, True), name="l1")
    write_vectors(vs, tmp_path / "l1")
    status, out, err = kit(str(MM), str(tmp_path / "l1"), "--seed", "4", bundle=None)
    assert status == 0, out + err
    assert re.search(r"l1 +12  items ==, 3 K block\(s\) added up == hwsim's GEMM", out), out
    assert "PASS on icarus: matrix_multiplier, 12 work items" in out


OWN_TESTBENCH = """
import cocotb
from cocotb.triggers import FallingEdge
from rtl_models.kit.tb import run_kit


@cocotb.test()
async def items_then_my_check(dut):
    await run_kit(dut)  # the kit's items, compared as they arrive
    await FallingEdge(dut.clk_i)
    await FallingEdge(dut.clk_i)
    assert int(dut.valid_o.value) == WANT, "valid_o after the last result"
"""


def test_your_own_testbench_around_the_kits_items(monkeypatch, tmp_path, kit) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    for want, expected_status in ((0, 0), (1, 1)):  # its own check passes, then one that cannot
        (tmp_path / f"my_tb{want}.py").write_text(OWN_TESTBENCH.replace("WANT", str(want)))
        status, out, err = kit(MM, "--layer", "fc", "--seed", "2", "--test-module", f"my_tb{want}")
        assert status == expected_status, out + err
    assert "FAIL on icarus: matrix_multiplier" in out and "valid_o after the last result" in out


def test_sources_given_on_the_command_line_replace_the_descriptions(kit) -> None:
    status, out, _ = kit(
        str(MM), "--sources", str(BROKEN / "matrix_multiplier_broken.sv"), "--layer", "fc", "--seed", "1"
    )
    assert status == 1 and "Y[m=0, n=0] of the layer" in out


def test_codes_that_do_not_fit_the_ports_are_exit_2(tmp_path, kit) -> None:
    narrow = yaml.safe_load(MM.read_text())["gemm"]
    narrow["w"] = {"bits": 11, "signed": False, "zero_point": 0}  # signed weights into an unsigned port
    status, _, err = kit(_variant(tmp_path, gemm=narrow), "--layer", "fc")
    assert status == 2
    assert "layer fc, item 0: weight codes span" in err and "gemm.w.zero_point" in err


STREAM_DOT = REPO / "tests" / "rtl" / "hdl" / "stream_dot.yaml"


@pytest.mark.parametrize("sim", SIMULATORS)
def test_stream_driver_with_last_and_any_k(sim, kit) -> None:
    """The stream driver's tlast and packets of any length (a whole layer row, then stress items of
    K = 1, 2, 33 and 97) on the tests' own small stream design, its output stalled 80 % of the time."""
    require_simulator(sim)
    stress = ["--stress", "--pause-ready", "0.8", "--random", "8", "--seed", "3"]
    status, out, err = kit(STREAM_DOT, "--layer", "layer1.0.conv1", "--rows", "2", *stress, sim=sim)
    assert status == 0, out + err
    assert re.search(r"layer1.0.conv1 +32  items ==, 1 K block", out), out
    assert re.search(r"random \(stress\) +8  items ==", out), out


def test_a_stream_without_its_last_is_a_hang_naming_the_beat(tmp_path, kit) -> None:
    data = yaml.safe_load(STREAM_DOT.read_text())
    data["sources"] = [str(STREAM_DOT.parent / s) for s in data["sources"]]
    # named one by one, without last (AXI-Stream names would find a_tlast): no packet ever ends
    data["streams"][0] = {
        "name": "a",
        "data": "a_tdata",
        "valid": "a_tvalid",
        "ready": "a_tready",
        "matrix": "a",
        "layout": {"block": [1, 1]},
    }
    data["timeout_cycles"] = 300
    (tmp_path / "no_last.yaml").write_text(yaml.safe_dump(data))
    status, out, _ = kit(tmp_path / "no_last.yaml", "--layer", "layer1.0.conv1", "--rows", "1", "--seed", "1")
    assert status == 1, out
    assert "no progress for 300 cycles" in out
    assert (
        "waiting for layer layer1.0.conv1, item 0 (rows 0..0, K 0..143, columns 0..0): output beat 0 on y"
        in out
    )


def test_a_beat_beyond_the_last_expected_is_caught(tmp_path, kit) -> None:
    """A design that sends one result twice: at the end of a run, where no later item would show it."""
    import numpy as np

    from hwsim.fixed import IntFormat
    from hwsim.hwconfig import load_hw_config
    from hwsim.vectors import make_vector_set, write_vectors

    data = yaml.safe_load(STREAM_DOT.read_text())
    data["sources"] = [str(STREAM_DOT.parent / s) for s in data["sources"]]
    data["defines"] = {"EXTRA_BEAT": 1}
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(data))
    a, w = np.array([[1, 2, 3, 4, 5]]), np.array([[1], [-2], [3], [-4], [5]])
    hw = load_hw_config(REPO / "configs" / "hw" / "ws_8x8.yaml")
    write_vectors(
        make_vector_set(a, w, hw, a_fmt=IntFormat(4, False), w_fmt=IntFormat(5, True), name="one"),
        tmp_path / "one",
    )
    status, out, _ = kit(tmp_path / "extra.yaml", tmp_path / "one", "--seed", "1", bundle=None)
    assert status == 1, out
    assert (
        "an output beat on y at cycle" in out
        and "beyond the last one expected after layer one, item 0" in out
    )
    data.pop("defines")  # the same design built without the defect passes the same set
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(data))
    status, out, _ = kit(tmp_path / "extra.yaml", tmp_path / "one", "--seed", "1", bundle=None)
    assert status == 0, out


def test_an_accumulating_vector_set_is_refused_for_a_described_design(tmp_path, kit) -> None:
    import numpy as np

    from hwsim.fixed import IntFormat
    from hwsim.hwconfig import load_hw_config
    from hwsim.vectors import make_vector_set, write_vectors

    hw = load_hw_config(REPO / "configs" / "hw" / "ws_8x8.yaml")
    a, w, c = np.ones((2, 3), np.int64), np.ones((3, 2), np.int64), np.full((2, 2), 5, np.int64)
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(4, False), w_fmt=IntFormat(5, True), name="acc", carry=c)
    write_vectors(vs, tmp_path / "acc")
    status, _, err = kit(MM, tmp_path / "acc", bundle=None)
    assert status == 2 and "an accumulating set (Y = C + A @ W, carry_obuf.hex)" in err
