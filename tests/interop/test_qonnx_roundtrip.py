"""export-qonnx then import-qonnx gives back the same bundle: graph.yaml and every tensors.npz array.

The ``reference`` record legitimately differs (the imported bundle's reference is qonnx's execution
of the file on its own batch); everything else, the ``quantization`` record included, is equal.
Format-version-1 bundles come back as version 2 with each node's rounding written out (half_up),
which is what ``graph_yaml`` of the loaded version-1 bundle spells too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qonnx")
pytest.importorskip("onnx")

from hwsim.bundle import load_bundle  # noqa: E402
from hwsim.bundle.schema import graph_yaml  # noqa: E402
from hwsim.bundle.synthetic import builder, fmt, random_resnet20_bundle, tiny_bundle  # noqa: E402
from hwsim.cli import main  # noqa: E402
from hwsim.fixed import ROUNDING_MODES  # noqa: E402
from hwsim.interop.qonnx_export import export_qonnx, save_model  # noqa: E402
from hwsim.interop.qonnx_import import import_qonnx  # noqa: E402

PRETRAINED = Path(__file__).resolve().parents[2] / "hwsim/pretrained/bundles"


def _graph(bundle) -> dict:
    g = graph_yaml(bundle.meta, bundle.tensors, bundle.nodes)
    g.pop("reference", None)
    return g


def assert_same_bundle(a, b) -> None:
    ga, gb = _graph(a), _graph(b)
    assert list(ga) == list(gb)
    for key in ga:
        assert ga[key] == gb[key], key
    assert list(ga["tensors"]) == list(gb["tensors"])
    assert sorted(a.consts) == sorted(b.consts)
    for key, value in a.consts.items():
        got = b.consts[key]
        assert got.shape == value.shape and np.array_equal(got, value), key
        assert got.dtype == value.dtype, (key, value.dtype, got.dtype)


def roundtrip(bundle_path: Path, tmp_path: Path, images: int = 2):
    original = load_bundle(bundle_path)
    model = tmp_path / "model.onnx"
    save_model(export_qonnx(original), model)
    back = load_bundle(import_qonnx(model, tmp_path / "back", images=images).path)
    assert back.reference is not None and back.reference.images == images
    return original, back


@pytest.mark.parametrize("rounding", [None, *ROUNDING_MODES])
def test_tiny(tmp_path: Path, rounding: str | None) -> None:
    path = tiny_bundle(tmp_path / "tiny", rounding=rounding or "half_up")
    assert_same_bundle(*roundtrip(path, tmp_path))


def test_tiny_mixed_rounding(tmp_path: Path) -> None:
    modes = {"act1": "half_even", "act2": "floor", "sgn": "toward_zero", "logits": "half_away"}
    path = tiny_bundle(tmp_path / "tiny", rounding=modes)
    original, back = roundtrip(path, tmp_path)
    assert_same_bundle(original, back)
    assert {n.name: n.rounding for n in back.nodes if n.op == "requant"} == modes


def test_random_resnet20(tmp_path: Path) -> None:
    assert_same_bundle(*roundtrip(random_resnet20_bundle(tmp_path / "r20"), tmp_path))


@pytest.mark.parametrize("name", ["dorefa_a4w4", "xnor"])
def test_pretrained(tmp_path: Path, name: str) -> None:
    original, back = roundtrip(PRETRAINED / name, tmp_path)
    assert back.meta.format_version == 2
    assert all(n.rounding == "half_up" for n in back.nodes if n.op == "requant")
    assert_same_bundle(original, back)


def test_maxpool(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    b = builder((2, 6, 6), fmt(4, True), 0.25, model="pool")
    acc = b.conv2d("conv", "input", rng.integers(-7, 8, (3, 2, 3, 3)), fmt(4, True, "narrow"), 0.1, padding=1)
    act = b.requant(
        "act", [(acc, np.array([3, 1, 2]), np.array([1, 0, -1]))], np.array([2, 1, 2]), fmt(4, False), 0.5
    )
    mp = b.maxpool("mp", act, 2, padding=1)
    pool = b.avgpool_sum("gap", mp)
    fc = b.linear("fc", pool, rng.integers(-3, 4, (4, 3)), fmt(3, True, "narrow"), 0.05)
    b.requant("logits", [(fc, np.array([1, 2, 3, 1]), None)], np.array([1, 1, 1, 1]), fmt(8, True), 0.1)
    path = b.save(tmp_path / "pool", "logits")
    assert_same_bundle(*roundtrip(path, tmp_path))


def test_cli(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "tiny", rounding={"act1": "ceil"})
    model, back = tmp_path / "tiny.onnx", tmp_path / "back"
    assert main(["export-qonnx", str(path), "--out", str(model)]) == 0
    assert main(["import-qonnx", str(model), "--out", str(back), "--images", "3"]) == 0
    assert_same_bundle(load_bundle(path), load_bundle(back))
