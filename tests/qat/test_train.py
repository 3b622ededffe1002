"""Tests of training, checkpoints and the `qat train` / `qat eval` commands (synthetic and real images)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import qat.train
from qat.checkpoint import STATE_KEYS, load_model, read_checkpoint
from qat.cli import main as qat_main
from qat.config import config_from_dict, resolve
from qat.data import loader_from_arrays
from qat.models import build_model
from qat.train import METRIC_FIELDS, RunState, TrainConfig, evaluate, fit, make_optimizer, make_scheduler

REPO = Path(__file__).resolve().parents[2]
DATA = ["--synthetic", "64", "--device", "cpu", "--batch-size", "32"]
CHECKPOINT_KEYS = {
    "format",
    "format_version",
    "model",
    "num_classes",
    "quant",
    "quant_source",
    "normalization",
    "state_dict",
    "epoch",
    "best_top1",
    "metrics",
    "train_args",
    "optimizer",
    "scheduler",
    "data",
    "init",
    "torch_version",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = qat_main(argv)
    except SystemExit as exit_:  # argparse refused a flag's value: usage line and status 2
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_float_then_qat_then_eval_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    float_dir, qat_dir = tmp_path / "float", tmp_path / "pact"
    code, out, err = run_cli(["train", "--epochs", "2", "--out", str(float_dir), *DATA], capsys)
    assert code == 0, err
    summary = last_json(out)
    assert summary["epochs"] == 2 and summary["device"] == "cpu"
    for name in ("checkpoint.pt", "best.pt", "metrics.csv"):
        assert (float_dir / name).is_file()
    with (float_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(METRIC_FIELDS) and [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["lr"]) == 0.1  # float default lr

    payload = read_checkpoint(float_dir / "checkpoint.pt")
    assert set(payload) == CHECKPOINT_KEYS
    assert payload["model"] == "resnet20" and payload["epoch"] == 2 and payload["quant_source"] is None
    assert payload["metrics"][-1]["test_acc"] == float(rows[-1]["test_acc"])
    best = read_checkpoint(float_dir / "best.pt")
    # best.pt is selected on the validation images; the test split is only reported
    assert summary["selected_on"] == "validation"
    assert best["best_top1"] == summary["best_top1"]
    assert round(best["best_top1"], 4) == max(float(r["val_acc"]) for r in rows)  # rows keep 4 decimals
    chosen = next(r for r in rows if float(r["val_acc"]) == round(best["best_top1"], 4))
    assert best["epoch"] == int(chosen["epoch"]) and summary["best_test_top1"] == float(chosen["test_acc"])
    assert payload["optimizer"] is not None and best["optimizer"] is None and best["scheduler"] is None

    cfg = REPO / "configs/quant/pact_a4w4.yaml"
    argv = [
        "train",
        "--quant",
        str(cfg),
        "--init",
        str(float_dir / "best.pt"),
        "--epochs",
        "1",
        "--out",
        str(qat_dir),
    ]
    code, out, err = run_cli([*argv, *DATA], capsys)
    assert code == 0, err
    qat_summary = last_json(out)
    assert "loaded 131 tensors" in out  # every float tensor; the 19 PACT alphas start at pact_init
    payload = read_checkpoint(qat_dir / "checkpoint.pt")
    assert payload["init"] == str(float_dir / "best.pt")
    assert payload["train_args"]["lr"] == 0.01  # fine-tuning default
    assert payload["quant_source"]["default"]["activation"]["method"] == "pact"
    # the stored resolution is explicit per module and reloads to the same thing
    layout = build_model("resnet20").layout
    stored = resolve(config_from_dict(payload["quant"]), layout)
    assert stored.weight("layer1.0.conv1").bits == 4 and stored.weight("conv1").bits == 8
    assert stored.activation("layer3.2.act2").method == "pact"

    code, out, err = run_cli(
        ["eval", str(qat_dir / "best.pt"), "--synthetic", "64", "--device", "cpu"], capsys
    )
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"checkpoint", "model", "split", "data", "images", "top1", "loss", "device"}
    assert result["images"] == 64 and result["device"] == "cpu" and result["model"] == "resnet20"
    assert result["top1"] == pytest.approx(qat_summary["best_test_top1"], abs=1e-3)
    # the images the run held out, on which best.pt was selected: its best_top1 again
    code, out, err = run_cli(["eval", str(qat_dir / "best.pt"), "--split", "validation", *DATA], capsys)
    assert code == 0, err
    val = json.loads(out)
    assert val["split"] == "validation" and val["images"] == round(0.1 * 64)
    assert val["top1"] == pytest.approx(qat_summary["best_top1"], abs=1e-3)

    model, meta = load_model(qat_dir / "best.pt", "cpu")
    assert not model.training and meta["model"] == "resnet20"
    assert not set(STATE_KEYS) & set(meta)
    assert model.layer1[0].act1.spec.method == "pact" and model.layer1[0].conv1.weight_spec.bits == 4
    alpha = model.layer1[0].act1.quant.alpha.item()
    assert alpha != 10.0  # trained (started at pact_init = 10)


def test_resume_continues_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """An interrupted run resumed from checkpoint.pt ends with the same weights as an uninterrupted one."""
    cfg = REPO / "configs/quant/lsq_a4w4.yaml"  # LSQ: learned steps and 'initialized' buffers to carry over
    common = [
        "--quant",
        str(cfg),
        "--epochs",
        "3",
        "--lr",
        "0.02",
        "--schedule",
        "multistep",
        "--milestones",
        "2",
    ]
    code, _, err = run_cli(["train", *common, "--out", str(tmp_path / "whole"), *DATA], capsys)
    assert code == 0, err

    real_epoch = qat.train.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(qat.train, "train_one_epoch", interrupted)
    code, _, _ = run_cli(["train", *common, "--out", str(tmp_path / "split"), *DATA], capsys)
    assert code == 130
    assert read_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 2
    monkeypatch.setattr(qat.train, "train_one_epoch", real_epoch)

    code, _, err = run_cli(
        ["train", "--resume", "--epochs", "3", "--out", str(tmp_path / "split"), *DATA], capsys
    )
    assert code == 0, err
    whole = read_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    split = read_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert split["epoch"] == 3
    assert split["state_dict"].keys() == whole["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in split["metrics"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole["metrics"]
    ]
    assert [r["lr"] for r in split["metrics"]] == pytest.approx([0.02, 0.02, 0.002])


def test_user_errors_exit_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--resume", "--epochs", "1", "--out", str(run), *DATA], capsys)
    assert code == 2 and "there is no run to continue" in err and "Traceback" not in err
    other = tmp_path / "notes"  # a directory with files but no run: the advice is about --resume
    other.mkdir()
    (other / "best.pt").write_bytes(b"not a run")
    code, _, err = run_cli(["train", "--resume", "--epochs", "1", "--out", str(other), *DATA], capsys)
    assert code == 2 and "there is no run to continue" in err and "holding its checkpoint.pt" in err, err
    assert run_cli(["train", "--epochs", "1", "--out", str(run), *DATA], capsys)[0] == 0
    code, _, err = run_cli(["train", "--epochs", "1", "--out", str(run), *DATA], capsys)
    assert code == 2 and "pass --resume to continue that run, or choose another --out" in err
    code, _, err = run_cli(["train", "--resume", "--epochs", "5", "--out", str(run), *DATA], capsys)
    assert code == 2 and "pass --epochs 1" in err
    code, _, err = run_cli(
        [
            "train",
            "--model",
            "toynet",
            "--init",
            str(run / "best.pt"),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "t"),
            *DATA,
        ],
        capsys,
    )
    assert code == 2 and "the checkpoint is a resnet20" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(["eval", str(junk), "--synthetic", "8"], capsys)
    assert code == 2 and "not a readable PyTorch checkpoint" in err and "Traceback" not in err
    code, _, err = run_cli(["eval", str(tmp_path / "none.pt"), "--synthetic", "8"], capsys)
    assert code == 2 and "no such file" in err
    whole = tmp_path / "whole"  # selected on the test split: there are no validation images to evaluate
    argv = ["train", "--epochs", "1", "--val-fraction", "0", "--out", str(whole), *DATA]
    assert run_cli(argv, capsys)[0] == 0
    code, _, err = run_cli(["eval", str(whole / "best.pt"), "--split", "validation", *DATA], capsys)
    assert code == 2 and "held out no validation images" in err and "Traceback" not in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(["eval", str(run / "best.pt"), "--synthetic", "8", "--device", "cuda"], capsys)
        assert code == 2 and "no CUDA device" in err
    code, _, err = run_cli(["train", "--epochs", "0", "--out", str(tmp_path / "z"), *DATA], capsys)
    assert code == 2 and "argument --epochs: expected an integer in 1..1000000, got '0'" in err


def test_resolve_device() -> None:
    assert qat.train.resolve_device("cpu").type == "cpu"
    assert qat.train.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("model_name", ["resnet18", "mobilenetv2", "toynet"])
def test_other_models_train_and_eval(
    model_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = REPO / "configs/quant/dorefa_a4w4.yaml"
    data = ["--synthetic", "16", "--device", "cpu", "--batch-size", "16"]
    argv = ["train", "--model", model_name, "--quant", str(cfg), "--epochs", "1", "--out", str(tmp_path)]
    code, _, err = run_cli([*argv, *data], capsys)
    assert code == 0, err
    code, out, err = run_cli(["eval", str(tmp_path / "checkpoint.pt"), *data], capsys)
    assert code == 0, err
    assert json.loads(out)["model"] == model_name


@pytest.mark.slow
def test_training_on_real_images_lowers_the_loss(cifar10_dir: Path) -> None:
    """Float ResNet20, 640 real training images, 3 epochs: the held-out loss falls below its start."""
    from hwsim.cifar10 import load_cifar10

    torch.manual_seed(0)
    train_x, train_y = load_cifar10(cifar10_dir, "train")
    test_x, test_y = load_cifar10(cifar10_dir, "test")
    train = loader_from_arrays(train_x[:640], train_y[:640], 32, train=True)
    test = loader_from_arrays(test_x[:256], test_y[:256], 256, train=False)
    model = build_model("resnet20")
    cfg = TrainConfig(epochs=3, lr=0.05)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    device = torch.device("cpu")
    before = evaluate(model, test, device)
    print(f"held-out loss at initialization {before.loss:.4f}")
    state = fit(
        model, train, None, test, cfg, device, optimizer, scheduler, RunState(), lambda s, b: None, log=print
    )
    after = evaluate(model, test, device)
    losses = [r["train_loss"] for r in state.metrics]
    assert losses[-1] < losses[0]
    assert after.loss < before.loss and after.loss < 2.25  # chance level is ln(10) = 2.30
    assert after.top1 > 15.0  # chance is 10%
