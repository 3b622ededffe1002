"""`hwsim vectors`: write one layer as RTL test vectors: a GEMM ($readmemh hex files) or a requantizer.

Place in the flow: bundle/ -> emulator (the layer's inputs) -> hwsim.vectors -> DIR, which
rtl_models/tb_array_top.py (a conv2d or linear node's GEMM) or rtl_models/tb_requant.py (a requant
node: its accumulators in, its codes out) runs against RTL through ``python -m rtl_models.check``
(see docs/rtl.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hwsim.bundle import Bundle, Conv2dNode, LinearNode, RequantNode, load_bundle
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.flags import non_negative_int, seed_int
from hwsim.gemm import im2col, weight_matrix
from hwsim.hwconfig import HardwareConfig, load_hw_config
from hwsim.limits import PE_CYCLES
from hwsim.output import VECTORS, add_output_arguments, claim
from hwsim.vectors import (
    NOTE_PE_CYCLES,
    array_model_steps,
    choose_image,
    make_requant_vector_set,
    make_vector_set,
    write_requant_vectors,
    write_vectors,
)

HELP = (
    "write a layer's GEMM (stimulus, expected outputs, cycles) or a requantizer (inputs, expected "
    "codes) as test vectors for RTL"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory written by qat export")
    parser.add_argument(
        "--layer",
        required=True,
        metavar="NAME",
        help="a conv2d or linear node (its GEMM on the array) or a requant node with one or two inputs",
    )
    parser.add_argument(
        "--hw",
        type=Path,
        required=True,
        metavar="HW.yaml",
        help="hardware description (any dataflow the RTL has; its accumulator width and overflow also "
        "feed a requant node)",
    )
    add_output_arguments(parser, VECTORS, "directory to write")
    parser.add_argument(
        "--image",
        type=non_negative_int,
        default=0,
        metavar="I",
        help="index of the reference.npz input image (default 0)",
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed of a random input image when the bundle has no reference.npz",
    )
    parser.add_argument(
        "--group", type=non_negative_int, default=0, metavar="G", help="group of a grouped conv (default 0)"
    )


def run(args: argparse.Namespace) -> int:
    args.out = claim(args.out, VECTORS, force=args.force, inputs=(args.bundle, args.hw))
    bundle = load_bundle(args.bundle)
    hw = load_hw_config(args.hw)
    names = [n.name for n in bundle.mac_nodes] + [n.name for n in bundle.nodes if isinstance(n, RequantNode)]
    other = next((n for n in bundle.nodes if n.name == args.layer and n.name not in names), None)
    if other is not None:
        raise UserError(
            f"{args.bundle}: node {args.layer!r} is a {other.op} node; the RTL models are the MAC array "
            f"(conv2d, linear) and the requantizer (requant), so it has no test vectors; choose one of "
            f"{', '.join(names)}"
        )
    if args.layer not in names:
        raise UserError(
            f"{args.bundle}: no conv2d, linear or requant node named {args.layer!r}; "
            f"choose one of {', '.join(names)}"
        )
    node = bundle.node(args.layer)
    image = choose_image(bundle, args.image, args.seed)
    config = EmulatorConfig(acc_bits=hw.pe.acc_bits, overflow=hw.pe.overflow)
    if isinstance(node, RequantNode):
        return _requant(bundle, node, image, config, hw, args)
    assert isinstance(node, (Conv2dNode, LinearNode))
    emulation = emulate(bundle, image, config)
    a = im2col(emulation.tensors[node.input], node)
    w = weight_matrix(node)
    if not 0 <= args.group < a.shape[0]:
        raise UserError(
            f"--group {args.group}: layer {node.name!r} has {a.shape[0]} groups; pick 0..{a.shape[0] - 1}"
        )
    in_fmt = bundle.tensors[node.input].fmt
    assert in_fmt is not None
    cycles, steps = array_model_steps(a.shape[1], a.shape[2], w.shape[2], hw)
    if NOTE_PE_CYCLES < steps <= PE_CYCLES.value():
        print(
            f"{node.name}: the register-level array model steps {hw.array.rows}x{hw.array.cols} PEs through "
            f"{cycles} cycles ({steps:.1e} PE-cycles); this takes a while",
            file=sys.stderr,
        )
    vs = make_vector_set(
        a[args.group],
        w[args.group],
        hw,
        a_fmt=in_fmt.int_format,
        w_fmt=IntFormat(node.weight_format.bits, True),
        name=node.name,
    )
    out = write_vectors(vs, args.out)
    m, k, n = vs.shape
    print(
        f"{node.name}: GEMM M={m} K={k} N={n} on {hw.array.rows}x{hw.array.cols} ({hw.label}): "
        f"{vs.cycles} cycles, {vs.overflow_events} overflow events; needs ADDR_BITS >= {vs.addr_bits}"
    )
    print(f"wrote {out}/manifest.json, abuf.hex, wbuf.hex, expected_obuf.hex")
    return 0


def _requant(
    bundle: Bundle,
    node: RequantNode,
    image: np.ndarray,
    config: EmulatorConfig,
    hw: HardwareConfig,
    args: argparse.Namespace,
) -> int:
    if args.group != 0:
        raise UserError(
            f"--group {args.group}: {node.name!r} is a requant node; --group picks a conv's group"
        )
    vs = make_requant_vector_set(bundle, node.name, image, config)
    out = write_requant_vectors(vs, args.out)
    params = ", ".join(f"{k}={v}" for k, v in vs.parameters.items())
    print(
        f"{node.name}: requant of {vs.inputs} input(s), {vs.function}, rounding {vs.rounding}, "
        f"{vs.elements} elements ({vs.clamped} clamped) on the accumulators of {hw.label}; "
        f"requant.v with {params}"
    )
    print(f"wrote {out}/manifest.json, stimulus.npz")
    return 0
