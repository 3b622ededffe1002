"""Learning curves of the bundled models: train/validation/test loss and top-1 per epoch, one PNG.

Place in the flow: ``qat train`` writes ``metrics.csv`` per run -> ``hwsim.pretrained.pack`` copies
it beside each bundled model (``bundles/<name>/metrics.csv``; the float model's is
``bundles/float_resnet20.metrics.csv``) -> :func:`read_curve` turns one into a
:class:`LearningCurve` -> :func:`plot_learning_curves` draws them all (``docs/learning-curves.png``
comes from here). The epoch that ``best.pt`` holds (best validation top-1) is marked. Run it as::

    python -m hwsim.pretrained.curves --out docs/learning-curves.png
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hwsim.errors import UserError
from hwsim.output import claim, publish_file, register_kind
from hwsim.pretrained import BUNDLES_DIR, float_baseline, list_bundles
from hwsim.pretrained.pack import METRICS_FILE

FLOAT_METRICS_SUFFIX = ".metrics.csv"  # the float model's: beside its checkpoint, float_resnet20.metrics.csv
_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")  # val_* when validated
_SIGNATURE = "hwsim.pretrained.curves"  # in the PNG's metadata: how a previous output is known


def _looks_like_curves(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and _SIGNATURE.encode() in head


CURVES_PNG = register_kind("learning-curves PNG", directory=False, recognize=_looks_like_curves)


@dataclass(frozen=True)
class LearningCurve:
    """One run's per-epoch figures (top-1 in %); ``val_*`` empty for runs without a validation split."""

    title: str
    epochs: tuple[int, ...]
    train_loss: tuple[float, ...]
    train_acc: tuple[float, ...]
    val_loss: tuple[float, ...]
    val_acc: tuple[float, ...]
    test_loss: tuple[float, ...]
    test_acc: tuple[float, ...]

    @property
    def best_epoch(self) -> int:
        """The epoch of ``best.pt``: the first of best validation top-1 (best test top-1 without one)."""
        scores = self.val_acc or self.test_acc
        return self.epochs[scores.index(max(scores))]


def read_curve(path: Path, title: str) -> LearningCurve:
    """The :class:`LearningCurve` of a ``qat train`` metrics.csv; a malformed file is a UserError."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: cannot read it as a metrics.csv of qat train ({err})") from None
    if not rows or any(c not in rows[0] for c in _COLUMNS):
        raise UserError(f"{path}: expected a metrics.csv of qat train with the columns {list(_COLUMNS)}")
    validated = "val_acc" in rows[0] and all(r["val_acc"] not in ("", None) for r in rows)

    def column(name: str, kind: type = float) -> tuple:
        values = []
        for i, row in enumerate(rows, start=2):
            try:
                value = kind(row[name])
            except (TypeError, ValueError):
                raise UserError(f"{path}:{i}: column {name}: {row[name]!r:.30} is not a number") from None
            if kind is float and not math.isfinite(value):
                raise UserError(f"{path}:{i}: column {name}: {value} is not finite")
            values.append(value)
        return tuple(values)

    return LearningCurve(
        title=title,
        epochs=column("epoch", int),
        train_loss=column("train_loss"),
        train_acc=column("train_acc"),
        val_loss=column("val_loss") if validated else (),
        val_acc=column("val_acc") if validated else (),
        test_loss=column("test_loss"),
        test_acc=column("test_acc"),
    )


def bundled_curves(directory: Path = BUNDLES_DIR) -> list[LearningCurve]:
    """The float model's curve, then each bundled model's, in the manifest's order (those with a
    metrics.csv)."""
    curves = []
    baseline = float_baseline(directory)
    if baseline is not None and baseline.checkpoint is not None:
        metrics = baseline.checkpoint.with_suffix(FLOAT_METRICS_SUFFIX)
        if metrics.is_file():
            curves.append(read_curve(metrics, "float ResNet20"))
    for model in list_bundles(directory):
        if (model.path / METRICS_FILE).is_file():
            curves.append(read_curve(model.path / METRICS_FILE, model.title))
    if not curves:
        raise UserError(
            f"{directory}: no {METRICS_FILE} beside any bundled model (pack them with --checkpoint)"
        )
    return curves


def plot_learning_curves(curves: Sequence[LearningCurve], path: Path) -> Path:
    """One row per model pair: top-1 (train, validation, test) and loss panels side by side."""
    from hwsim.plots import png_bytes, subplots

    out = claim(path, CURVES_PNG)

    per_row = 3  # models per row; each takes a top-1 and a loss panel
    rows = math.ceil(len(curves) / per_row)
    fig, axes = subplots(rows, 2 * per_row, figsize=(4.2 * per_row * 2 / 1.6, 2.6 * rows), squeeze=False)
    series = (("train", "#4C72B0", "-"), ("val", "#DD8452", "-"), ("test", "#55A868", "--"))
    for k, curve in enumerate(curves):
        acc_ax, loss_ax = axes[k // per_row][2 * (k % per_row)], axes[k // per_row][2 * (k % per_row) + 1]
        for name, color, style in series:
            acc, loss = getattr(curve, f"{name}_acc"), getattr(curve, f"{name}_loss")
            if acc:
                label = {"train": "train", "val": "validation", "test": "test"}[name]
                acc_ax.plot(curve.epochs, acc, style, color=color, lw=1.3, label=label)
                loss_ax.plot(curve.epochs, loss, style, color=color, lw=1.3, label=label)
        best = curve.best_epoch
        for ax in (acc_ax, loss_ax):
            ax.axvline(best, color="0.6", lw=0.8, ls=":")
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("epoch", fontsize=7)
        i = curve.epochs.index(best)
        acc_ax.set_title(
            f"{curve.title}: top-1 %  (best.pt: epoch {best}, test {curve.test_acc[i]:.1f})", fontsize=8
        )
        loss_ax.set_title(f"{curve.title}: loss", fontsize=8)
        acc_ax.set_ylim(0, 100)
    for k in range(len(curves), rows * per_row):
        axes[k // per_row][2 * (k % per_row)].axis("off")
        axes[k // per_row][2 * (k % per_row) + 1].axis("off")
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.suptitle(
        "Bundled models: per-epoch top-1 and cross-entropy (dotted line: the epoch best.pt holds, "
        "chosen on validation)",
        fontsize=10,
    )
    fig.tight_layout()
    return publish_file(out, CURVES_PNG, png_bytes(fig, dpi=100, metadata={"Software": _SIGNATURE}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hwsim.pretrained.curves",
        description="draw the bundled models' learning curves (from their metrics.csv) into one PNG",
    )
    parser.add_argument("--out", type=Path, required=True, help="PNG to write, e.g. docs/learning-curves.png")
    parser.add_argument(
        "--directory", type=Path, default=BUNDLES_DIR, help="bundles directory (default: the package's)"
    )
    args = parser.parse_args(argv)
    try:
        if args.out.suffix.lower() != ".png":
            raise UserError(f"--out {args.out}: expected a .png path")
        curves = bundled_curves(args.directory)
        path = plot_learning_curves(curves, args.out)
    except UserError as err:
        print(f"hwsim.pretrained.curves: error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: {len(curves)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
