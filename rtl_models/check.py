"""Run vector sets of ``hwsim vectors`` on an array RTL (the project's or yours) under cocotb: pass or fail.

Place in the flow: ``hwsim vectors`` writes the sets -> this command builds ``array_top`` with
the sets' parameters on Icarus Verilog or Verilator (``rtl_models.sim``) and runs the
``tb_array_top`` testbench, which compares every output word, the cycle counter and the
overflow count with the values hwsim computed. ``--sources`` builds your Verilog instead; its
top module must be ``array_top`` with the ports and parameters of docs/rtl.md::

    python -m rtl_models.check vectors/l1 --sim verilator
    python -m rtl_models.check vectors/l1 vectors/l2 --sim icarus --sources my_pe.v my_array.v my_top.v

Exit status: 0 when every set matched, 1 when the design disagreed (the mismatches are printed),
2 for bad input (a missing or foreign manifest, sets made for different parameters).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hwsim.errors import UserError
from rtl_models.sim import SIMULATORS, run_testbench

MANIFEST = "manifest.json"
VECTORS_FORMAT = "qnn-verify-rtl-vectors"


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest.json of a vector set directory, checked to be one."""
    path = directory / MANIFEST
    if not path.is_file():
        raise UserError(f"{directory}: no {MANIFEST}; pass a directory written by `hwsim vectors --out`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != VECTORS_FORMAT:
        raise UserError(f"{path}: not a vector set (format is not {VECTORS_FORMAT!r}); regenerate it")
    return manifest


def build_parameters(manifests: list[tuple[Path, dict[str, Any]]]) -> dict[str, int]:
    """One parameter set for every vector set, with ADDR_BITS large enough for the largest."""
    (first_dir, first), *rest = manifests
    for directory, manifest in rest:
        if manifest["parameters"] != first["parameters"]:
            raise UserError(
                f"{directory}: made for parameters {manifest['parameters']}, but {first_dir} for "
                f"{first['parameters']}; one run builds one design: check them separately"
            )
    return {**first["parameters"], "ADDR_BITS": max(int(m["addr_bits"]) for _, m in manifests)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtl_models.check",
        description="run hwsim vector sets on array_top (or your RTL) under cocotb and compare with hwsim",
    )
    parser.add_argument("vectors", nargs="+", type=Path, help="directories written by `hwsim vectors`")
    parser.add_argument(
        "--sim", choices=SIMULATORS, default="verilator", help="simulator (default verilator)"
    )
    parser.add_argument(
        "--sources", nargs="+", type=Path, help="your Verilog files (top module array_top) instead of ours"
    )
    args = parser.parse_args(argv)
    try:
        manifests = [(d, read_manifest(d)) for d in args.vectors]
        params = build_parameters(manifests)
        result = run_testbench(
            "array_top",
            args.sim,
            params,
            "tb_array_top",
            config={"vectors": [str(d.resolve()) for d in args.vectors]},
            sources=args.sources,
        )
    except UserError as err:
        print(f"rtl_models.check: error: {err}", file=sys.stderr)
        return 2
    names = ", ".join(str(m.get("name")) for _, m in manifests)
    if result.passed:
        cycles = sum(int(m["expected"]["cycles"]) for _, m in manifests)
        print(
            f"PASS on {args.sim}: {len(manifests)} vector set(s) ({names}), {cycles} cycles, every output "
            "word, cycle count and overflow count equal to hwsim's"
        )
        return 0
    print(f"FAIL on {args.sim}: {result.summary()}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
