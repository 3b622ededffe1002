"""python -m rtl_models.check: hwsim's vector sets on the project's array_top and requant, and on yours.

Requant sets come from the tiny bundle with a different rounding mode per requantizer
(test_vectors.requant_sets): one call builds requant once per parameter set.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import HW_DIR, require_simulator
from test_array_top import CASES, _case, vector_sets, write_sets
from test_vectors import requant_sets

from hwsim.bundle.synthetic import tiny_bundle
from hwsim.cli import main as hwsim_main
from hwsim.dataflows import DATAFLOWS
from rtl_models.check import main
from rtl_models.sim import RTL_DIR, sources_for


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
    broken = sources_for("array_top", "truncated_product")  # mac_pe.v replaced by broken/mac_pe_truncated.v
    assert RTL_DIR / "broken/mac_pe_truncated.v" in broken
    assert main([*sets, "--sim", "icarus", "--sources", *map(str, broken)]) == 1
    out = capsys.readouterr().out
    assert "FAIL on icarus" in out and "outputs differ, this the first" in out and "Y[m=0, n=0]" in out
    assert "bottom PE (" in out and "expected" in out and "actual" in out


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


@pytest.fixture
def rq_sets(tmp_path: Path) -> list[str]:
    return requant_sets(tmp_path / "requant")


@pytest.mark.rtl
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_requant_sets_in_mixed_rounding_modes_pass(
    sim: str, rq_sets: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    require_simulator(sim)
    assert main([*rq_sets, "--sim", sim]) == 0
    lines = capsys.readouterr().out.splitlines()
    # act1 and act1.b share their parameters: one build; act2, sgn and logits one each
    assert len(lines) == 4 and all(line.startswith(f"PASS on {sim}: ") for line in lines)
    assert "2 requant vector set(s) (act1, act1.b)" in lines[0] and "toward_zero" in lines[0]
    assert any("(sgn)" in line and "ROUNDING=3, floor" in line for line in lines)


@pytest.mark.rtl
def test_requant_set_with_a_wrong_expected_code_fails(
    rq_sets: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    require_simulator("icarus")
    logits = Path(rq_sets[3])
    with np.load(logits / "stimulus.npz") as data:
        arrays = dict(data)
    arrays["expected"][5] += 1 if arrays["expected"][5] < 127 else -1
    np.savez(logits / "stimulus.npz", **arrays)
    assert main([rq_sets[0], str(logits), "--sim", "icarus"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("PASS on icarus: 1 requant vector set(s) (act1)")
    assert "FAIL on icarus: 1 requant vector set(s) (logits)" in out
    assert "element 5 at (1, 1)" in out and "not the set's value" in out


@pytest.mark.rtl
def test_requant_rtl_that_ignores_rounding_is_rejected(
    rq_sets: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_simulator("icarus")
    source = (RTL_DIR / "requant.v").read_text()
    assert source.count("(ROUNDING == 0) ?") == 1
    broken = tmp_path / "requant.v"  # always rounds half up, whatever ROUNDING says
    broken.write_text(source.replace("(ROUNDING == 0) ?", "1'b1 ?"))
    assert main([*rq_sets, "--sim", "icarus", "--sources", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "PASS on icarus: 1 requant vector set(s) (act2)" in out  # act2 is half_up
    for name, mode in (("act1, act1.b", "toward_zero"), ("sgn", "floor"), ("logits", "half_even")):
        assert f"FAIL on icarus: {2 if ',' in name else 1} requant vector set(s) ({name})" in out
        assert f"rounding {mode}): expected" in out


def test_bad_requant_input_exits_2(
    sets: list[str], rq_sets: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    shutil.copytree(rq_sets[0], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["parameters"]["ROUNDING"] = 0  # made for toward_zero
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(other)]) == 2
    assert "its format and rounding 'toward_zero' give" in capsys.readouterr().err
    manifest["kind"] = "conv"
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(other)]) == 2
    assert "kind 'conv' is not one of gemm, requant" in capsys.readouterr().err
    (Path(rq_sets[1]) / "stimulus.npz").unlink()
    assert main([rq_sets[1]]) == 2
    assert "files.stimulus: " in (err := capsys.readouterr().err) and "stimulus.npz is missing" in err
    assert main([sets[0], rq_sets[0], "--sources", str(RTL_DIR / "requant.v")]) == 2
    assert "not both in one call" in capsys.readouterr().err


@pytest.mark.rtl
def test_a_mixed_mode_bundle_on_disk_through_both_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """graph.yaml names a rounding mode per requantizer; `hwsim vectors` writes every requantizer
    and a conv, and one `rtl_models.check` call runs them all on Icarus with every word equal."""
    from hwsim.bundle import load_bundle
    from hwsim.bundle.synthetic import tiny_bundle
    from hwsim.cli import main as hwsim_main

    require_simulator("icarus")
    modes = {"act1": "half_even", "act2": "floor", "sgn": "half_away", "logits": "toward_zero"}
    path = tiny_bundle(tmp_path / "mixed", reference_images=4, rounding=modes)
    assert {n.name: n.rounding for n in load_bundle(path).nodes if n.op == "requant"} == modes
    hw = Path(__file__).resolve().parents[2] / "configs" / "hw" / "ws_8x8.yaml"
    outs = []
    for layer in [*modes, "conv1"]:
        out = tmp_path / "vec" / layer
        assert hwsim_main(["vectors", str(path), "--layer", layer, "--hw", str(hw), "--out", str(out)]) == 0
        outs.append(str(out))
    capsys.readouterr()
    assert main([*outs, "--sim", "icarus"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("PASS on icarus: ") for line in lines)
    for mode in modes.values():
        assert any(mode in line for line in lines), mode


def _drop(*keys: str):  # type: ignore[no-untyped-def]
    def change(m: dict) -> None:
        target = m
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change


def _put(value: object, *keys: str):  # type: ignore[no-untyped-def]
    def change(m: dict) -> None:
        target = m
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


# (case, kind of set, mutation of manifest.json, fragment of the message)
MANIFEST_CASES = [
    ("no parameters", "gemm", _drop("parameters"), "no 'parameters'"),
    ("parameters a list", "gemm", _put([1, 2], "parameters"), "'parameters' is [1, 2], expected a dict"),
    ("parameter a string", "gemm", _put("16", "parameters", "ROWS"), "non-integer ['ROWS']"),
    ("parameter missing", "gemm", _drop("parameters", "COLS"), "lacks ['COLS']"),
    ("no gemm", "gemm", _drop("gemm"), "no 'gemm'"),
    ("m a string", "gemm", _put("4", "gemm", "m"), "'gemm.m' is '4', expected a non-negative integer"),
    ("no addr_bits", "gemm", _drop("addr_bits"), "no 'addr_bits'"),
    ("no files", "gemm", _drop("files"), "no 'files'"),
    ("no abuf", "gemm", _drop("files", "abuf"), "no 'files.abuf'"),
    ("path outside", "gemm", _put("../abuf.hex", "files", "abuf", "path"), "is not a file name in"),
    ("path absolute", "gemm", _put("/etc/passwd", "files", "wbuf", "path"), "is not a file name in"),
    ("file missing", "gemm", _put("nope.hex", "files", "abuf", "path"), "nope.hex is missing"),
    ("no expected", "gemm", _drop("expected", "cycles"), "no 'expected.cycles'"),
    ("no requant parameters", "requant", _drop("parameters"), "no 'parameters'"),
    ("no MULT_BITS", "requant", _drop("parameters", "MULT_BITS"), "lacks ['MULT_BITS']"),
    ("elements negative", "requant", _put(-1, "elements"), "'elements' is -1"),
    ("shape a dict", "requant", _put({}, "shape"), "'shape' is {}, expected a list"),
    ("no stimulus", "requant", _drop("files", "stimulus"), "no 'files.stimulus'"),
]


@pytest.mark.parametrize(
    ("case", "kind", "change", "fragment"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES]
)
def test_malformed_manifest_exits_2_naming_the_key(
    case: str,
    kind: str,
    change,  # type: ignore[no-untyped-def]
    fragment: str,
    sets: list[str],
    rq_sets: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path / "bad"
    shutil.copytree((sets if kind == "gemm" else rq_sets)[0], other)
    manifest = json.loads((other / "manifest.json").read_text())
    change(manifest)
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main([str(other), "--sim", "icarus"]) == 2
    err = capsys.readouterr().err
    assert f"{other / 'manifest.json'}: " in err and fragment in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("text", ["[1, 2]", "not json", "\xff\xfe"])
def test_manifest_that_is_not_an_object(text: str, sets: list[str], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "bad"
    shutil.copytree(sets[0], other)
    (other / "manifest.json").write_bytes(text.encode("latin-1"))
    assert main([str(other)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: not" in err and "Traceback" not in err


@pytest.mark.rtl
@pytest.mark.parametrize("flow", [name for name, f in DATAFLOWS.items() if f.rtl])
def test_hwsim_vectors_then_check_in_every_rtl_dataflow(
    flow: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's path for each dataflow: `hwsim vectors` with its shipped 16x16 config, then the check."""
    require_simulator("icarus")
    bundle = tiny_bundle(tmp_path / "bundle")
    hw = HW_DIR / f"{flow}_16x16.yaml"
    out = tmp_path / "vec"
    assert hwsim_main(["vectors", str(bundle), "--layer", "conv1", "--hw", str(hw), "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["dataflow"] == flow
    capsys.readouterr()
    assert main([str(out), "--sim", "icarus"]) == 0
    assert "PASS on icarus: 1 vector set(s) (conv1)" in capsys.readouterr().out


@pytest.mark.rtl
@pytest.mark.parametrize("flow", [name for name, d in DATAFLOWS.items() if d.rtl])
def test_every_set_through_the_kit_accumulating_ones_too(flow: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The plain route runs array_top through the verification kit: corners, random codes and
    accumulating sets (C in the output buffer), values, hwsim's cycle counts and overflow events."""
    require_simulator("icarus")
    _, hw, over, a_fmt, w_fmt, _ = _case("icarus", flow, *CASES[0][2:])
    chosen = vector_sets(hw, over, a_fmt, w_fmt)
    assert any(vs.carry is not None for vs in chosen) and any(vs.overflow_events for vs in chosen)
    assert main([*write_sets(chosen, tmp_path / "sets"), "--sim", "icarus"]) == 0
    out = capsys.readouterr().out
    assert f"PASS on icarus: {len(chosen)} vector set(s)" in out and "cycle count and overflow count" in out
