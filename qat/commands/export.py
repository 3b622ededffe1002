"""`qat export`: a trained checkpoint -> the integer bundle that hwsim reads (docs/export-format.md).

Place in the flow: after ``qat train``; ``hwsim emulate | compare | simulate`` read what it writes.

    qat export runs/pact4/best.pt --out bundles/pact4 --data cifar-10-batches-py
    qat export runs/pact4/best.pt --out bundles/pact4 --synthetic 256 --reference-images 16

The reference batch is the first ``--reference-images`` images of the test split; with a CIFAR-10
directory the whole test split is also classified (``eval_predictions``).
"""

from __future__ import annotations

import argparse

import numpy as np

from hwsim.bundle import BUNDLE
from hwsim.errors import UserError
from hwsim.flags import batch_int, int_in, mult_bits_int, positive_int
from hwsim.output import add_output_arguments, claim
from qat.checkpoint import load_model
from qat.data import add_data_arguments, resolve_data
from qat.export import DEFAULT_MULT_BITS, DEFAULT_REFERENCE_IMAGES, ReferenceSet, export_model
from qat.quantizers import MAX_CODE_BITS
from qat.train import resolve_device

HELP = "export a checkpoint to an integer bundle (graph.yaml, tensors.npz, reference.npz) for hwsim"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint.pt or best.pt written by `qat train`")
    add_output_arguments(parser, BUNDLE, "bundle directory to write", metavar="BUNDLE")
    parser.add_argument(
        "--reference-images",
        type=positive_int,
        default=None,
        metavar="N",
        help="test images whose per-layer outputs go into reference.npz; more than the test split "
        f"holds is an error (default: {DEFAULT_REFERENCE_IMAGES}, or the whole split if smaller)",
    )
    parser.add_argument(
        "--calibrate-float",
        type=int_in(2, MAX_CODE_BITS),
        default=None,
        metavar="N",
        help="quantize layers left in float (bits 32) to N bits: weights per channel from their max, "
        "activations from the reference images' max (default: refuse float layers)",
    )
    parser.add_argument(
        "--mult-bits",
        type=mult_bits_int,
        default=DEFAULT_MULT_BITS,
        metavar="B",
        help=f"width of every requantizer multiplier (default: {DEFAULT_MULT_BITS})",
    )
    parser.add_argument(
        "--batch-size", type=batch_int, default=256, help="images per PyTorch batch (default: 256)"
    )
    add_data_arguments(parser)


def reference_count(requested: int | None, available: int, data: str) -> int:
    """Images in the reference batch: ``--reference-images`` (at most what the test split holds),
    by default :data:`DEFAULT_REFERENCE_IMAGES` or the whole split if it is smaller."""
    if requested is None:
        return min(DEFAULT_REFERENCE_IMAGES, available)
    if requested > available:
        raise UserError(
            f"--reference-images {requested}: the test split of {data} holds only {available} images; "
            f"pass --reference-images {available} or less, or more data"
        )
    return requested


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    source = resolve_data(args)
    out = claim(args.out, BUNDLE, force=args.force, inputs=(args.checkpoint, source.directory))
    model, meta = load_model(args.checkpoint, device)
    images, labels = source.load("test")
    count = reference_count(args.reference_images, len(labels), source.describe())
    whole_set = source.kind == "cifar10"
    references = ReferenceSet(
        images=images[:count],
        labels=np.asarray(labels[:count], dtype=np.int64),
        source=f"{source.kind}-test"
        if whole_set
        else f"synthetic-test ({source.synthetic_n} generated images)",
        eval_images=images if whole_set else None,
        eval_labels=np.asarray(labels, dtype=np.int64) if whole_set else None,
    )
    quantization = {
        "config": meta.get("quant_source") or meta["quant"],
        "checkpoint": {
            "path": str(args.checkpoint),
            "epoch": meta.get("epoch"),
            "best_top1": meta.get("best_top1"),
        },
    }
    report = export_model(
        model,
        out,
        references,
        device=device,
        model_name=meta["model"],
        quantization=quantization,
        calibrate_bits=args.calibrate_float,
        mult_bits=args.mult_bits,
        batch_size=args.batch_size,
    )
    print("\n".join(report.lines()))
    return 0
