"""The bundled models' learning curves: metrics.csv packed beside each model, read, drawn into a PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.errors import UserError
from hwsim.output import OutputError
from hwsim.pretrained import float_baseline, list_bundles
from hwsim.pretrained.curves import (
    METRICS_FILE,
    bundled_curves,
    main,
    plot_learning_curves,
    read_curve,
)
from hwsim.pretrained.pack import pack_bundle

HEADER = "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,seconds\n"
ROWS = (
    "1,0.1,2.0,20.0,2.1,18.0,2.2,19.0,3.0\n"
    "2,0.05,1.5,40.0,1.7,35.0,1.8,33.0,3.0\n"
    "3,0.0,1.2,55.0,1.8,34.0,1.6,41.0,3.0\n"
)


def test_a_curve_is_read_with_its_best_epoch_chosen_on_validation(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text(HEADER + ROWS)
    curve = read_curve(path, "m")
    assert curve.epochs == (1, 2, 3) and curve.val_acc == (18.0, 35.0, 34.0)
    assert curve.best_epoch == 2  # best validation top-1, although epoch 3 has the best test top-1
    # a run without a validation split (the columns empty, or absent in older files): test decides
    unvalidated = ROWS
    for cells in (",2.1,18.0,", ",1.7,35.0,", ",1.8,34.0,"):
        unvalidated = unvalidated.replace(cells, ",,,")
    path.write_text(HEADER + unvalidated)
    assert read_curve(path, "m").val_acc == () and read_curve(path, "m").best_epoch == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "expected a metrics.csv of qat train"),
        ("epoch,lr\n1,0.1\n", "expected a metrics.csv of qat train"),
        (HEADER + "1,0.1,x,20,2,18,2,19,3\n", r"metrics.csv:2: column train_loss: 'x' is not a number"),
        (HEADER + "1,0.1,nan,20,2,18,2,19,3\n", r"metrics.csv:2: column train_loss: nan is not finite"),
    ],
)
def test_a_bad_metrics_file_is_named(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text(text)
    with pytest.raises(UserError, match=match):
        read_curve(path, "m")


def test_pack_ships_the_runs_metrics_and_the_plot_draws_them(tmp_path: Path) -> None:
    src = random_resnet20_bundle(tmp_path / "src", 4, 4, seed=3, reference_images=2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"checkpoint bytes")
    (run / METRICS_FILE).write_text(HEADER + ROWS)
    pkg = tmp_path / "pkg"
    dest = pack_bundle(src, "m1", pkg, reference_images=2, checkpoint=run / "best.pt")
    assert (dest / METRICS_FILE).read_text() == HEADER + ROWS
    assert load_bundle(dest).reference is not None
    assert [c.title for c in bundled_curves(pkg)] == ["m1"]  # no manifest: titled by directory
    # the float model's metrics lie beside its checkpoint (the manifest's float record)
    (pkg / "float.pt").write_bytes(b"checkpoint bytes")
    (pkg / "float.metrics.csv").write_text(HEADER + ROWS)
    entry = {"title": "M1", "method": "x", "w_bits": 4, "a_bits": 4, "config": "c", "commands": []}
    manifest = {
        "manifest_version": 1,
        "primary": "m1",
        "models": {"m1": entry},
        "float": {"checkpoint": "float.pt", "top1_pytorch": 0.5, "commands": ["qat train"]},
    }
    (pkg / "MANIFEST.yaml").write_text(yaml.safe_dump(manifest))
    curves = bundled_curves(pkg)
    assert [c.title for c in curves] == ["float ResNet20", "M1"]

    png = tmp_path / "curves.png"
    assert plot_learning_curves(curves, png) == png and png.read_bytes().startswith(b"\x89PNG")
    plot_learning_curves(curves, png)  # its own previous output: replaced
    other = tmp_path / "other.png"
    other.write_bytes(b"\x89PNG not ours")
    with pytest.raises(OutputError):
        plot_learning_curves(curves, other)
    assert other.read_bytes() == b"\x89PNG not ours"
    assert main(["--out", str(tmp_path / "c.txt"), "--directory", str(pkg)]) == 2
    assert main(["--out", str(tmp_path / "c.png"), "--directory", str(tmp_path / "src")]) == 2  # no models


def test_every_bundled_model_ships_curves_whose_best_epoch_is_its_checkpoint() -> None:
    """graph.yaml records the epoch of the best.pt it was exported from; metrics.csv must agree."""
    baseline = float_baseline()
    assert baseline is not None and baseline.checkpoint is not None
    assert baseline.checkpoint.with_suffix(".metrics.csv").is_file()
    for model in list_bundles():
        curve = read_curve(model.path / METRICS_FILE, model.title)
        assert curve.val_acc, f"{model.name}: best.pt was not selected on a validation split"
        exported = load_bundle(model.path).meta.quantization["checkpoint"]["epoch"]
        assert curve.best_epoch == exported, model.name
        assert (
            abs(
                load_bundle(model.path).meta.quantization["checkpoint"]["best_top1"]
                - curve.val_acc[curve.epochs.index(exported)]
            )
            < 1e-3
        )
    assert len(bundled_curves()) == len(list_bundles()) + 1
