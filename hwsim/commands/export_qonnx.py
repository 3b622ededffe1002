"""`hwsim export-qonnx`: write a bundle as a QONNX model (ONNX with qonnx's Quant ops) computing its codes.

Place in the flow: bundle/ -> hwsim.interop.qonnx_export -> MODEL.onnx (for qonnx, FINN and other
QONNX tools); ``--check`` runs the written graph with qonnx on the reference inputs and compares
every node's codes with hwsim.emulator's.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from hwsim.bundle import load_bundle
from hwsim.errors import UserError
from hwsim.flags import batch_int, positive_int
from hwsim.interop.qonnx_export import (
    INPUT_KINDS,
    QONNX_MODEL,
    ExportError,
    compare_with_emulator,
    export_qonnx,
    save_model,
)
from hwsim.output import add_output_arguments, claim

HELP = "write a bundle as a QONNX model (Quant/BipolarQuant ops) that computes the bundle's integer codes"


CHECK_IMAGES = 16  # reference images --check runs when --images is not given


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (written by qat export or an importer)")
    add_output_arguments(parser, QONNX_MODEL, "the model to write", metavar="MODEL.onnx")
    parser.add_argument(
        "--batch",
        type=batch_int,
        default=1,
        metavar="N",
        help="images per run of the model (a fixed batch axis)",
    )
    parser.add_argument(
        "--input",
        choices=INPUT_KINDS,
        default="codes",
        help="the graph input: the input codes as floats (default), or pixels 0..255 [N, C, H, W] "
        "quantized by the bundle's input recipe",
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="compute in float32 everywhere (no float64 tensors); exact only where the bounds allow",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the model with qonnx on the reference inputs; compare each node's codes to the emulator",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"reference images for --check (default {CHECK_IMAGES}, or all of the reference if fewer)",
    )


def run(args: argparse.Namespace) -> int:
    out = claim(args.out, QONNX_MODEL, force=args.force, inputs=(args.bundle,))
    bundle = load_bundle(args.bundle)
    held = bundle.reference.images if bundle.reference is not None else None
    if args.check and args.images is not None and held is not None and args.images > held:
        raise UserError(
            f"--images {args.images}: the bundle's reference holds {held} inputs; "
            f"pass --images {held} or less"
        )
    dtype = "float32" if args.float32 else "auto"
    export = export_qonnx(bundle, batch=args.batch, dtype=dtype, input_kind=args.input)
    save_model(export, out)
    exact = sum(e.exact for e in export.exactness)
    print(
        f"wrote {args.out}: {len(export.model.graph.node)} ONNX nodes for {len(bundle.nodes)} bundle nodes, "
        f"input '{export.input_name}' ({args.input}, batch {args.batch}), "
        f"output '{bundle.meta.output}' (codes)"
    )
    print(f"nodes proven exact by their bounds: {exact}/{len(export.exactness)}")
    for e in export.exactness:
        if not e.exact:
            bits = math.log2(e.bound) if e.bound > 0 else 0.0
            note = f"; {e.note}" if e.note else ""
            print(f"  not proven: {e.node} ({e.op}, {e.dtype}): bound 2^{bits:.1f}{note}")
    if args.check:
        ref = bundle.reference
        if ref is None:
            raise ExportError(f"{args.bundle}: --check needs reference.npz (its input codes); drop --check")
        codes = ref.input_codes[: min(CHECK_IMAGES, ref.images) if args.images is None else args.images]
        rows = compare_with_emulator(bundle, codes, dtype=dtype)
        print(f"qonnx execute_onnx vs hwsim emulate on {codes.shape[0]} reference images:")
        width = max(len(r.tensor) for r in rows)
        for r in rows:
            print(f"  {r.tensor.ljust(width)}  equal {r.fraction:.6f}  max |diff| {r.max_diff:g} LSB")
        equal = sum(r.equal for r in rows)
        total = sum(r.elements for r in rows)
        print(f"all codes: equal {equal}/{total}, max |diff| {max(r.max_diff for r in rows):g} LSB")
    return 0
