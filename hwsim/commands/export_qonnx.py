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
from hwsim.interop.qonnx_export import (
    INPUT_KINDS,
    PRODUCER,
    ExportError,
    compare_with_emulator,
    export_qonnx,
    save_model,
)

HELP = "write a bundle as a QONNX model (Quant/BipolarQuant ops) that computes the bundle's integer codes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (written by qat export or an importer)")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL.onnx", help="the model to write")
    parser.add_argument(
        "--batch", type=int, default=1, metavar="N", help="images per run of the model (a fixed batch axis)"
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
        "--images", type=int, default=16, metavar="N", help="reference images for --check (default 16)"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite --out even if it is not a model this command wrote"
    )


def _check_out(path: Path, force: bool) -> None:
    """Refuse a directory, and a file that is not a model this command wrote (unless ``force``)."""
    if path.is_dir():
        raise UserError(f"--out {path}: is a directory; expected a file name such as {path / 'model.onnx'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {path}: {parent} is a file, not a directory; pick a path in a directory")
    if not path.exists() or force:
        return
    try:
        import onnx

        producer = onnx.load(str(path), load_external_data=False).producer_name
    except Exception:  # not an ONNX file at all
        producer = None
    if producer != PRODUCER:
        raise UserError(
            f"--out {path}: exists and is not a model written by {PRODUCER}; "
            "remove it, pick another name, or pass --force"
        )


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise UserError(f"--batch {args.batch}: expected a positive number of images")
    if args.images < 1:
        raise UserError(f"--images {args.images}: expected a positive number of images")
    _check_out(args.out, args.force)
    bundle = load_bundle(args.bundle)
    dtype = "float32" if args.float32 else "auto"
    export = export_qonnx(bundle, batch=args.batch, dtype=dtype, input_kind=args.input)
    try:
        save_model(export, args.out)
    except OSError as err:
        raise UserError(
            f"--out {args.out}: cannot write it ({err.strerror or err}); pick a writable path"
        ) from None
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
        codes = ref.input_codes[: args.images]
        rows = compare_with_emulator(bundle, codes, dtype=dtype)
        print(f"qonnx execute_onnx vs hwsim emulate on {codes.shape[0]} reference images:")
        width = max(len(r.tensor) for r in rows)
        for r in rows:
            print(f"  {r.tensor.ljust(width)}  equal {r.fraction:.6f}  max |diff| {r.max_diff:g} LSB")
        equal = sum(r.equal for r in rows)
        total = sum(r.elements for r in rows)
        print(f"all codes: equal {equal}/{total}, max |diff| {max(r.max_diff for r in rows):g} LSB")
    return 0
