"""`hwsim emulate`: run a bundle bit-accurately on its reference inputs or on CIFAR-10 test images.

Place in the flow: bundle/ -> hwsim.emulator -> per-layer overflow/peak table, top-1, optional .npz.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

from hwsim.bundle import load_bundle, quantize_images
from hwsim.commands import add_emulator_arguments
from hwsim.compare import top1
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.flags import positive_int
from hwsim.output import Output, add_output_arguments, claim, publish_file, register_kind
from hwsim.report import fmt_value

HELP = "run a bundle bit-accurately and print per-layer overflow counts, peak |acc| and top-1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory written by qat export")
    parser.add_argument(
        "--images", type=positive_int, default=None, metavar="N", help="emulate only the first N images"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="CIFAR-10 batches directory: emulate its test split instead of the reference inputs",
    )
    add_output_arguments(
        parser,
        EMULATION,
        "save every tensor's codes, the logits and the predictions",
        metavar="FILE.npz",
        required=False,
    )
    add_emulator_arguments(parser)


ARRAYS = ("logits.npy", "predictions.npy", "labels.npy")


def _looks_like_emulation(path: Path) -> bool:
    """An .npz that ``hwsim emulate --out`` wrote: the logits, predictions, labels and tensors/*."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return set(ARRAYS) <= names and all(n in ARRAYS or n.startswith("tensors/") for n in names)


EMULATION = register_kind("emulation arrays", directory=False, recognize=_looks_like_emulation)


def _write_npz(out: Output, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    publish_file(out, EMULATION, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    npz = None
    if args.out is not None:
        npz = claim(args.out, EMULATION, force=args.force, inputs=(args.bundle, args.data))
    bundle = load_bundle(args.bundle)
    config = EmulatorConfig(acc_bits=args.acc_bits, overflow=args.overflow)
    ref = bundle.reference
    ref_pred = eval_pred = None
    if args.data is not None:
        from hwsim.cifar10 import load_cifar10

        images, labels = load_cifar10(args.data, "test")
        if (
            ref is not None
            and ref.eval_predictions is not None
            and ref.eval_predictions.shape == labels.shape
        ):
            eval_pred = ref.eval_predictions
        if args.images is not None:
            images, labels = images[: args.images], labels[: args.images]
            eval_pred = eval_pred[: args.images] if eval_pred is not None else None
        codes = quantize_images(images, bundle)
        source = f"{args.data} (test split, {labels.shape[0]} images)"
    else:
        if ref is None:
            raise UserError(
                f"{args.bundle}: no reference.npz to take inputs from; expected a bundle with a "
                "reference batch; pass --data DIR to emulate CIFAR-10 test images instead"
            )
        n = ref.images if args.images is None else min(args.images, ref.images)
        codes, labels = ref.input_codes[:n], ref.labels[:n]
        out = bundle.meta.output
        if out in ref.codes:
            ref_pred = np.argmax(ref.codes[out][:n], axis=1)
        source = f"reference batch ({n} images)"
    result = emulate(
        bundle, codes, config, keep=args.out is not None, batch_size=args.batch_size, progress=args.progress
    )
    print(f"emulated {source}, acc_bits={result.acc_bits}, overflow={config.overflow}")
    # overflowed outputs: accumulator results changed by narrowing (docs/export-format.md, overflow counts)
    cols = ("layer", "op", "MACs/image", "outputs", "overflowed", "peak |acc|", "bits observed", "bits worst")
    table = [list(cols)] + [
        [
            s.name,
            s.op,
            str(s.macs),
            str(s.elements),
            str(s.overflow_count),
            str(s.peak_acc_abs),
            fmt_value(s.min_safe_acc_bits_observed),
            str(s.min_safe_acc_bits_worst),
        ]
        for s in result.layers.values()
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(f"overflowed outputs in total: {sum(s.overflow_count for s in result.layers.values())}")
    acc = top1(result.predictions, labels)
    print(f"top-1 vs labels: {fmt_value(acc) if acc is not None else 'n/a (no labels)'}")
    for name, other in (("reference predictions", ref_pred), ("eval_predictions", eval_pred)):
        if other is not None:
            print(f"agreement with the {name}: {fmt_value(float(np.mean(result.predictions == other)))}")
    if npz is not None:
        arrays = {f"tensors/{k}": v for k, v in result.tensors.items()}
        arrays.update({"logits": result.logits, "predictions": result.predictions, "labels": labels})
        _write_npz(npz, arrays)
        print(f"wrote {args.out}")
    return 0
