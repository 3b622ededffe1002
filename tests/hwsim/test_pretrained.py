"""The bundled models: their manifest, packing a bundle, and docs/results.md's table measured again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.errors import UserError
from hwsim.pretrained import BUNDLES_DIR, ManifestError, float_baseline, list_bundles, primary_model
from hwsim.pretrained.pack import pack_bundle
from hwsim.pretrained.results import (
    BEGIN,
    END,
    MAX_GAP_POINTS,
    SEED_DROPS,
    main,
    measure,
    replace_table,
    table_markdown,
)

REPO = Path(__file__).resolve().parents[2]
ENTRY = {"title": "M", "method": "x", "w_bits": 4, "a_bits": 4, "config": "c", "commands": []}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_resnet20_bundle(tmp_path_factory.mktemp("b") / "r_a4w4", 4, 4, seed=0, reference_images=4)


def test_manifest_errors_name_the_model_and_field(bundle: Path, tmp_path: Path) -> None:
    d = tmp_path / "b"
    d.mkdir()
    (d / "m1").symlink_to(bundle)
    entry = {"title": "M", "method": "x", "w_bits": 4, "a_bits": 4, "config": "c", "commands": []}
    (d / "MANIFEST.yaml").write_text(
        yaml.safe_dump({"manifest_version": 1, "models": {"m1": {**entry, "bits": 3}}})
    )
    with pytest.raises(ManifestError, match="model 'm1': field 'bits' is unknown"):
        list_bundles(d)
    (d / "MANIFEST.yaml").write_text(yaml.safe_dump({"manifest_version": 1, "models": {"m2": entry}}))
    with pytest.raises(ManifestError, match="model 'm2' has no bundle"):
        list_bundles(d)
    (d / "MANIFEST.yaml").write_text(
        yaml.safe_dump({"manifest_version": 1, "models": {"m1": {**entry, "top1_pytorch": 91}}})
    )
    with pytest.raises(ManifestError, match="top1_pytorch"):
        list_bundles(d)
    (d / "MANIFEST.yaml").unlink()
    (model,) = list_bundles(d)  # no manifest: listed from graph.yaml
    assert model.name == "m1" and not model.in_manifest


def test_pack_keeps_every_value(tmp_path: Path) -> None:
    src = random_resnet20_bundle(tmp_path / "src", 4, 4, seed=3, reference_images=6)
    dest = pack_bundle(src, "packed", tmp_path / "pkg", reference_images=4)
    a, b = load_bundle(src), load_bundle(dest)
    assert a.reference is not None and b.reference is not None
    assert b.reference.images == 4 and (b.meta.reference is None or b.meta.reference["images"] == 4)
    assert np.array_equal(a.reference.input_codes[:4], b.reference.input_codes)
    assert all(np.array_equal(a.reference.codes[k][:4], b.reference.codes[k]) for k in a.reference.codes)
    assert not b.reference.floats  # each equals codes * scale, so none is stored
    assert all(np.array_equal(a.consts[k], b.consts[k]) for k in a.consts)


def test_bundled_models_load_with_their_manifest() -> None:
    models = list_bundles()
    assert models and all(m.in_manifest for m in models)
    assert primary_model(models) is not None
    for model in models:
        bundle = load_bundle(model.path)
        assert bundle.reference is not None and bundle.reference.eval_predictions is not None
        assert model.checkpoint is None or model.checkpoint.is_file()
        assert (REPO / str(model.config)).is_file(), model.config


MAX_BUNDLES_BYTES = 40_000_000  # the bundled models' size limit (hwsim/pretrained/bundles/README.md)


def test_bundled_models_stay_under_40_mb() -> None:
    """Every file the package ships under bundles/ (models, checkpoints, metrics) together: the
    reference codes take the smallest dtype of their range, which keeps it so."""
    total = sum(f.stat().st_size for f in BUNDLES_DIR.rglob("*") if f.is_file())
    assert 0 < total < MAX_BUNDLES_BYTES, total


def test_float_record_errors_name_the_field(bundle: Path, tmp_path: Path) -> None:
    d = tmp_path / "b"
    d.mkdir()
    (d / "m1").symlink_to(bundle)
    doc = {"manifest_version": 1, "models": {"m1": ENTRY}}
    (d / "MANIFEST.yaml").write_text(yaml.safe_dump(doc))
    assert float_baseline(d) is None
    for record, match in [
        ({"commands": []}, "float: field 'top1_pytorch' is missing"),
        ({"top1_pytorch": 71.3, "commands": []}, "float, field 'top1_pytorch': 71.3"),
        ({"top1_pytorch": 0.7, "commands": [], "epochs": 3}, "float: field 'epochs' is unknown"),
        ({"top1_pytorch": 0.7, "commands": [], "checkpoint": "f.pt"}, "float, field 'checkpoint'"),
    ]:
        (d / "MANIFEST.yaml").write_text(yaml.safe_dump({**doc, "float": record}))
        with pytest.raises(ManifestError, match=match):
            float_baseline(d)
    (d / "f.pt").write_bytes(b"x")
    (d / "MANIFEST.yaml").write_text(
        yaml.safe_dump(
            {**doc, "float": {"top1_pytorch": 0.7, "commands": ["qat train"], "checkpoint": "f.pt"}}
        )
    )
    base = float_baseline(d)
    assert base is not None and base.top1_pytorch == 0.7 and base.checkpoint == d / "f.pt"


def test_bundled_float_baseline_ships_its_checkpoint() -> None:
    base = float_baseline()
    assert base is not None and base.checkpoint is not None and base.checkpoint.is_file()
    assert 0.0 < base.top1_pytorch < 1.0


def test_seed_drops_name_existing_configs() -> None:
    for key, drops in SEED_DROPS.items():
        assert (REPO / "configs/quant" / f"{key}.yaml").is_file(), key
        assert all(0.0 < d.drop < d.float_top1 for d in drops), key


def test_replace_table_keeps_the_text_around_it() -> None:
    doc = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    assert replace_table(doc, "new\n", "x.md") == f"intro\n{BEGIN}\nnew\n{END}\noutro\n"
    with pytest.raises(UserError, match="x.md: no results table markers"):
        replace_table("intro\n", "new\n", "x.md")


def test_results_without_data_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    assert main([]) == 2
    assert "pass --data DIR or set CIFAR10_DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_results_page_matches_the_bundled_models(cifar10_dir: Path) -> None:
    """docs/results.md's table is what the shipped bundles give on the test split, and every model's
    emulator top-1 is within MAX_GAP_POINTS of its PyTorch top-1 (recorded by the export)."""
    models = list_bundles()
    rows, baseline = measure(cifar10_dir)
    assert [r.name for r in rows] == [m.name for m in models]
    for model, row in zip(models, rows, strict=True):
        assert row.top1_pytorch is not None and row.gap_points is not None, model.name
        assert abs(row.gap_points) <= MAX_GAP_POINTS, (model.name, row.gap_points)
        assert model.top1_pytorch == pytest.approx(row.top1_pytorch, abs=5e-5), model.name
    page = (REPO / "docs/results.md").read_text()
    assert replace_table(page, table_markdown(rows, baseline), "docs/results.md") == page
