"""qat.checkpoint: every key eval, export and --resume read is checked on load, with one clear message.

Each case writes a mutated copy of a real checkpoint (a toynet trained one epoch of two on generated
images) and runs the real CLI on it: exit status 2, the file and the key named, no traceback. A
control run on the unmodified copy succeeds, so the cases fail for the mutation alone.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import qat.train
from qat.checkpoint import CheckpointError, read_checkpoint
from qat.cli import main as qat_main

DATA = ["--synthetic", "16", "--device", "cpu", "--batch-size", "16"]
TRAIN = ["--model", "toynet", "--epochs", "2", *DATA]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


Cli = Callable[[Callable[[list[str]], int], list[str]], tuple[int, str]]  # the `cli` fixture


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A run interrupted after epoch 1 of 2: checkpoint.pt can be resumed, best.pt cannot."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    real_epoch = qat.train.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args: Any, **kwargs: Any) -> tuple[float, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qat.train, "train_one_epoch", interrupted)
        assert qat_main(["train", *TRAIN, "--out", str(out)]) == 130
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    yield out


def mutated(source: Path, dest: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    payload = torch.load(source, map_location="cpu", weights_only=True)
    change(payload)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dest)
    return dest


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda p: p.__setitem__(key, value)


def _sub(key: str, sub: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda p: p[key].__setitem__(sub, value)


def _fc_shape(p: dict[str, Any]) -> None:
    name = next(k for k in p["state_dict"] if k.endswith("weight"))
    p["state_dict"][name] = torch.zeros(3, 3)


class Case(NamedTuple):
    """A mutation of a checkpoint, the key the message must name and a fragment of its problem."""

    name: str
    change: Callable[[dict[str, Any]], None]
    key: str
    fragment: str


LOAD_CASES = [
    Case(*c)
    for c in [
        ("wrong tensor shape", _fc_shape, "state_dict", "has shape [3, 3]"),
        (
            "missing tensor",
            lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))),
            "state_dict",
            "missing",
        ),
        (
            "extra tensor",
            lambda p: p["state_dict"].__setitem__("x.w", torch.zeros(1)),
            "state_dict",
            "unexpected",
        ),
        ("state_dict list", _set("state_dict", [1, 2]), "state_dict", "expected a non-empty dict"),
        (
            "state_dict entry",
            lambda p: p["state_dict"].__setitem__("x", 5),
            "state_dict",
            "expected a named tensor",
        ),
        ("normalization list", _set("normalization", [1, 2]), "normalization", "expected a dict"),
        ("normalization str", _set("normalization", "imagenet"), "normalization", "expected a dict"),
        ("std zero", _sub("normalization", "std", [0.2, 0.0, 0.2]), "normalization", "std[1]"),
        ("std nan", _sub("normalization", "std", [0.2, math.nan, 0.2]), "normalization", "finite"),
        ("mean two", _sub("normalization", "mean", [0.5, 0.5]), "normalization", "3 numbers"),
        ("mean strings", _sub("normalization", "mean", ["a", "b", "c"]), "normalization", "mean[0]"),
        ("quant str", _set("quant", "pact"), "quant", "expected a dict"),
        ("quant garbage", _set("quant", {"default": 5}), "quant", "not a loadable"),
        ("quant_source int", _set("quant_source", 5), "quant_source", "expected a dict or None"),
        ("num_classes str", _set("num_classes", "10"), "num_classes", "expected an integer >= 2"),
        ("num_classes 1", _set("num_classes", 1), "num_classes", "expected an integer >= 2"),
        ("num_classes other", _set("num_classes", 7), "state_dict", "num_classes 7"),
        ("model", _set("model", "vgg"), "model", "is not one of"),
        ("epoch negative", _set("epoch", -1), "epoch", "expected an integer >= 0"),
        ("epoch float", _set("epoch", 1.5), "epoch", "expected an integer >= 0"),
        ("best_top1 nan", _set("best_top1", math.nan), "best_top1", "finite"),
        ("metrics str", _set("metrics", "x"), "metrics", "list of per-epoch dicts"),
        ("metrics row", _set("metrics", [{}]), "metrics", "row 0 lacks"),
        ("train_args str", _set("train_args", "x"), "train_args", "expected a dict"),
        ("train_args lr", _sub("train_args", "lr", math.nan), "train_args", "--lr nan"),
        ("train_args epochs", _sub("train_args", "epochs", "2"), "train_args", "--epochs '2'"),
        ("train_args unknown", _sub("train_args", "warmup", 3), "train_args", "unknown field"),
        ("optimizer int", _set("optimizer", 5), "optimizer", "expected a state_dict"),
        ("scheduler str", _set("scheduler", "x"), "scheduler", "expected a state_dict"),
        ("data int", _set("data", 5), "data", "expected a string"),
    ]
]


@pytest.mark.parametrize("case", LOAD_CASES, ids=[c.name for c in LOAD_CASES])
def test_a_bad_key_is_named_by_eval_export_and_init(
    case: Case, run_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    bad = mutated(run_dir / "best.pt", tmp_path / "bad.pt", case.change)
    commands = [
        ["eval", str(bad), *DATA],
        ["export", str(bad), "--out", str(tmp_path / "bundle"), "--calibrate-float", "8", *DATA],
        [
            "train",
            "--model",
            "toynet",
            "--init",
            str(bad),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "r"),
            *DATA,
        ],
    ]
    for argv in commands:
        code, err = cli(qat_main, argv)
        assert code == 2, (argv[0], err)
        assert f"checkpoint {bad}: key {case.key!r}" in err and case.fragment in err, (argv[0], err)
        assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "r").exists()


def test_the_unmodified_checkpoint_loads(run_dir: Path, tmp_path: Path, cli: Cli) -> None:
    """The control of the cases above: the same commands on the unchanged file succeed."""
    good = mutated(run_dir / "best.pt", tmp_path / "good.pt", lambda p: None)
    assert cli(qat_main, ["eval", str(good), *DATA])[0] == 0
    export = ["export", str(good), "--out", str(tmp_path / "bundle"), "--calibrate-float", "8", *DATA]
    assert cli(qat_main, export)[0] == 0


def _zip_not_torch(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.txt", "hello")


class _Code:
    """Unpickling this makes the directory ``path`` (what a pickle with code could do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.path),))


@pytest.mark.parametrize(
    ("case", "write", "fragment"),
    [
        ("random bytes", lambda p: p.write_bytes(bytes(range(256)) * 4), "not a readable PyTorch checkpoint"),
        ("empty", lambda p: p.write_bytes(b""), "not a readable PyTorch checkpoint"),
        ("zip", _zip_not_torch, "not a readable PyTorch checkpoint"),
        (
            "pickle with code",
            lambda p: p.write_bytes(pickle.dumps(_Code(p.parent / "ran"))),
            "not a readable PyTorch checkpoint",
        ),
        ("torch list", lambda p: torch.save([1, 2], p), "not a qat checkpoint"),
        ("torch dict", lambda p: torch.save({"model": "resnet20"}, p), "not a qat checkpoint"),
        ("a directory", lambda p: p.mkdir(), "no such file"),
    ],
)
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_checkpoints(
    case: str,
    write: Callable[[Path], None],
    fragment: str,
    tmp_path: Path,
    cli: Cli,
) -> None:
    path = tmp_path / "x.pt"
    write(path)
    code, err = cli(qat_main, ["eval", str(path), *DATA])
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "ran").exists()  # the pickle's code did not run
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def _momentum_shape(p: dict[str, Any]) -> None:
    entry = next(iter(p["optimizer"]["state"].values()))
    entry["momentum_buffer"] = torch.zeros(2, 2)


RESUME_CASES = [
    Case(*c)
    for c in [
        ("best.pt", lambda p: p.update(optimizer=None, scheduler=None), "optimizer", "no optimizer state"),
        ("no optimizer", lambda p: p.pop("optimizer"), "optimizer", "cannot be resumed"),
        ("no epoch", lambda p: p.pop("epoch"), "epoch", "cannot be resumed"),
        ("no train_args", lambda p: p.pop("train_args"), "train_args", "cannot be resumed"),
        ("no scheduler", lambda p: p.pop("scheduler"), "scheduler", "cannot be resumed"),
        ("epoch str", _set("epoch", "1"), "epoch", "expected an integer >= 0"),
        ("epoch past", _set("epoch", 5), "epoch", "past the run's 2 epochs"),
        ("metrics count", _set("metrics", []), "metrics", "0 rows for 1 completed epochs"),
        ("train_args gamma", _sub("train_args", "gamma", -5.0), "train_args", "--gamma -5.0"),
        (
            "optimizer groups",
            _set("optimizer", {"state": {}, "param_groups": []}),
            "optimizer",
            "parameter groups",
        ),
        ("optimizer state", _sub("optimizer", "state", 5), "optimizer", "parameter groups"),
        ("momentum shape", _momentum_shape, "optimizer", "expected a tensor of shape"),
        ("scheduler fields", _set("scheduler", {}), "scheduler", "fields missing"),
        ("scheduler type", _sub("scheduler", "last_epoch", "1"), "scheduler", "wrong type"),
    ]
]


@pytest.mark.parametrize("case", RESUME_CASES, ids=[c.name for c in RESUME_CASES])
def test_resume_from_a_file_that_cannot_be_resumed(
    case: Case, run_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    ckpt = mutated(run_dir / "checkpoint.pt", run / "checkpoint.pt", case.change)
    before = ckpt.read_bytes()
    code, err = cli(qat_main, ["train", "--resume", "--epochs", "2", "--out", str(run), *DATA])
    assert code == 2, err
    assert f"checkpoint {ckpt}: key {case.key!r}" in err and case.fragment in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    if "cannot be resumed" in case.fragment or case.name == "best.pt":
        assert f"--init {ckpt}" in err  # what to pass instead
    assert ckpt.read_bytes() == before  # nothing written


def test_resume_from_the_unmodified_checkpoint_runs(run_dir: Path, tmp_path: Path, cli: Cli) -> None:
    """The control of the resume cases: the same command on the unchanged run finishes epoch 2."""
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    code, err = cli(qat_main, ["train", "--resume", "--epochs", "2", "--out", str(run), *DATA])
    assert code == 0, err
    assert read_checkpoint(run / "checkpoint.pt")["epoch"] == 2


def test_a_run_from_before_the_validation_split_resumes_selecting_on_test(
    run_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    """Rows without val_loss/val_acc and train_args without val_fraction: such a run resumes as it
    was started, with no validation split (best.pt follows the test top-1)."""
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))

    def older(payload: dict[str, Any]) -> None:
        del payload["train_args"]["val_fraction"]
        for row in payload["metrics"]:
            del row["val_loss"], row["val_acc"]
        payload["best_top1"] = payload["metrics"][-1]["test_acc"]

    mutated(run / "checkpoint.pt", run / "checkpoint.pt", older)
    code, err = cli(qat_main, ["train", "--resume", "--epochs", "2", "--out", str(run), *DATA])
    assert code == 0, err
    payload = read_checkpoint(run / "checkpoint.pt")
    assert payload["epoch"] == 2 and payload["train_args"]["val_fraction"] == 0.0
    assert "val_acc" not in payload["metrics"][-1]
    assert payload["best_top1"] == pytest.approx(max(r["test_acc"] for r in payload["metrics"]), abs=1e-4)
    first_row = (run / "metrics.csv").read_text().splitlines()[1]
    assert ",," in first_row  # the validation columns of the older rows are empty


def test_missing_required_keys_are_listed(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "x.pt"
    torch.save({"format": "qat-checkpoint", "format_version": 1, "model": "toynet"}, path)
    code, err = cli(qat_main, ["eval", str(path), *DATA])
    assert code == 2 and "missing key(s) ['num_classes', 'quant', 'normalization', 'state_dict']" in err
