"""The whole flow through the command lines, on generated images: train -> QAT -> export -> compare.

``qat train`` (float, 1 epoch) -> ``qat train --init --quant`` (DoReFa a8w8, 1 epoch) -> ``qat export``
-> ``hwsim compare``; the report must carry the agreement numbers, and the emulator must agree
with PyTorch on the reference batch and match it at the first layer. Also: exporting the float
checkpoint is refused (exit 2) with a message that names the layer and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim.cli import main as hwsim_main
from qat.cli import main as qat_main

REPO = Path(__file__).resolve().parent.parent
DATA = ["--synthetic", "64", "--device", "cpu"]


@pytest.mark.slow
def test_train_export_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    float_dir, qat_dir = tmp_path / "float", tmp_path / "qat"
    assert qat_main(["train", "--epochs", "1", "--batch-size", "32", "--out", str(float_dir), *DATA]) == 0
    assert (
        qat_main(
            [
                "train",
                "--quant",
                str(REPO / "configs/quant/dorefa_a8w8.yaml"),
                "--init",
                str(float_dir / "best.pt"),
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--out",
                str(qat_dir),
                *DATA,
            ]
        )
        == 0
    )

    # the float model has no integer form: refused, exit 2, the layer and the fix named
    capsys.readouterr()
    assert qat_main(["export", str(float_dir / "best.pt"), "--out", str(tmp_path / "nope"), *DATA]) == 2
    err = capsys.readouterr().err
    assert "layer 'conv1' is float" in err and "--calibrate-float N" in err and "Traceback" not in err
    assert not (tmp_path / "nope").exists()

    bundle = tmp_path / "bundle"
    assert (
        qat_main(
            ["export", str(qat_dir / "best.pt"), "--out", str(bundle), "--reference-images", "16", *DATA]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "reference: 16 images on cpu" in out and "quant_logits" in out

    report = tmp_path / "report"
    assert hwsim_main(["compare", str(bundle), "--report", str(report)]) == 0
    data = json.loads((report / "report.json").read_text())
    totals = data["totals"]
    assert totals["reference_batch_images"] == 16
    # every requantized layer was compared
    compared = [r for r in data["layers"] if r["mismatch_rate"] is not None]
    assert len(compared) == 20
    print("mismatch rate per layer:", {r["name"]: r["mismatch_rate"] for r in compared})
    print("top-1 agreement on the reference batch:", totals["top1_agreement"])
    assert totals["top1_agreement"] is not None and totals["top1_agreement"] >= 0.9
    # the first requantizer sees identical inputs on both sides (no upstream difference to
    # propagate): only the constants' rounding separates it from PyTorch; later layers compound
    # the differences of earlier ones, so their end-to-end rates are printed, not bounded
    first = compared[0]
    assert first["name"] == "act1" and first["mismatch_rate"] < 0.001 and first["max_abs_err_lsb"] <= 1
