"""hwsim export-qonnx: the QONNX graph computes the bundle's codes, measured against hwsim.emulator.

Equality is asserted where the exporter's static bounds prove the float arithmetic exact; elsewhere
a node's own error (run ``isolated``: fed the emulator's inputs) is at most 1 LSB. Every measured
agreement is printed (``pytest -s``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qonnx")
onnx = pytest.importorskip("onnx")

from hwsim.bundle import load_bundle, quantize_images  # noqa: E402
from hwsim.bundle.synthetic import builder, fmt, random_resnet20_bundle, tiny_bundle, tiny_inputs  # noqa: E402
from hwsim.cli import build_parser, main  # noqa: E402
from hwsim.emulator import emulate  # noqa: E402
from hwsim.fixed import ROUNDING_MODES  # noqa: E402
from hwsim.interop.qonnx_export import compare_with_emulator, export_qonnx, run_qonnx  # noqa: E402

PRETRAINED = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "hwsim/pretrained/bundles").iterdir()
    if (p / "graph.yaml").is_file()
)
IMAGES = 8


def _command() -> str:
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices
    return "export-qonnx" if "export-qonnx" in choices else "export_qonnx"


def _summary(label: str, rows) -> str:
    equal, total = sum(r.equal for r in rows), sum(r.elements for r in rows)
    worst = min(rows, key=lambda r: r.fraction)
    return (
        f"{label}: equal {equal}/{total} ({equal / total:.6f}), "
        f"max |diff| {max(r.max_diff for r in rows):g} LSB, worst tensor {worst.tensor} {worst.fraction:.4f}"
    )


def _upstream_proven(bundle, export) -> set[str]:
    """Output tensors of nodes whose every upstream node is proven exact (end-to-end equality is sound)."""
    proven = {e.node for e in export.exactness if e.exact}
    ok = {bundle.meta.input_tensor}
    for node in bundle.nodes:
        if node.name in proven and all(t in ok for t in node.reads):
            ok.add(node.output)
    return ok


def _head(b, x: str) -> None:
    """avgpool_sum -> linear -> requant ``logits`` (a bundle's output is a vector)."""
    pool = b.avgpool_sum("gap", x)
    c = b.shape(x)[0]
    fc = b.linear("fc", pool, np.ones((2, c), dtype=np.int64), fmt(2, True, "narrow"), 0.1)
    b.requant("logits", [(fc, np.array([1, -1]), None)], np.array([1, 2]), fmt(16, True), 0.1)


def _check(bundle, codes, label: str) -> None:
    """End to end: == where proven; isolated: == where proven, <= 1 LSB elsewhere (float32 too)."""
    export = export_qonnx(bundle)
    sound = _upstream_proven(bundle, export)
    rows = compare_with_emulator(bundle, codes)
    print(_summary(f"{label} float64/auto end-to-end", rows))
    for r in rows:
        if r.tensor in sound:
            assert r.max_diff == 0, (label, r)
    proven = {bundle.node(e.node).output for e in export.exactness if e.exact}
    iso = compare_with_emulator(bundle, codes, isolated=True)
    for r in iso:
        assert r.max_diff == 0 if r.tensor in proven else r.max_diff <= 1, (label, r)
    rows32 = compare_with_emulator(bundle, codes, dtype="float32", isolated=True)
    print(_summary(f"{label} float32 isolated", rows32))
    for r in rows32:
        assert r.max_diff <= 1, (label, r)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_tiny_bundle_is_exact_in_every_rounding_mode(tmp_path: Path, rounding: str) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "b", rounding=rounding))
    codes = tiny_inputs(64)
    for dtype in ("auto", "float32"):
        export = export_qonnx(bundle, dtype=dtype)
        assert export.exact, export.exactness  # every bound is below 2^24: float32 is exact throughout
        rows = compare_with_emulator(bundle, codes, dtype=dtype)
        print(_summary(f"tiny {rounding} {dtype}", rows))
        assert all(r.max_diff == 0 for r in rows), rows


def test_image_input_reproduces_the_input_recipe(tmp_path: Path) -> None:
    bundle = load_bundle(random_resnet20_bundle(tmp_path / "r"))
    images = np.random.default_rng(3).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    export = export_qonnx(bundle, batch=4, input_kind="image")
    got = run_qonnx(export, images.transpose(0, 3, 1, 2).astype(np.float32))
    codes = quantize_images(images, bundle)
    np.testing.assert_array_equal(got[bundle.meta.input_tensor], codes)
    np.testing.assert_array_equal(got[bundle.meta.output], emulate(bundle, codes).logits)


def test_wide_convolution_is_split_into_exact_limbs(tmp_path: Path) -> None:
    """int12 input x int12 weights, K = 72: beyond 2^24, so the Conv runs on digits, summed in float64."""
    rng = np.random.default_rng(5)
    b = builder((8, 6, 6), fmt(12, True), 0.01, acc_bits=None, model="wide")
    acc = b.conv2d(
        "conv", "input", rng.integers(-2047, 2048, size=(4, 8, 3, 3)), fmt(12, True), 0.01, padding=1
    )
    y = b.requant(
        "out", [(acc, np.array([3, -5, 7, 1]), None)], np.array([20, 21, 19, 18]), fmt(8, True), 0.1
    )
    _head(b, y)
    bundle = b.build("logits")
    export = export_qonnx(bundle, batch=6)
    conv = next(e for e in export.exactness if e.node == "conv")
    assert conv.exact and conv.dtype == "float64" and "limbs" in conv.note, conv
    assert sum(n.op_type == "Conv" for n in export.model.graph.node) > 1
    codes = rng.integers(-2048, 2048, size=(6, 8, 6, 6))
    codes[0] = -2048  # the extremes of the input range
    codes[1] = 2047
    got = run_qonnx(export, codes)
    want = emulate(bundle, codes).tensors
    np.testing.assert_array_equal(got["out"], want["out"])
    np.testing.assert_array_equal(got[acc], want[acc])


def test_maxpool_maps_to_onnx_maxpool(tmp_path: Path) -> None:
    b = builder((2, 5, 5), fmt(4, True), 0.25, model="pool")
    if not hasattr(b, "maxpool"):
        pytest.skip("this hwsim.bundle has no maxpool op")
    rng = np.random.default_rng(9)
    acc = b.conv2d(
        "conv", "input", rng.integers(-7, 8, size=(3, 2, 3, 3)), fmt(4, True, "narrow"), 0.1, padding=1
    )
    y = b.requant("act", [(acc, np.array([1, 2, 3]), None)], np.array([2, 3, 3]), fmt(4, True), 0.5)
    _head(b, b.maxpool("pool", y, 2, stride=2, padding=1))
    bundle = b.build("logits")
    codes = rng.integers(-8, 8, size=(16, 2, 5, 5))
    export = export_qonnx(bundle, batch=16)
    assert any(n.op_type == "MaxPool" for n in export.model.graph.node)
    rows = compare_with_emulator(bundle, codes)
    assert all(r.max_diff == 0 for r in rows), rows


def test_random_resnet20(tmp_path: Path) -> None:
    bundle = load_bundle(random_resnet20_bundle(tmp_path / "r", reference_images=IMAGES))
    assert export_qonnx(bundle).exact
    _check(bundle, bundle.reference.input_codes, "random resnet20 w4a4")


@pytest.mark.parametrize("path", PRETRAINED, ids=[p.name for p in PRETRAINED])
def test_pretrained_resnet20(path: Path) -> None:
    bundle = load_bundle(path)
    _check(bundle, bundle.reference.input_codes[:IMAGES], path.name)


def test_cli_writes_a_model_qonnx_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qonnx.core.modelwrapper import ModelWrapper

    src = tiny_bundle(tmp_path / "b", reference_images=4)
    out = tmp_path / "m.onnx"
    assert main([_command(), str(src), "--out", str(out), "--check", "--images", "4"]) == 0
    text = capsys.readouterr().out
    assert "max |diff| 0 LSB" in text and "all codes: equal" in text
    onnx.checker.check_model(onnx.load(str(out)))
    model = ModelWrapper(str(out))
    assert {n.op_type for n in model.graph.node} >= {"Quant", "BipolarQuant", "Conv", "Gemm", "ReduceSum"}
    assert main([_command(), str(src), "--out", str(out)]) == 0  # its own model: overwritten


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_bundle(tmp_path / "b")
    cmd = _command()
    assert main([cmd, str(tmp_path / "missing"), "--out", str(tmp_path / "m.onnx")]) == 2
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "graph.yaml").write_text("nodes: [\n")
    assert main([cmd, str(tmp_path / "broken"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert main([cmd, str(src), "--out", str(tmp_path)]) == 2  # a directory
    other = tmp_path / "notes.onnx"
    other.write_text("not a model")
    assert main([cmd, str(src), "--out", str(other)]) == 2  # not ours: kept
    assert other.read_text() == "not a model"
    assert main([cmd, str(src), "--out", str(other / "m.onnx")]) == 2  # under a file
    assert main([cmd, str(src), "--out", str(tmp_path / "m.onnx"), "--check"]) == 2  # no reference.npz
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 6
