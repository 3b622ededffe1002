"""Tests of hwsim/cifar10.py: the numpy CIFAR-10 reader, its errors, and the synthetic data."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.cifar10 import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    TEST_FILES,
    TRAIN_FILES,
    load_cifar10,
    synthetic_cifar10,
)
from hwsim.errors import UserError


def write_batches(
    directory: Path, per_batch: int = 4, seed: int = 0, protocol: int = 2
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A CIFAR-10 directory in the standard python-pickle layout (as the CIFAR-10 page ships it:
    dicts with bytes keys, ``data`` uint8 [N, 3072] in CHW order, ``labels`` a list of ints)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in TRAIN_FILES + TEST_FILES:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"x.png"] * per_batch,
        }
        with (directory / name).open("wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("protocol", [2, 5])
def test_reads_the_standard_layout_in_order_and_as_hwc(tmp_path: Path, protocol: int) -> None:
    written = write_batches(tmp_path / "cifar-10-batches-py", per_batch=3, protocol=protocol)
    images, labels = load_cifar10(tmp_path / "cifar-10-batches-py", "train")
    assert images.shape == (15, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    expected_labels = sum((written[n][1] for n in TRAIN_FILES), [])
    assert labels.tolist() == expected_labels
    # Row 0 of data_batch_2 is image 3; its CHW bytes: red plane first, then green, then blue.
    raw = written["data_batch_2"][0][0]
    assert np.array_equal(images[3][..., 0].reshape(-1), raw[:1024])
    assert np.array_equal(images[3][..., 1].reshape(-1), raw[1024:2048])
    assert np.array_equal(images[3][..., 2].reshape(-1), raw[2048:])
    assert images[3, 0, 1, 0] == raw[1]  # row 0, column 1, red
    assert images[3, 1, 0, 2] == raw[2048 + 32]  # row 1, column 0, blue

    test_images, test_labels = load_cifar10(tmp_path / "cifar-10-batches-py", "test")
    assert test_images.shape == (3, 32, 32, 3)
    assert test_labels.tolist() == written["test_batch"][1]


def test_missing_directory_names_the_files_and_where_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_cifar10(tmp_path / "nowhere", "test")
    msg = str(err.value)
    assert "nowhere" in msg and "test_batch" in msg and "data_batch_1" in msg
    assert "cifar-10-batches-py" in msg and "cs.toronto.edu/~kriz/cifar.html" in msg


def test_missing_batch_file_is_named(tmp_path: Path) -> None:
    root = tmp_path / "cifar"
    write_batches(root)
    (root / "data_batch_4").unlink()
    with pytest.raises(UserError, match=r"lacks data_batch_4"):
        load_cifar10(root, "train")
    load_cifar10(root, "test")  # the test split does not need it


def test_parent_directory_gets_a_hint_to_the_subdirectory(tmp_path: Path) -> None:
    write_batches(tmp_path / "cifar-10-batches-py")
    with pytest.raises(UserError, match=r"subdirectory cifar-10-batches-py/"):
        load_cifar10(tmp_path, "test")


def test_truncated_file_is_a_user_error(tmp_path: Path) -> None:
    root = tmp_path / "cifar"
    write_batches(root)
    data = (root / "test_batch").read_bytes()
    (root / "test_batch").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"test_batch: not a readable CIFAR-10 python batch"):
        load_cifar10(root, "test")


def test_wrong_image_size_is_a_user_error(tmp_path: Path) -> None:
    root = tmp_path / "cifar"
    write_batches(root)
    with (root / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(UserError, match=r"expected uint8 \[N, 3072\]"):
        load_cifar10(root, "test")


def test_cifar100_labels_are_rejected(tmp_path: Path) -> None:
    root = tmp_path / "cifar"
    write_batches(root)
    with (root / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 57]}, f)
    with pytest.raises(UserError, match=r"CIFAR-100"):
        load_cifar10(root, "test")


def test_pickles_that_construct_objects_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "cifar"
    write_batches(root)
    with (root / "test_batch").open("wb") as f:
        pickle.dump({b"data": Path("x"), b"labels": [0]}, f)
    with pytest.raises(UserError, match=r"refusing to load"):
        load_cifar10(root, "test")


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"split 'val'"):
        load_cifar10(tmp_path, "val")  # type: ignore[arg-type]


def test_real_subset(cifar10_dir: Path) -> None:
    images, labels = load_cifar10(cifar10_dir, "test")
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
    assert labels.min() >= 0 and labels.max() <= 9 and len(labels) == len(images) > 0
    # The normalization constants describe real CIFAR-10 (checked loosely: a subset is not the full set).
    x = images.astype(np.float64) / 255.0
    assert np.allclose(x.mean(axis=(0, 1, 2)), CIFAR10_MEAN, atol=0.03)
    assert np.allclose(x.std(axis=(0, 1, 2)), CIFAR10_STD, atol=0.03)


def test_synthetic_is_deterministic_balanced_and_seed_dependent() -> None:
    a, la = synthetic_cifar10(50, seed=3)
    b, lb = synthetic_cifar10(50, seed=3)
    c, _ = synthetic_cifar10(50, seed=4)
    assert a.shape == (50, 32, 32, 3) and a.dtype == np.uint8 and la.dtype == np.int64
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert np.bincount(la, minlength=10).tolist() == [5] * 10


def test_synthetic_classes_differ_more_than_images_within_a_class() -> None:
    images, labels = synthetic_cifar10(400, seed=0)
    means = np.stack([images[labels == k].reshape(-1, 3).mean(axis=0) for k in range(10)])
    between = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(10, 1)].min()
    within = np.mean([images[labels == k].mean(axis=(1, 2)).std(axis=0).mean() for k in range(10)])
    assert between > within  # the class colour is a usable signal


def test_reader_does_not_import_torch() -> None:
    code = "import sys, hwsim.cifar10; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _write_test_batch(root: Path, labels: object, n: int) -> None:
    write_batches(root)
    with (root / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((n, 3072), np.uint8), b"labels": labels}, f)


@pytest.mark.parametrize(
    ("labels", "index", "fragment"),
    [
        ([0, None, 2], 1, "label 1 is None (a NoneType), not a class index"),
        ([0, 1, "cat"], 2, "label 2 is 'cat' (a str), not a class index"),
        ([0.5, 1.0, 2.0], 0, "label 0 is 0.5 (a float), not a class index"),
        (np.array([1.0, 2.5, 3.0]), 1, "label 1 is 2.5 (a float), not a class index"),
        (np.array([1.0, np.nan, 3.0]), 1, "label 1 is nan (a float), not a class index"),
        ([0, True, 2], 1, "label 1 is True (a bool)"),
        ([0, 1, 10], 2, "label 2 is 10, expected integers 0..9"),
        (np.array([3, -1, 4]), 1, "label 1 is -1, expected integers 0..9"),
        ([0, 1, 2**70], 2, f"label 2 is {2**70}, expected integers 0..9"),
        (np.array(["a", "b", "c"]), 0, "label 0 is 'a' (a str)"),
        ([[0], [1], [2]], 0, "label 0 is [0] (a list)"),
        ([10.0, 0.5, 1], 0, "label 0 is 10.0, expected integers 0..9"),
    ],
)
def test_bad_labels_name_the_file_and_the_index(
    tmp_path: Path, labels: object, index: int, fragment: str
) -> None:
    root = tmp_path / "cifar"
    _write_test_batch(root, labels, 3)
    with pytest.raises(UserError) as err:
        load_cifar10(root, "test")
    assert str(root / "test_batch") in str(err.value) and fragment in str(err.value), str(err.value)


@pytest.mark.parametrize("labels", ["0123", 5, {0: 1}, np.zeros((3, 1), np.int64), [0, 1]])
def test_labels_that_are_not_a_list_of_one_per_image(tmp_path: Path, labels: object) -> None:
    root = tmp_path / "cifar"
    _write_test_batch(root, labels, 3)
    with pytest.raises(UserError, match=r"field 'labels'"):
        load_cifar10(root, "test")


LABEL = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(LABEL, min_size=1, max_size=12))
def test_random_labels_are_read_exactly_or_refused_at_the_first_bad_one(
    tmp_path_factory: pytest.TempPathFactory, labels: list[object]
) -> None:
    """A label is taken iff it is an int (or an integral float) in 0..9, never truncated or cast."""

    def good(v: object) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, float):
            return math.isfinite(v) and v.is_integer() and 0 <= v <= 9
        return isinstance(v, int) and 0 <= v <= 9

    root = tmp_path_factory.mktemp("labels")
    _write_test_batch(root, labels, len(labels))
    if all(good(v) for v in labels):
        _, got = load_cifar10(root, "test")
        assert got.dtype == np.int64 and got.tolist() == [int(v) for v in labels]  # type: ignore[call-overload]
    else:
        with pytest.raises(UserError) as err:
            load_cifar10(root, "test")
        first_bad = next(i for i, v in enumerate(labels) if not good(v))
        message = str(err.value)
        assert f"label {first_bad} is " in message, message
