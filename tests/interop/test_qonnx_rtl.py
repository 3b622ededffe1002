"""RTL on an imported bundle: `hwsim vectors` for a conv layer and a residual requantizer of a Brevitas
model imported with `hwsim import-qonnx`, run through rtl_models.check on the project's Verilog."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("brevitas")
pytest.importorskip("qonnx")
pytest.importorskip("onnxruntime")

from hwsim.bundle import RequantNode, load_bundle  # noqa: E402
from hwsim.cli import main as hwsim_main  # noqa: E402
from rtl_models.check import main as check_main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HW = str(REPO / "configs" / "hw" / "ws_8x8.yaml")


@pytest.mark.rtl
def test_imported_conv_and_requant_vectors_pass_on_icarus(
    qonnx_model: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # as tests/rtl/conftest.py's require_simulator: fail, not skip (RTL coverage is required)
    if shutil.which("iverilog") is None:
        pytest.fail("Icarus Verilog (iverilog) is not installed; run scripts/setup.sh --rtl")
    bundle_dir = tmp_path / "bundle"
    model = qonnx_model("residual8")
    assert hwsim_main(["import-qonnx", str(model), "--out", str(bundle_dir), "--images", "2"]) == 0
    bundle = load_bundle(bundle_dir)
    conv = next(n for n in bundle.nodes if n.op == "conv2d" and n.name != bundle.nodes[0].name)
    add = next(n for n in bundle.nodes if isinstance(n, RequantNode) and len(n.inputs) == 2)
    dirs = []
    for node in (conv, add):
        out = tmp_path / f"vec_{node.name}"
        argv = ["vectors", str(bundle_dir), "--layer", node.name, "--hw", HW, "--out", str(out)]
        assert hwsim_main(argv) == 0
        dirs.append(str(out))
    capsys.readouterr()
    assert check_main([*dirs, "--sim", "icarus"]) == 0
    out = capsys.readouterr().out
    print(out)
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("PASS on icarus: ") for line in lines)
