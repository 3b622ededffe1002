"""Tests of qat/data.py: flag resolution, exact normalization (the bundle rule), augmentation, loaders."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from hwsim.cifar10 import CIFAR10_MEAN, CIFAR10_STD, load_cifar10, synthetic_cifar10
from hwsim.errors import UserError
from qat.data import (
    DataSource,
    Normalization,
    add_data_arguments,
    loader_from_arrays,
    make_loader,
    random_crop_flip,
    resolve_data,
    split_validation,
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    return parser.parse_args(argv)


def test_flags_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path))
    assert resolve_data(parse([])) == DataSource("cifar10", directory=tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data(parse(["--data", str(other)])) == DataSource("cifar10", directory=other)
    assert resolve_data(parse(["--synthetic", "32"])) == DataSource("synthetic", synthetic_n=32)
    args = parse(["--synthetic", "8"])
    assert args.device == "auto"
    with pytest.raises(SystemExit):  # argparse: --data and --synthetic exclude each other
        parse(["--data", str(other), "--synthetic", "8"])


def test_no_data_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    with pytest.raises(UserError, match=r"pass --data DIR .*set CIFAR10_DIR, or use --synthetic N"):
        resolve_data(parse([]))
    with pytest.raises(UserError, match=r"--data=.*missing: no such directory; expected CIFAR-10's"):
        resolve_data(parse(["--data", str(tmp_path / "missing")]))
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "gone"))
    with pytest.raises(UserError, match=r"CIFAR10_DIR=.*gone: no such directory"):
        resolve_data(parse([]))
    with pytest.raises(SystemExit):  # argparse: the flag's range
        parse(["--synthetic", "0"])
    with pytest.raises(UserError, match=r"--synthetic 0: expected an integer in 1\.\.50000"):
        DataSource("synthetic", synthetic_n=0)


def test_normalization_matches_the_bundle_rule_exactly() -> None:
    """docs/export-format.md: float32 x = pixel / 255, then (x - mean[c]) / std[c], in that order."""
    images, _ = synthetic_cifar10(16, seed=5)
    got = Normalization().apply(torch.from_numpy(images)).numpy()
    x = images.astype(np.float32) / np.float32(255)
    x = (x - np.asarray(CIFAR10_MEAN, np.float32)) / np.asarray(CIFAR10_STD, np.float32)
    expected = x.transpose(0, 3, 1, 2)
    assert got.dtype == np.float32 and got.shape == (16, 3, 32, 32)
    assert np.array_equal(got, expected)


def test_normalization_round_trips_and_validates() -> None:
    n = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert Normalization.from_dict(n.to_dict()) == n
    with pytest.raises(
        UserError, match=r"Normalization.std\[1\] 0.0: expected a finite number in \(0, inf\)"
    ):
        Normalization((0.5, 0.5, 0.5), (0.25, 0.0, 0.25))


def test_augmentation_is_a_padded_crop_and_maybe_a_flip() -> None:
    images, _ = synthetic_cifar10(64, seed=2)
    torch.manual_seed(0)
    out = random_crop_flip(torch.from_numpy(images)).numpy()
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets, flips = set(), 0
    for i in range(len(images)):
        found = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if np.array_equal(
                out[i],
                (
                    padded[i, dy : dy + 32, dx : dx + 32][:, ::-1]
                    if f
                    else padded[i, dy : dy + 32, dx : dx + 32]
                ),
            )
        ]
        assert found, f"image {i} is not a crop of its padded original"
        offsets.add(found[0][:2])
        flips += found[0][2]
    assert len(offsets) > 10 and 10 < flips < 54  # random offsets and about half flipped


def test_train_loader_shuffles_augments_and_is_seeded() -> None:
    images, labels = synthetic_cifar10(40, seed=0)
    batches = []
    for _ in range(2):
        torch.manual_seed(7)
        loader = loader_from_arrays(images, labels, 16, train=True, seed=3)
        batches.append(list(loader))
    assert [b[0].shape for b in batches[0]] == [torch.Size([16, 3, 32, 32])] * 2 + [
        torch.Size([8, 3, 32, 32])
    ]
    for (x0, y0), (x1, y1) in zip(batches[0], batches[1], strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)  # same seeds, same batches
    all_labels = torch.cat([y for _, y in batches[0]])
    assert sorted(all_labels.tolist()) == sorted(labels.tolist())  # each image once
    assert not torch.equal(all_labels, torch.from_numpy(labels))  # shuffled


def test_eval_loader_is_in_order_and_unaugmented() -> None:
    images, labels = synthetic_cifar10(20, seed=1)
    x, y = next(iter(loader_from_arrays(images, labels, 20, train=False)))
    assert torch.equal(y, torch.from_numpy(labels))
    assert torch.equal(x, Normalization().apply(torch.from_numpy(images)))


def test_make_loader_on_synthetic_source_uses_distinct_splits() -> None:
    src = DataSource("synthetic", synthetic_n=24)
    xa, _ = next(iter(make_loader(src, "train", 24, train=False)))
    xb, _ = next(iter(make_loader(src, "test", 24, train=False)))
    assert xa.shape == xb.shape == (24, 3, 32, 32)
    assert not torch.equal(xa, xb)


def test_loader_with_worker_processes() -> None:
    images, labels = synthetic_cifar10(32, seed=0)
    loader = loader_from_arrays(images, labels, 8, train=True, workers=1, seed=0)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == sorted(labels.tolist())


def test_bad_loader_arguments() -> None:
    images, labels = synthetic_cifar10(4, seed=0)
    with pytest.raises(UserError, match=r"--batch-size must be >= 1"):
        loader_from_arrays(images, labels, 0, train=True)
    with pytest.raises(UserError, match=r"expected uint8 images \[N, 32, 32, 3\]"):
        loader_from_arrays(images.astype(np.float32), labels, 2, train=True)


def test_real_subset_loader(cifar10_dir: Path) -> None:
    src = resolve_data(argparse.Namespace(data=str(cifar10_dir), synthetic=None))
    loader = make_loader(src, "test", 256, train=False)
    images, labels = load_cifar10(cifar10_dir, "test")
    x, y = next(iter(loader))
    assert torch.equal(y, torch.from_numpy(labels[:256]))
    assert torch.equal(x, Normalization().apply(torch.from_numpy(images[:256])))
    # normalized real images have roughly zero mean and unit spread per channel
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.15
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.15
    train = make_loader(src, "train", 128, train=True)
    xb, yb = next(iter(train))
    assert xb.shape == (128, 3, 32, 32) and yb.dtype == torch.int64


def test_validation_split_is_fixed_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(10), [50, 51, 49, 60, 40, 55, 45, 50, 50, 50])[::-1].copy()
    train, val = split_validation(labels, 0.1)
    again_train, again_val = split_validation(labels, 0.1)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)  # no seed: fixed
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == labels.size
    counts = np.bincount(labels, minlength=10)
    held = np.bincount(labels[val], minlength=10)
    assert val.size == 50  # round(0.1 * 500)
    assert np.all(np.abs(held - 0.1 * counts) <= 1)  # every class gives a tenth, to within one
    # different fractions draw from the same permutation: a larger one holds out a superset
    _, more = split_validation(labels, 0.2)
    assert set(val.tolist()) <= set(more.tolist())
    none_train, none_val = split_validation(labels, 0.0)
    assert none_val.size == 0 and np.array_equal(none_train, np.arange(labels.size))


def test_validation_split_of_few_images_and_refusals() -> None:
    train, val = split_validation(np.arange(10), 0.1)  # one image per class: still one held out
    assert val.size == 1 and train.size == 9
    with pytest.raises(UserError, match="leaving none to train on.*--val-fraction 0"):
        split_validation(np.zeros(1, dtype=np.int64), 0.1)
    with pytest.raises(UserError, match="--val-fraction"):
        split_validation(np.zeros(10, dtype=np.int64), 1.0)


def test_validation_split_of_the_real_subset(cifar10_dir: Path) -> None:
    _, labels = load_cifar10(cifar10_dir, "train")
    train, val = split_validation(labels, 0.1)
    counts = np.bincount(labels, minlength=10)
    print(f"{labels.size} training images, per class {counts.tolist()}; validation {val.size}")
    assert val.size == 508 and train.size + val.size == labels.size == 5085  # round(508.5), even
    assert np.all(np.abs(np.bincount(labels[val], minlength=10) - 0.1 * counts) <= 1)
