"""CIFAR-10 reader (numpy only): the standard python-pickle batches as uint8 HWC images and int64 labels.

Place in the flow: the one place images come from. ``qat.data`` wraps it in torch datasets for
training and evaluation; ``hwsim`` uses it directly to emulate a whole test set without torch.
Also provides :func:`synthetic_cifar10`, deterministic CIFAR-shaped data that a small network
can learn, for tests and benchmarks that must not depend on the real data set.

The expected layout is the "CIFAR-10 python version" from https://www.cs.toronto.edu/~kriz/cifar.html,
unpacked: a directory ``cifar-10-batches-py/`` holding ``data_batch_1`` .. ``data_batch_5`` and
``test_batch`` (each a pickled dict with ``data``: uint8 ``[N, 3072]`` in CHW order and ``labels``).
A directory with fewer images per batch (a subset in the same layout) is read the same way.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np

from hwsim.errors import UserError

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")
TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES: tuple[str, ...] = ("test_batch",)
NUM_CLASSES = 10
CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# Per-channel mean and standard deviation of the CIFAR-10 training set, applied to pixel / 255
# (the values used by most CIFAR-10 training scripts; they are part of every exported bundle).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

_WHERE_TO_GET = (
    "download the python version of CIFAR-10 from https://www.cs.toronto.edu/~kriz/cifar.html "
    "(cifar-10-python.tar.gz) and unpack it: the directory to pass is cifar-10-batches-py/"
)

# The CIFAR-10 pickles hold numpy arrays; nothing else may be constructed while reading them.
# (numpy's array reconstructors of every pickle protocol, and the codec protocol 2 uses for bytes)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and numpy arrays (a batch file is data)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only data")


def check_labels(raw: object, count: int, path: Path) -> np.ndarray:
    """A batch's ``labels`` as int64 ``[count]``, each a class index in ``0..NUM_CLASSES-1``.

    Labels must be integers: a list of Python ints or an integer array (a float such as 3.0 that
    is an integer is taken; 0.5, None, a string or a bool is an error naming its index).
    """
    if isinstance(raw, np.ndarray):
        values = raw
    elif isinstance(raw, (list, tuple)):
        values = np.empty(len(raw), dtype=object)
        values[:] = raw
    else:
        raise UserError(f"{path}: field 'labels' is a {type(raw).__name__}, expected a list of {count} ints")
    if values.ndim != 1 or values.shape[0] != count:
        raise UserError(
            f"{path}: field 'labels' has shape {list(values.shape)}, expected [{count}] (one per image)"
        )
    classes = f"expected integers 0..{NUM_CLASSES - 1}"

    def refuse(i: int, value: object, integral: bool) -> UserError:
        if integral:  # an integer outside the classes
            return UserError(
                f"{path}: label {i} is {value!r:.40}, {classes}; is this CIFAR-100? "
                "Only CIFAR-10 is supported"
            )
        return UserError(
            f"{path}: label {i} is {value!r:.40} (a {type(value).__name__}), not a class index; {classes}"
        )

    kind = values.dtype.kind
    if kind in "iuf":  # a numeric array: the first label that is not an integer in range
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(values) & (values == np.round(values)) if kind == "f" else None
            inside = (values >= 0) & (values < NUM_CLASSES)
        bad = np.flatnonzero(~inside if integral is None else ~(integral & inside))
        if bad.size:
            i = int(bad[0])
            value = values[i : i + 1].tolist()[0]
            raise refuse(i, value, integral is None or bool(integral[i]))
        return values.astype(np.int64)
    labels = np.empty(count, dtype=np.int64)
    for i, given in enumerate(values.tolist()):  # Python objects: ints (or integral floats) only
        v = int(given) if isinstance(given, float) and given.is_integer() else given
        if isinstance(v, bool) or not isinstance(v, int):
            raise refuse(i, given, False)
        if not 0 <= v < NUM_CLASSES:
            raise refuse(i, given, True)
        labels[i] = v
    return labels


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise UserError(
            f"{path}: not a readable CIFAR-10 python batch ({type(err).__name__}: {err}); "
            f"the file may be truncated or not the python version; {_WHERE_TO_GET}"
        ) from None
    if not isinstance(batch, dict):
        raise UserError(
            f"{path}: expected a pickled dict with 'data' and 'labels', got {type(batch).__name__}"
        )
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise UserError(f"{path}: expected keys 'data' and 'labels', found {keys}; {_WHERE_TO_GET}")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"{path}: field 'data' is {data.dtype} {list(data.shape)}, expected uint8 [N, 3072] "
            f"(32x32 RGB images, CHW order); {_WHERE_TO_GET}"
        )
    labels = check_labels(labels, data.shape[0], path)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10(directory: str | Path, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of CIFAR-10: ``(images uint8 [N, 32, 32, 3] HWC, labels int64 [N])``.

    ``split`` is ``"train"`` (``data_batch_1`` .. ``data_batch_5``, concatenated in order) or
    ``"test"`` (``test_batch``). Raises :class:`hwsim.errors.UserError` naming the directory and
    the missing or unreadable file.
    """
    if split not in SPLITS:
        raise UserError(f"CIFAR-10 split {split!r} is not one of {list(SPLITS)}")
    root = Path(directory)
    files = TRAIN_FILES if split == "train" else TEST_FILES
    if not root.is_dir():
        raise UserError(
            f"CIFAR-10 directory {str(root)!r} does not exist or is not a directory; expected a directory "
            f"holding {', '.join(TRAIN_FILES + TEST_FILES)}; {_WHERE_TO_GET}"
        )
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        nested = root / "cifar-10-batches-py"
        hint = f" (it has a subdirectory cifar-10-batches-py/: pass {nested})" if nested.is_dir() else ""
        raise UserError(
            f"CIFAR-10 directory {str(root)!r} lacks {', '.join(missing)}{hint}; expected the files "
            f"{', '.join(TRAIN_FILES + TEST_FILES)}; {_WHERE_TO_GET}"
        )
    parts = [_read_batch(root / name) for name in files]
    images = np.concatenate([p[0] for p in parts], axis=0)
    labels = np.concatenate([p[1] for p in parts], axis=0)
    return images, labels


def synthetic_cifar10(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` deterministic CIFAR-shaped images (uint8 ``[n, 32, 32, 3]``) and labels (int64 ``[n]``).

    Each class has its own mean colour and an oriented stripe pattern (class ``c`` uses
    frequency ``1 + c % 3`` along direction ``c * 18`` degrees), under a random brightness and
    phase and Gaussian pixel noise, so a small network can learn it in a few epochs while no
    two images are equal. Labels cycle through the classes (balanced). Same ``(n, seed)``,
    same bytes.
    """
    if n < 0:
        raise UserError(f"synthetic_cifar10: n={n} must be >= 0")
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % NUM_CLASSES).astype(np.int64)
    rng.shuffle(labels)
    # Fixed class palette (independent of seed) so train and test sets share classes.
    palette = np.random.default_rng(12345).uniform(40.0, 215.0, size=(NUM_CLASSES, 3))
    angles = np.deg2rad(np.arange(NUM_CLASSES) * 18.0)
    freqs = 1.0 + np.arange(NUM_CLASSES) % 3
    yy, xx = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    direction = (
        np.cos(angles)[:, None, None] * xx[None] + np.sin(angles)[:, None, None] * yy[None]
    )  # [10, 32, 32]
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    brightness = rng.uniform(0.8, 1.2, size=n)
    stripes = np.sin(
        direction[labels] * (2 * np.pi * freqs[labels] / 32.0)[:, None, None] + phase[:, None, None]
    )
    base = palette[labels][:, None, None, :] * brightness[:, None, None, None]
    noise = rng.normal(0.0, 20.0, size=(n, 32, 32, 3))
    images = base + 35.0 * stripes[..., None] + noise
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels
