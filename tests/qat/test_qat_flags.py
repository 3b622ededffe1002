"""qat's numeric flags and data: finite and in range (the range in the message), through the real CLI;
TrainConfig refuses the same values through the API; reference images and labels are checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.errors import UserError
from hwsim.flags import SEED_RANGE
from qat.checkpoint import load_model
from qat.cli import main as qat_main
from qat.export import ExportError, ReferenceSet, export_model
from qat.train import TrainConfig

DATA = ["--synthetic", "16", "--device", "cpu", "--batch-size", "16"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


Cli = Callable[[Callable[[list[str]], int], list[str]], tuple[int, str]]  # the `cli` fixture


# (command line before the flag, flag, bad value, the legal range the message states)
TRAIN = ["train", "--epochs", "1", "--out", "never"]
EVAL = ["eval", "never.pt"]
EXPORT = ["export", "never.pt", "--out", "never"]
BAD_FLAGS: list[tuple[list[str], str, str, str]] = [
    (TRAIN, "--lr", "nan", "a finite number in (0, inf)"),
    (TRAIN, "--lr", "0", "a finite number in (0, inf)"),
    (TRAIN, "--lr", "-1", "a finite number in (0, inf)"),
    (TRAIN, "--lr", "inf", "a finite number in (0, inf)"),
    (TRAIN, "--momentum", "1", "a finite number in [0, 1)"),
    (TRAIN, "--momentum", "-0.1", "a finite number in [0, 1)"),
    (TRAIN, "--weight-decay", "nan", "a finite number in [0, 1]"),
    (TRAIN, "--weight-decay", "-1e-4", "a finite number in [0, 1]"),
    (TRAIN, "--gamma", "-5", "a finite number in (0, 1]"),
    (TRAIN, "--gamma", "0", "a finite number in (0, 1]"),
    (TRAIN, "--gamma", "nan", "a finite number in (0, 1]"),
    (["train", "--out", "never"], "--epochs", "0", "an integer in 1..1000000"),
    (["train", "--out", "never"], "--epochs", "1.5", "an integer in 1..1000000"),
    (TRAIN, "--batch-size", "0", "an integer in 1..1048576"),
    (TRAIN, "--seed", "-1", f"an integer in {SEED_RANGE[0]}..{SEED_RANGE[1]}"),
    (TRAIN, "--seed", str(2**32), f"an integer in {SEED_RANGE[0]}..{SEED_RANGE[1]}"),
    (TRAIN, "--workers", "-1", "an integer in 0..1024"),
    (TRAIN, "--milestones", "0", "an integer in 1..1000000"),
    (TRAIN, "--synthetic", "0", "an integer in 1..50000"),
    (TRAIN, "--synthetic", "1000000000", "an integer in 1..50000"),
    (EVAL, "--batch-size", "0", "an integer in 1..1048576"),
    (EVAL, "--workers", "-3", "an integer in 0..1024"),
    (EVAL, "--synthetic", "-5", "an integer in 1..50000"),
    (EXPORT, "--batch-size", "0", "an integer in 1..1048576"),
    (EXPORT, "--reference-images", "0", "an integer >= 1"),
    (EXPORT, "--reference-images", "x", "an integer >= 1"),
    (EXPORT, "--calibrate-float", "1", "an integer in 2.."),
    (EXPORT, "--mult-bits", "1", "an integer in 2..63"),
    (EXPORT, "--mult-bits", "64", "an integer in 2..63"),
    (EXPORT, "--synthetic", "0", "an integer in 1..50000"),
]


@pytest.mark.parametrize(
    ("argv", "flag", "value", "legal"), BAD_FLAGS, ids=[f"{a[0]} {f} {v}" for a, f, v, _ in BAD_FLAGS]
)
def test_a_bad_flag_value_exits_2_with_its_range(
    argv: list[str], flag: str, value: str, legal: str, cli: Cli
) -> None:
    code, err = cli(qat_main, [*argv, f"{flag}={value}"])  # "=": a value such as -1 is not an option
    assert code == 2
    assert f"argument {flag}: expected {legal}" in err and f"got '{value}'" in err, err
    assert "Traceback" not in err


FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 1.0, -0.0, 1e-300, 5.0])


@given(lr=FLOATS, momentum=FLOATS, weight_decay=FLOATS, gamma=FLOATS)
def test_train_config_refuses_what_the_cli_refuses(
    lr: float, momentum: float, weight_decay: float, gamma: float
) -> None:
    legal = math.isfinite(lr) and lr > 0 and 0 <= momentum < 1 and 0 <= weight_decay <= 1 and 0 < gamma <= 1
    kwargs = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "gamma": gamma}
    if legal:
        assert TrainConfig(epochs=3, **kwargs).lr == lr
    else:
        with pytest.raises(UserError, match=r"expected a finite number in"):
            TrainConfig(epochs=3, **kwargs)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "--epochs 0: expected an integer in 1..1000000"),
        ("epochs", 2.0, "--epochs 2.0: expected an integer"),
        ("epochs", True, "--epochs True: expected an integer"),
        ("batch_size", 0, "--batch-size 0: expected an integer in 1.."),
        ("seed", -1, "--seed -1: expected an integer in 0.."),
        ("workers", "2", "--workers '2': expected an integer in 0..1024"),
        ("milestones", (3,), "--milestones 3: expected an integer in 1..2"),
        ("milestones", [1], "--milestones [1]: expected a tuple"),
        ("lr", "0.1", "--lr '0.1': expected a finite number"),
    ],
)
def test_train_config_validates_every_field(field: str, value: object, message: str) -> None:
    kwargs: dict[str, object] = {"epochs": 2, "lr": 0.1, field: value}
    with pytest.raises(UserError) as err:
        TrainConfig(**kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """best.pt of a toynet trained one epoch with 4-bit weights and activations on generated images."""
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path_factory.mktemp("flags") / "run"
    cfg = repo / "configs/quant/dorefa_a4w4.yaml"
    assert (
        qat_main(
            ["train", "--model", "toynet", "--quant", str(cfg), "--epochs", "1", "--out", str(out), *DATA]
        )
        == 0
    )
    yield out / "best.pt"


def test_reference_images_beyond_the_data_is_an_error(quantized: Path, tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "bundle"
    argv = ["export", str(quantized), "--out", str(out), "--synthetic", "8", "--device", "cpu"]
    code, err = cli(qat_main, [*argv, "--reference-images", "100"])
    assert code == 2 and "--reference-images 100" in err and "only 8 images" in err, err
    assert "Traceback" not in err and not out.exists()
    code, err = cli(qat_main, argv)  # the default takes what there is
    assert code == 0, err
    from hwsim.bundle import load_bundle

    assert load_bundle(out).reference.images == 8  # type: ignore[union-attr]


def _refs(labels: np.ndarray) -> ReferenceSet:
    return ReferenceSet(np.zeros((len(labels), 32, 32, 3), np.uint8), labels, "test")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 1000]), "reference label 1000 (image 1) is not a class of the model's 10 outputs"),
        (np.array([-2, 0]), "reference label -2 (image 0)"),
    ],
)
def test_reference_labels_outside_the_classes_are_refused(
    quantized: Path, tmp_path: Path, labels: np.ndarray, message: str
) -> None:
    model, _ = load_model(quantized)
    import torch

    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_model(model, tmp_path / "b", _refs(labels), device=torch.device("cpu"))
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("labels", [np.array([0.5, 1.0]), np.array(["a", "b"]), np.array([[0, 1]])])
def test_reference_labels_must_be_integers_one_per_image(labels: np.ndarray) -> None:
    with pytest.raises(ExportError, match=r"expected integers \[2\]|expected integers \[1\]"):
        ReferenceSet(np.zeros((2 if labels.ndim == 1 else 1, 32, 32, 3), np.uint8), labels, "test")
