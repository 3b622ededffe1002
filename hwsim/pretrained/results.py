"""The accuracy table of docs/results.md: the bundled models on CIFAR-10, beside the seeds' drops.

Place in the flow: ``hwsim/pretrained/bundles/`` (the bundles and MANIFEST.yaml's float baseline)
and a CIFAR-10 directory -> this module -> the table between the markers of ``docs/results.md``.
Per model: the PyTorch QAT model's top-1 (recorded by ``qat export`` in reference.npz), the
bit-accurate emulator's top-1 on the same images, their top-1 agreement, the weights' size at
the method's nominal width, and the drop from the float model, beside the drops the seeds
publish for the same method and widths (``SEED_DROPS``: their absolute accuracies are on full
CIFAR-10 after 100 or more epochs). Run it as::

    python -m hwsim.pretrained.results --data $CIFAR10_DIR                          # print the table
    python -m hwsim.pretrained.results --data $CIFAR10_DIR --write docs/results.md  # refresh the doc
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hwsim.atomic import write_atomic
from hwsim.bundle import load_bundle
from hwsim.demo import evaluate_test_set, weight_bits
from hwsim.errors import UserError
from hwsim.pretrained import BUNDLES_DIR, FloatBaseline, PretrainedModel, float_baseline, list_bundles

BEGIN = "<!-- results-table: begin (python -m hwsim.pretrained.results --write docs/results.md) -->"
END = "<!-- results-table: end -->"
MAX_GAP_POINTS = 0.5  # emulator top-1 within this many points of PyTorch's on the test split


@dataclass(frozen=True)
class SeedDrop:
    """A drop (float top-1 minus quantized top-1, points) that a seed repository reports."""

    source: str  # repository (and which table)
    model: str
    float_top1: float  # percent
    quant_top1: float  # percent

    @property
    def drop(self) -> float:
        return self.float_top1 - self.quant_top1

    def text(self) -> str:
        return f"{self.drop:.2f} ({self.source}, {self.model}: {self.float_top1:g} → {self.quant_top1:g})"


# Keyed by the quantization config the model was trained with (configs/quant/<key>.yaml).
# Sources: the seeds' READMEs as transcribed in the project's notes on quantizers (section 9):
# louvinci/PACT-Quantization (README of Dec 2022: ResNet20, FP 91.63; README of 2022: cfg-1*),
# onion-rain/MCTS (quantize_README: a 1.11 M-parameter "ResNet20", FP 93.45, 100 epochs from
# scratch), ZouJiu1/LSQplus (ResNet18-rev, FP 92.6, 8/8 only).
SEED_DROPS: dict[str, tuple[SeedDrop, ...]] = {
    "dorefa_a8w8": (
        SeedDrop("louvinci", "ResNet20", 91.63, 90.05),
        SeedDrop("MCTS", "wide ResNet20", 93.45, 92.2),
    ),
    "dorefa_a4w4": (
        SeedDrop("louvinci", "ResNet20", 91.63, 88.76),
        SeedDrop("MCTS", "wide ResNet20", 93.45, 91.01),
    ),
    "dorefa_a2w2": (SeedDrop("MCTS", "wide ResNet20", 93.45, 77.12),),
    "dorefa_a1w1": (SeedDrop("MCTS", "wide ResNet20", 93.45, 61.37),),
    "pact_a4w4": (SeedDrop("louvinci", "ResNet20", 91.63, 91.05),),
    "xnor": (SeedDrop("MCTS", "wide ResNet20", 93.45, 80.6),),
    "ternary": (SeedDrop("MCTS", "wide ResNet20, float activations", 93.45, 92.24),),
    "mixed_cfg1": (SeedDrop("louvinci", "ResNet20 cfg-1*", 92.50, 92.021),),
}


@dataclass(frozen=True)
class ResultRow:
    """One model's line of the table (fractions for accuracies, bits for sizes)."""

    name: str
    title: str
    bits: str  # "4/4", "mixed"
    top1_pytorch: float | None
    top1_emulator: float
    agreement: float | None
    images: int
    weight_bits: int
    float_weight_bits: int
    drop: float | None  # points, from the float baseline, PyTorch top-1
    seeds: tuple[SeedDrop, ...]

    @property
    def gap_points(self) -> float | None:
        """Emulator top-1 minus PyTorch top-1, in points."""
        if self.top1_pytorch is None:
            return None
        return 100.0 * (self.top1_emulator - self.top1_pytorch)


def measure(
    data: Path, directory: Path | None = None, models: list[PretrainedModel] | None = None
) -> tuple[list[ResultRow], FloatBaseline | None]:
    """Emulate every bundled model (or ``models``) on ``data``'s whole test split."""
    baseline = float_baseline(directory)
    rows: list[ResultRow] = []
    for model in models if models is not None else list_bundles(directory):
        bundle = load_bundle(model.path)
        test, notes = evaluate_test_set(bundle, data, None)
        if notes:
            raise UserError(f"{model.name}: {'; '.join(notes)}")
        sizes = weight_bits(bundle)
        top1 = test["top1_reference"]
        config_key = Path(model.config).stem if model.config else model.name
        rows.append(
            ResultRow(
                name=model.name,
                title=model.title,
                bits=model.widths_label,
                top1_pytorch=top1,
                top1_emulator=test["top1_emulator"],
                agreement=test["top1_agreement"],
                images=test["images"],
                weight_bits=sizes["weight_bits_nominal"],
                float_weight_bits=32 * sizes["weights"],
                drop=None if baseline is None or top1 is None else 100.0 * (baseline.top1_pytorch - top1),
                seeds=SEED_DROPS.get(config_key, ()),
            )
        )
    return rows, baseline


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100.0 * x:.2f}"


def table_markdown(rows: list[ResultRow], baseline: FloatBaseline | None) -> str:
    """The markdown table (and its one-line caption) that goes between BEGIN and END."""
    images = rows[0].images if rows else 0
    lines = [
        f"CIFAR-10 test split, first {images:,} images (the subset's whole test set); accuracies in %, "
        "drops and differences in points.",
        "",
        "| model | bits (w/a) | top-1 PyTorch | top-1 emulator | emulator − PyTorch | agreement "
        "| weights (Mbit) | vs float32 | drop vs float | seeds' drop (their float → quantized) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    if baseline is not None and rows:
        float_bits = rows[0].float_weight_bits
        lines.append(
            f"| float ResNet20 | 32/32 | {_pct(baseline.top1_pytorch)} | – | – | – "
            f"| {float_bits / 1e6:.3f} | 1.0x | 0.00 | – |"
        )
    for r in rows:
        gap = "–" if r.gap_points is None else f"{r.gap_points:+.2f}"
        drop = "–" if r.drop is None else f"{r.drop:.2f}"
        seeds = "; ".join(s.text() for s in r.seeds) or "not reported"
        lines.append(
            f"| {r.title} | {r.bits} | {_pct(r.top1_pytorch)} "
            f"| {_pct(r.top1_emulator)} | {gap} | {_pct(r.agreement)} | {r.weight_bits / 1e6:.3f} "
            f"| {r.float_weight_bits / r.weight_bits:.1f}x smaller | {drop} | {seeds} |"
        )
    return "\n".join(lines) + "\n"


def replace_table(document: str, table: str, where: str) -> str:
    """``document`` with the text between BEGIN and END replaced by ``table``."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise UserError(
            f"{where}: no results table markers; expected a line {BEGIN!r} and, after it, {END!r}"
        )
    return document[: start + len(BEGIN)] + "\n" + table + document[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hwsim.pretrained.results",
        description="the bundled models' accuracy table (PyTorch vs emulator on the CIFAR-10 test split)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("CIFAR10_DIR"),
        help="CIFAR-10 directory (cifar-10-batches-py); default $CIFAR10_DIR",
    )
    parser.add_argument("--bundles", type=Path, default=BUNDLES_DIR, help="bundles directory")
    parser.add_argument(
        "--write", type=Path, help="markdown file whose table (between the markers) to replace"
    )
    args = parser.parse_args(argv)
    try:
        if args.data is None:
            raise UserError(
                "no data set: pass --data DIR or set CIFAR10_DIR to a cifar-10-batches-py directory"
            )
        rows, baseline = measure(Path(args.data), args.bundles)
        table = table_markdown(rows, baseline)
        if args.write is not None:
            if not args.write.is_file():
                raise UserError(f"--write {args.write}: no such file; create it with the two marker lines")
            write_atomic(args.write, replace_table(args.write.read_text(), table, str(args.write)))
    except UserError as err:
        print(f"hwsim.pretrained.results: error: {err}", file=sys.stderr)
        return 2
    print(table, end="")
    far = [r for r in rows if r.gap_points is None or abs(r.gap_points) > MAX_GAP_POINTS]
    for r in far:
        print(f"warning: {r.name}: emulator and PyTorch top-1 differ by more than {MAX_GAP_POINTS} points")
    return 1 if far else 0


if __name__ == "__main__":
    sys.exit(main())
