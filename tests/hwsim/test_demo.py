"""hwsim demo end to end on small bundles, with and without a data set; its hardware and reports/README.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.cli import main
from hwsim.demo import DEMO_HW, reports_readme
from hwsim.hwconfig import load_hw_config

REPO = Path(__file__).resolve().parents[2]

# Small and fast: 2 random ResNet20s, few images and widths (the defaults are for the bundled models).
FAST = [
    "--sweep-images", "4", "--acc-widths", "12,16,20,24", "--precision-widths", "2,3", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def bundles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two bundles (a4w4 and a2w2) whose references are the emulator's own, and a manifest."""
    d = tmp_path_factory.mktemp("bundles")
    random_resnet20_bundle(d / "r_a4w4", 4, 4, seed=0, reference_images=8)
    random_resnet20_bundle(d / "r_a2w2", 2, 2, seed=1, reference_images=8)

    def entry(title: str, bits: int) -> dict[str, object]:
        return {"title": title, "method": "random", "w_bits": bits, "a_bits": bits, "config": "none",
                "commands": ["random_resnet20_bundle"]}  # fmt: skip

    manifest = {
        "manifest_version": 1,
        "primary": "r_a2w2",
        "models": {"r_a4w4": entry("Random a4w4", 4), "r_a2w2": entry("Random a2w2", 2)},
    }
    (d / "MANIFEST.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return d


@pytest.fixture(scope="module")
def demo_out(bundles_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CIFAR10_DIR", raising=False)  # no data set: the demo runs on the reference images
        assert main(["demo", "--bundles", str(bundles_dir), "--out", str(out), "--jobs", "2", *FAST]) == 0
    return out


def test_demo_writes_index_and_reports_without_a_dataset(demo_out: Path, bundles_dir: Path) -> None:
    for name in ("index.md", "index.html", "index.json", "index_accuracy.png", "index_latency.png"):
        assert (demo_out / name).is_file(), name
    index = json.loads((demo_out / "index.json").read_text())
    assert [m["name"] for m in index["models"]] == ["r_a4w4", "r_a2w2"]  # manifest order
    assert index["precision_models"] == ["r_a2w2"]  # the manifest's primary
    md = (demo_out / "index.md").read_text()
    assert "figures that need a labelled data set" in md
    assert "[Random a4w4](r_a4w4/report.md)" in md
    html = (demo_out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and 'href="r_a4w4/report.html"' in html
    for model in index["models"]:
        name = model["name"]
        report = json.loads((demo_out / name / "report.json").read_text())
        t = report["totals"]
        # the references are the emulator's own codes: every layer is exact and every image agrees
        assert t["layers_exact"] == t["layers_compared"] > 0 and t["top1_agreement"] == 1.0
        assert t["array_value_mismatches@ws_16x16"] == 0 and t["array_value_mismatches@os_16x16"] == 0
        bundle = load_bundle(bundles_dir / name)
        bits = {"nominal": 0, "stored": 0}
        for node in bundle.mac_nodes:
            bits["nominal"] += node.weight.size * node.weight_format.nominal_bits
            bits["stored"] += node.weight.size * node.weight_format.bits
        assert (t["weight_bits_nominal"], t["weight_bits_stored"]) == (bits["nominal"], bits["stored"])
        assert t["latency_us@ws_16x16"] == pytest.approx(sum(r["latency_us"] for r in report["layers"]))
        assert all(r["cycles"] > 0 for r in report["layers"])
        for png in ("error_per_layer.png", "latency.png", "overflow.png", "acc_sweep.png"):
            assert (demo_out / name / png).stat().st_size > 1000
    primary = json.loads((demo_out / "r_a2w2" / "report.json").read_text())
    assert (
        "min_w_bits" in primary["layers"][0] and (demo_out / "r_a2w2" / "sensitivity_acc_bits.png").is_file()
    )
    assert not list(demo_out.parent.glob(".demo.*"))  # no staging directory left behind


def test_demo_reports_accuracy_with_data(bundles_dir: Path, tmp_path: Path, cifar10_dir: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--bundles", str(bundles_dir), "--out", str(out), "--models", "r_a4w4"]
    assert main([*args, "--data", str(cifar10_dir), "--test-images", "16", "--jobs", "1", *FAST]) == 0
    totals = json.loads((out / "r_a4w4" / "report.json").read_text())["totals"]
    assert totals["test_set_images"] == 16
    assert 0.0 <= totals["test_set_top1_emulator"] <= 1.0
    assert "test set" in (out / "index.md").read_text()


def test_unknown_model_is_a_user_error(
    bundles_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["demo", "--bundles", str(bundles_dir), "--out", str(tmp_path / "d"), "--models", "nope"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "r_a4w4, r_a2w2" in err
    assert not (tmp_path / "d").exists()


def test_refuses_to_replace_a_directory_that_is_not_a_demo(
    bundles_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("keep me")
    assert main(["demo", "--bundles", str(bundles_dir), "--out", str(keep), *FAST]) == 2
    assert "not a previous demo output" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "keep me"


def test_demo_hardware_equals_the_repository_configs() -> None:
    assert DEMO_HW[0] == load_hw_config(REPO / "configs/hw/ws_16x16.yaml")
    assert DEMO_HW[1] == load_hw_config(REPO / "configs/hw/os_16x16.yaml")


def test_reports_readme_is_current() -> None:
    # reports/README.md is generated from hwsim.report.COLUMN_HELP and hwsim.demo's help dicts
    assert (REPO / "reports/README.md").read_text() == reports_readme()


def test_more_sweep_images_than_the_reference_holds_is_stated(bundles_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--bundles", str(bundles_dir), "--out", str(out), "--models", "r_a4w4", "--jobs", "1"]
    fast = [*FAST[:1], "20", *FAST[2:]]  # the bundles' references hold 8 images
    assert main([*args, *fast]) == 0
    doc = json.loads((out / "r_a4w4" / "report.json").read_text())
    assert doc["totals"]["acc_sweep_images"] == 8
    stated = "--sweep-images 20: the reference batch holds 8 images"
    assert any(stated in note for note in doc["notes"]), doc["notes"]
