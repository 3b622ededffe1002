"""`hwsim import-qonnx`: a QONNX model (Brevitas, FINN, ...) -> an integer bundle with a qonnx reference.

Place in the flow: model.onnx -> hwsim.interop.qonnx_import -> bundle/ -> hwsim compare/simulate/...
Needs the optional packages of ``pip install -e .[onnx]`` (onnx, qonnx, onnxruntime), imported only here.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from hwsim.bundle import BUNDLE
from hwsim.bundle.lowering import DEFAULT_MULT_BITS
from hwsim.errors import UserError
from hwsim.flags import batch_int, mult_bits_int, positive_int
from hwsim.output import add_output_arguments, claim

HELP = "import a QONNX model (e.g. from Brevitas) as an integer bundle, with qonnx's execution as reference"


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = [math.nan]
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r:.40}: expected finite numbers, e.g. 0.4914,0.4822,0.4465")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="QONNX model file (.onnx), e.g. from brevitas.export.export_qonnx"
    )
    add_output_arguments(parser, BUNDLE, "bundle directory to write", metavar="BUNDLE")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="CIFAR-10 batches directory: reference images from its test split, and qonnx's top-1 "
        "on all of it (default: synthetic images)",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=8,
        metavar="N",
        help="images in the reference batch (default 8)",
    )
    parser.add_argument("--mean", type=_floats, default=None, help="input normalization mean per channel")
    parser.add_argument("--std", type=_floats, default=None, help="input normalization std per channel")
    parser.add_argument(
        "--rounding",
        choices=("as-exported", "half_up"),
        default="as-exported",
        help="activation requantizer rounding: each Quant's rounding_mode (default), or half_up everywhere "
        "(FINN's MultiThreshold rounds ties up)",
    )
    parser.add_argument(
        "--mult-bits",
        type=mult_bits_int,
        default=DEFAULT_MULT_BITS,
        metavar="B",
        help="multiplier width (default 32)",
    )
    parser.add_argument(
        "--batch-size", type=batch_int, default=256, help="images per qonnx execution (default 256)"
    )
    parser.add_argument(
        "--no-eval", action="store_true", help="with --data: skip qonnx's top-1 on the whole test split"
    )


def run(args: argparse.Namespace) -> int:
    from hwsim.interop import IMPORTERS

    data = args.data
    out = claim(args.out, BUNDLE, force=args.force, inputs=(args.model, data))
    if data is not None and not (Path(data) / "test_batch").is_file():
        raise UserError(
            f"--data {data}: no CIFAR-10 test_batch there; expected a CIFAR-10 python batches directory"
        )
    report = IMPORTERS["qonnx"](
        args.model,
        out,
        data=data,
        images=args.images,
        mean=args.mean,
        std=args.std,
        rounding=args.rounding,
        mult_bits=args.mult_bits,
        batch_size=args.batch_size,
        evaluate=not args.no_eval,
    )
    for line in report.lines():
        print(line)
    return 0
