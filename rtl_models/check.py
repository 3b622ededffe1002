"""Run vector sets of ``hwsim vectors`` on the RTL (the project's or yours) under cocotb: pass or fail.

Place in the flow: ``hwsim vectors`` writes the sets -> this command builds the design the sets
were made for on Icarus Verilog or Verilator (``rtl_models.sim``) and runs its testbench, which
compares every output with the values hwsim computed:

* GEMM sets (``"kind": "gemm"``, also sets without ``kind``): ``array_top`` with the sets'
  parameters through the verification kit (``rtl_models.kit.array_top``: the buffers protocol):
  every output word, the cycle counter against hwsim's timing and the overflow count against
  hwsim's array model; all GEMM sets of one call must share their parameters (one build,
  ``ADDR_BITS`` the largest);
* requant sets (``"kind": "requant"``): ``requant`` and ``tb_requant``: every output code (and
  clamp flag) of the requantizer's elements; one build per distinct parameter set (output
  format, rounding mode, widths), so one call checks a whole network's requantizers.

``--sources`` builds your Verilog instead; its top module must be ``array_top`` (GEMM sets) or
``requant`` (requant sets) with the ports and parameters of docs/rtl.md (``--values-only``: compare
the outputs but not the cycle counter and overflow count). A design with other ports is described
in a YAML file instead and goes through the verification kit (rtl_models/kit/command.py)::

    python -m rtl_models.check --dut my_dut.yaml --bundle BUNDLE --layer conv1,fc --stress
    python -m rtl_models.check vectors/l1 --dut my_dut.yaml                     # vector sets, values only

The plain route::

    python -m rtl_models.check vectors/l1 --sim verilator
    python -m rtl_models.check vectors/l1 vectors/l2 --sim icarus --sources my_pe.v my_array.v my_top.v
    python -m rtl_models.check vectors/act1 vectors/act2 --sim verilator --sources my_requant.v

Exit status: 0 when every set matched, 1 when the design disagreed (the mismatches are printed),
2 for bad input (a missing or foreign manifest, GEMM sets made for different parameters,
``--sources`` with sets of both kinds).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.errors import UserError
from hwsim.fixed import ROUNDING_MODES
from hwsim.hwconfig import requant_parameters
from hwsim.vectors import check_manifest, manifest_kind, read_requant_vectors
from rtl_models import network
from rtl_models.kit import command
from rtl_models.kit.runner import NO_STRESS
from rtl_models.sim import SIMULATORS, SimResult, run_testbench

MANIFEST = "manifest.json"
VECTORS_FORMAT = "qnn-verify-rtl-vectors"


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest.json of a vector set directory, checked to be one: a known ``kind``, every key the
    testbenches read, with its type (hwsim.vectors.check_manifest), and its files present."""
    path = directory / MANIFEST
    if not path.is_file():
        raise UserError(f"{directory}: no {MANIFEST}; pass a directory written by `hwsim vectors --out`")
    try:
        manifest = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f", line {err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        raise UserError(f"{path}: not valid JSON ({str(err)[:120]}{where})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != VECTORS_FORMAT:
        raise UserError(f"{path}: not a vector set (format is not {VECTORS_FORMAT!r}); regenerate it")
    check_manifest(manifest, directory)
    return manifest


def build_parameters(manifests: list[tuple[Path, dict[str, Any]]]) -> dict[str, int]:
    """One parameter set for every GEMM vector set, with ADDR_BITS large enough for the largest."""
    (first_dir, first), *rest = manifests
    for directory, manifest in rest:
        if manifest["parameters"] != first["parameters"]:
            raise UserError(
                f"{directory}: made for parameters {manifest['parameters']}, but {first_dir} for "
                f"{first['parameters']}; one run builds one design: check them separately"
            )
    return {**first["parameters"], "ADDR_BITS": max(int(m["addr_bits"]) for _, m in manifests)}


def requant_parameter_sets(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> list[tuple[dict[str, int], list[tuple[Path, dict[str, Any]]]]]:
    """Requant sets grouped by their parameters (one build each), in the order first named.

    Each set is read back (stimulus and manifest) and its parameters must be those that
    hwsim.hwconfig.requant_parameters derives from its output format and rounding mode.
    """
    groups: dict[tuple[tuple[str, int], ...], tuple[dict[str, int], list[tuple[Path, dict[str, Any]]]]] = {}
    for directory, manifest in manifests:
        vs = read_requant_vectors(directory)
        params = vs.parameters
        try:
            derived = requant_parameters(
                vs.out_format,
                vs.rounding,
                x_bits=params["X_BITS"],
                mult_bits=params["MULT_BITS"],
                function=vs.function,
            )
        except KeyError as err:
            raise UserError(f"{directory / MANIFEST}: parameters without {err}; regenerate the set") from None
        if derived != params:
            raise UserError(
                f"{directory / MANIFEST}: parameters {params}, but its format and rounding "
                f"{vs.rounding!r} give {derived}; regenerate the set"
            )
        key = tuple(sorted(params.items()))
        groups.setdefault(key, (params, []))[1].append((directory, manifest))
    return list(groups.values())


@dataclass
class _Run:
    """One build and testbench run: which sets, on which top, with what."""

    kind: str
    sets: list[tuple[Path, dict[str, Any]]]
    top: str
    params: dict[str, int]
    test_module: str
    config: dict[str, Any]
    testcase: str | None = None
    result: SimResult | None = None
    failure: str | None = None  # GEMM sets: the kit's verdict (rtl_models.kit)

    @property
    def passed(self) -> bool:
        if self.kind == "gemm":
            return self.result is not None and self.failure is None
        return self.result is not None and self.result.passed

    @property
    def names(self) -> str:
        return ", ".join(str(m.get("name")) for _, m in self.sets)


def plan(
    manifests: list[tuple[Path, dict[str, Any]]], sources: list[Path] | None, values_only: bool = False
) -> list[_Run]:
    """The builds that check ``manifests``: one for the GEMM sets, one per requant parameter set."""
    gemm = [(d, m) for d, m in manifests if manifest_kind(m) == "gemm"]
    requant = [(d, m) for d, m in manifests if manifest_kind(m) == "requant"]
    if sources and gemm and requant:
        raise UserError(
            "--sources replaces one design: pass GEMM sets (top array_top) or requant sets "
            "(top requant), not both in one call"
        )
    runs: list[_Run] = []
    if gemm:
        # run through the verification kit (_run_gemm_sets), not a testbench module of its own
        runs.append(_Run("gemm", gemm, "array_top", build_parameters(gemm), "", {"values_only": values_only}))
    for params, sets in requant_parameter_sets(requant):
        stimulus = [str((d / m["files"]["stimulus"]["path"]).resolve()) for d, m in sets]
        config = {"stimulus": stimulus, "rounding": ROUNDING_MODES[params["ROUNDING"]]}
        runs.append(_Run("requant", sets, "requant", params, "tb_requant", config, "requant_stimulus_file"))
    return runs


def _report(run: _Run, sim: str) -> str:
    assert run.result is not None
    if run.kind == "gemm":
        if run.passed:
            cycles = sum(int(m["expected"]["cycles"]) for _, m in run.sets)
            if run.config.get("values_only"):
                return f"PASS on {sim}: {len(run.sets)} vector set(s) ({run.names}), every output word equal"
            return (
                f"PASS on {sim}: {len(run.sets)} vector set(s) ({run.names}), {cycles} cycles, every output "
                "word, cycle count and overflow count equal to hwsim's"
            )
        return f"FAIL on {sim}: {run.failure}"
    params = ", ".join(f"{k}={v}" for k, v in run.params.items())
    what = (
        f"{len(run.sets)} requant vector set(s) ({run.names}) on requant ({params}, {run.config['rounding']})"
    )
    if run.result.passed:
        elements = sum(int(m["elements"]) for _, m in run.sets)
        return f"PASS on {sim}: {what}: {elements} elements, every output code equal to hwsim's"
    return f"FAIL on {sim}: {what}: {run.result.summary()}"


def _run_gemm_sets(run: _Run, sim: str, sources: list[Path] | None) -> None:
    """GEMM sets through the verification kit on array_top (ours or ``sources``): every output word,
    and unless ``values_only`` the cycle counter against hwsim's timing and the overflow counter."""
    from hwsim.vectors import read_vectors
    from rtl_models.kit.array_top import array_top_spec, set_item
    from rtl_models.kit.runner import build_and_run, judge
    from rtl_models.sim import SIM_BUILD

    spec = array_top_spec(run.params, sources, bool(run.config.get("values_only")))
    items = [set_item(read_vectors(d), i) for i, (d, _) in enumerate(run.sets)]
    record = build_and_run(spec, items, sim, root=SIM_BUILD / "kit")
    if record.kind == "ports":
        raise UserError(f"{record.failure}; a design with other ports needs a description: --dut FILE")
    run.result = record.result
    run.failure = judge(spec, [], items, record, sim, NO_STRESS).failure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtl_models.check",
        description="run hwsim vector sets on array_top or requant (or your RTL) under cocotb and "
        "compare with hwsim",
    )
    parser.add_argument("vectors", nargs="*", type=Path, help="directories written by `hwsim vectors`")
    parser.add_argument(
        "--sim", choices=SIMULATORS, default="verilator", help="simulator (default verilator)"
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        type=Path,
        help="your Verilog files instead of ours (top array_top for GEMM sets, requant for requant sets)",
    )
    parser.add_argument(
        "--values-only",
        action="store_true",
        help="GEMM sets: compare the output values only (not the cycle counter or the overflow count)",
    )
    network.add_arguments(parser)  # --network BUNDLE: rtl_models/network.py
    command.add_arguments(parser)  # --dut dut.yaml: rtl_models/kit/command.py
    args = parser.parse_args(argv)
    if args.dut is not None:
        return command.main_kit(args)
    if command.misplaced(args):
        print(
            f"rtl_models.check: error: {', '.join(command.misplaced(args))}: only with --dut", file=sys.stderr
        )
        return 2
    if args.network is not None:
        return network.main_network(args)
    try:
        if not args.vectors:
            raise UserError("no vector directories; pass directories of `hwsim vectors`, or --network BUNDLE")
        if network.misplaced_options(args):
            raise UserError(f"{', '.join(network.misplaced_options(args))}: only with --network BUNDLE")
        manifests = [(d, read_manifest(d)) for d in args.vectors]
        runs = plan(manifests, args.sources, args.values_only)
        for run in runs:
            if run.kind == "gemm":
                _run_gemm_sets(run, args.sim, args.sources)
                continue
            run.result = run_testbench(
                run.top,
                args.sim,
                run.params,
                run.test_module,
                config=run.config,
                testcase=run.testcase,
                sources=args.sources,
                name="check",
            )
    except UserError as err:
        print(f"rtl_models.check: error: {err}", file=sys.stderr)
        return 2
    for run in runs:
        print(_report(run, args.sim))
    return 0 if all(run.passed for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
