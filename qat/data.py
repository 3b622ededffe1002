"""CIFAR-10 for PyTorch: where the images come from (flags), augmentation, normalization and loaders.

Place in the flow: ``qat train``, ``qat eval`` and ``qat export`` read images through here; the
files themselves are read by :mod:`hwsim.cifar10` (numpy only), which hwsim uses too.

* Every ``qat`` command takes the same flags: :func:`add_data_arguments` adds ``--data DIR``,
  ``--synthetic N`` and ``--device``; :func:`resolve_data` turns them into a :class:`DataSource`
  (``--synthetic N`` > ``--data DIR`` > the ``CIFAR10_DIR`` environment variable).
* Normalization is the contract of docs/export-format.md, in float32 and in this order:
  ``x = pixel / 255``, ``x = (x - mean[c]) / std[c]``.
* Training augmentation is the standard CIFAR one: a random 32x32 crop of the image padded by
  4 black pixels on each side, and a horizontal flip with probability 1/2. It runs per batch
  (vectorized), so a loader yields ready ``(images float32 [B, 3, 32, 32], labels int64 [B])``.
* The validation split (:func:`split_validation`): ``qat train`` holds a fixed, stratified
  fraction of the training images out of training (10 % by default: 508 of the subset's 5,085)
  and selects ``best.pt`` on them, so the test split is only ever reported. Which images: a
  permutation drawn with ``numpy.random.default_rng(VALIDATION_SEED)`` orders each class; the
  images earliest in their class (as a share of it) are held out; the rest train, in file order.
  It depends on the labels alone (not on ``--seed``), so every run of a data set holds out the
  same images.
* Under ``torchrun`` a loader built with ``shard=(rank, world_size)`` holds one process's share:
  for training a :class:`~torch.utils.data.DistributedSampler` (one shuffle for all processes,
  padded so that each takes the same number of batches), for testing every ``world_size``-th
  image from ``rank`` on (each image exactly once over the processes, none repeated).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from hwsim.cifar10 import CIFAR10_MEAN, CIFAR10_STD, Split, load_cifar10, synthetic_cifar10
from hwsim.errors import UserError
from hwsim.flags import check_float, check_int, int_in

ENV_VAR = "CIFAR10_DIR"
PAD = 4
SYNTHETIC_SEEDS: dict[str, int] = {"train": 0, "test": 1}
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
MAX_SYNTHETIC = 50_000  # generated images per split (CIFAR-10's training set size)
VALIDATION_FRACTION = 0.1  # qat train's default share of the training images held out
VALIDATION_SEED = 0  # the permutation that picks them (fixed: every run holds out the same images)


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` applied to ``pixel / 255`` (stored in checkpoints and bundles)."""

    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD

    def __post_init__(self) -> None:
        for field, values in (("mean", self.mean), ("std", self.std)):
            if not isinstance(values, (tuple, list)) or len(values) != 3:
                raise UserError(
                    f"Normalization.{field} must be 3 numbers (one per RGB channel), got {values!r:.60}"
                )
            for c, v in enumerate(values):
                if field == "std":
                    check_float(f"Normalization.std[{c}]", v, 0.0, lo_open=True)
                else:
                    check_float(f"Normalization.mean[{c}]", v)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: object) -> Normalization:
        """The normalization of :meth:`to_dict`: ``{"mean": [3 numbers], "std": [3 positive numbers]}``."""
        if not isinstance(d, dict) or set(d) != {"mean", "std"}:
            keys = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
            raise UserError(
                f"normalization: expected a dict with keys mean and std (3 numbers each), got {keys}"
            )
        for key in ("mean", "std"):
            if not isinstance(d[key], (list, tuple)):
                raise UserError(f"normalization.{key}: expected a list of 3 numbers, got {d[key]!r:.60}")
        checked = cls(mean=tuple(d["mean"]), std=tuple(d["std"]))  # type: ignore[arg-type]
        return cls(*(tuple(float(v) for v in values) for values in (checked.mean, checked.std)))  # type: ignore[arg-type]

    def apply(self, images_hwc: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` -> float32 ``[B, 3, H, W]``, in the contract's order of operations."""
        x = images_hwc.to(torch.float32) / 255.0
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device)
        x = (x - mean) / std
        return x.permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class DataSource:
    """Where the images come from: a CIFAR-10 batches directory, or ``synthetic`` generated images."""

    kind: Literal["cifar10", "synthetic"]
    directory: Path | None = None
    synthetic_n: int = 0

    def __post_init__(self) -> None:
        if self.kind == "cifar10" and self.directory is None:
            raise UserError("DataSource(kind='cifar10') needs a directory")
        if self.kind == "synthetic":
            check_int("--synthetic", self.synthetic_n, 1, MAX_SYNTHETIC)
        if self.kind not in ("cifar10", "synthetic"):
            raise UserError(f"DataSource.kind {self.kind!r} is not 'cifar10' or 'synthetic'")

    def load(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """``(images uint8 [N, 32, 32, 3], labels int64 [N])`` of one split."""
        if self.kind == "synthetic":
            return synthetic_cifar10(self.synthetic_n, seed=SYNTHETIC_SEEDS[split])
        assert self.directory is not None
        return load_cifar10(self.directory, split)

    def describe(self) -> str:
        if self.kind == "synthetic":
            return f"synthetic ({self.synthetic_n} generated images per split)"
        return f"cifar10 ({self.directory})"


def split_validation(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, validation indices)`` into a training split, each increasing.

    ``round(fraction * N)`` images (at least one when ``fraction`` > 0), stratified: each image's
    key is its place in a fixed permutation of its class, as a share of the class,
    ``(i + 0.5) / n_class``; the images of smallest key are held out, so every class gives
    ``fraction`` of its images to within one, and a larger fraction holds out a superset.
    ``fraction`` 0 holds nothing out."""
    check_float("--val-fraction", fraction, 0.0, 1.0, hi_open=True)
    labels = np.asarray(labels)
    n = labels.shape[0]
    if fraction == 0:
        return np.arange(n), np.arange(0)
    held_out = max(1, int(round(fraction * n)))
    if held_out >= n:
        raise UserError(
            f"--val-fraction {fraction}: of {n} training image(s) it would hold out {held_out}, leaving "
            "none to train on; use more images, a smaller fraction, or --val-fraction 0 (no validation "
            "split: best.pt is then selected on the test split)"
        )
    perm = np.random.default_rng(VALIDATION_SEED).permutation(n)
    key = np.empty(n)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]  # the class in permutation order
        key[members] = (np.arange(members.size) + 0.5) / members.size
    order = perm[np.argsort(key[perm], kind="stable")]
    held = np.zeros(n, dtype=bool)
    held[order[:held_out]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags every ``qat`` command shares: ``--data DIR``, ``--synthetic N``, ``--device``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--data",
        metavar="DIR",
        help=f"CIFAR-10 python batches directory (cifar-10-batches-py/); default: ${ENV_VAR}",
    )
    group.add_argument(
        "--synthetic",
        metavar="N",
        type=int_in(1, MAX_SYNTHETIC),
        help="use N generated CIFAR-shaped images per split instead of CIFAR-10 (for trying the flow; "
        f"N <= {MAX_SYNTHETIC})",
    )
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="where to run PyTorch: auto picks CUDA when present (default: auto)",
    )


def resolve_data(args: argparse.Namespace) -> DataSource:
    """The :class:`DataSource` of ``--synthetic N``, ``--data DIR`` or ``$CIFAR10_DIR``, in that order."""
    synthetic = getattr(args, "synthetic", None)
    if synthetic is not None:
        return DataSource("synthetic", synthetic_n=int(synthetic))
    directory = getattr(args, "data", None) or os.environ.get(ENV_VAR)
    if not directory:
        raise UserError(
            f"no images: pass --data DIR (a CIFAR-10 cifar-10-batches-py/ directory), set {ENV_VAR}, "
            "or use --synthetic N for generated images"
        )
    path = Path(directory).expanduser()
    if not path.is_dir():
        origin = "--data" if getattr(args, "data", None) else ENV_VAR
        raise UserError(
            f"{origin}={directory}: no such directory; expected CIFAR-10's cifar-10-batches-py/ "
            "(the python version from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked)"
        )
    return DataSource("cifar10", directory=path)


class CIFAR10Batches(Dataset):
    """Images and labels in memory; indexing with a list of indices returns one normalized batch.

    Used with a :class:`~torch.utils.data.BatchSampler` as the sampler (``batch_size=None``), so
    augmentation and normalization run once per batch on whole tensors.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        normalization: Normalization,
        augment: bool,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise UserError(f"expected uint8 images [N, 32, 32, 3], got {images.dtype} {list(images.shape)}")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.normalization = normalization
        self.augment = augment

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[idx]
        if self.augment:
            images = random_crop_flip(images)
        return self.normalization.apply(images), self.labels[idx]


def random_crop_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard CIFAR augmentation of uint8 ``[B, 32, 32, 3]``: pad 4 (zeros), random crop, random h-flip."""
    b, h, w, _ = images.shape
    padded = torch.nn.functional.pad(images, (0, 0, PAD, PAD, PAD, PAD))  # pads W and H, not channels
    oy = torch.randint(0, 2 * PAD + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * PAD + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    ar_h = torch.arange(h)
    ar_w = torch.arange(w)
    rows = oy[:, None] + ar_h[None, :]  # [B, H]
    cols = torch.where(flip[:, None], ox[:, None] + (w - 1) - ar_w[None, :], ox[:, None] + ar_w[None, :])
    batch = torch.arange(b)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


def make_loader(
    source: DataSource,
    split: Split,
    batch_size: int,
    *,
    train: bool,
    normalization: Normalization | None = None,
    workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    shard: tuple[int, int] | None = None,
) -> DataLoader:
    """A loader over one split: shuffled and augmented when ``train``, else in dataset order;
    ``shard=(rank, world_size)``: this process's share (see the module docstring)."""
    images, labels = source.load(split)
    return loader_from_arrays(
        images,
        labels,
        batch_size,
        train=train,
        normalization=normalization,
        workers=workers,
        seed=seed,
        pin_memory=pin_memory,
        shard=shard,
    )


def loader_from_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    train: bool,
    normalization: Normalization | None = None,
    workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    shard: tuple[int, int] | None = None,
) -> DataLoader:
    """:func:`make_loader` on arrays already in memory (uint8 HWC images, int64 labels)."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise UserError(f"--workers must be >= 0, got {workers}")
    if len(labels) == 0:
        raise UserError("the data set is empty: no images to load")
    dataset = CIFAR10Batches(images, labels, normalization or Normalization(), augment=train)
    generator = torch.Generator().manual_seed(seed)
    base: Sampler[int] | list[int]
    if shard is not None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard {shard}: expected (rank, world_size) with 0 <= rank < world_size")
        if train:  # shuffled from (seed, epoch) alike on every rank: qat.train.seed_epoch sets the epoch
            base = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        else:
            base = list(range(rank, len(dataset), world))
    else:
        base = RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=False)
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=generator,
        persistent_workers=False,  # workers restart each epoch, seeded from the reseeded generator
    )
