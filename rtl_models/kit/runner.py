"""Build a described design on Icarus or Verilator, run the kit's items through it, judge the outcome.

Place in the flow: called by ``python -m rtl_models.check --dut`` and the tests, after
``rtl_models.kit.spec`` (the description) and ``rtl_models.kit.work`` (the items). :func:`build`
compiles the user's sources (include directories, defines, build arguments, parameters checked
against those the top declares) into a build directory outside the package; a failure is a
:class:`BuildError` (exit 2) quoting the compiler's first error. :func:`run_items` runs
``rtl_models.kit.tb`` on them (or ``test_module``: your own cocotb test on the same build) and
:func:`judge` is the scoreboard: values ``==`` per element (checked as they arrive, inside the
simulator), each layer's items added back up ``==`` the emulator's layer, cycles against the
chosen model (reported; failing only with ``enforce``), overflow counters where described.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwsim.errors import UserError
from rtl_models.kit.spec import BuffersProtocol, DutSpec
from rtl_models.kit.stress import Stress
from rtl_models.kit.work import LayerWork, WorkItem, assemble, save_items
from rtl_models.sim import SIMULATORS, SimResult, declared_parameters, prepare_environment, read_results

KIT_TEST_MODULE = "rtl_models.kit.tb"
NO_STRESS = Stress()


class BuildError(UserError):
    """The simulator could not build the design; the message quotes its first error."""


def first_error(log: str) -> str:
    """The compiler's first error line of a build log (Icarus, Verilator, or the C++ compiler)."""
    for line in log.splitlines():  # Verilator's warnings are fatal ("Exiting due to N warning(s)")
        if "Exiting due to" in line:
            continue
        if re.search(r"%Error|%Warning|\berror\b|syntax error|I give up|Unknown module", line, re.I):
            return line.strip()
    tail = [x for x in log.splitlines() if x.strip()]
    return tail[-1].strip() if tail else "(the build printed nothing)"


def default_build_root() -> Path:
    """Where builds go: ``$RTL_KIT_BUILD``, else ``./sim_build/kit`` in the current directory."""
    return Path(os.environ.get("RTL_KIT_BUILD") or Path.cwd() / "sim_build" / "kit").resolve()


def build_dir_of(spec: DutSpec, sim: str, root: Path | None = None) -> Path:
    key = json.dumps(
        [
            spec.top,
            [str(s) for s in spec.sources],
            dict(spec.parameters),
            dict(spec.defines),
            list(spec.build_args),
            [str(i) for i in spec.includes],
        ],
        sort_keys=True,
    )
    return (root or default_build_root()) / f"{spec.top}-{sim}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def build(spec: DutSpec, sim: str, root: Path | None = None) -> Path:
    """Compile the design; returns its build directory."""
    if sim not in SIMULATORS:
        raise UserError(f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    declared = declared_parameters(spec.top, list(spec.sources))
    unknown = [k for k in spec.parameters if k not in declared]
    if unknown:
        raise UserError(
            f"{spec.source_file}: parameters {', '.join(unknown)}: module {spec.top} declares no such "
            f"parameter (it declares {', '.join(declared) or 'none'})"
        )
    prepare_environment()
    from cocotb_tools.runner import get_runner

    build_dir = build_dir_of(spec, sim, root)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    runner = get_runner(sim)
    sources = [Path(s).resolve() for s in spec.sources]
    if spec.prepare is not None:
        sources = prepared_sources(spec, sources, build_dir)
    try:
        runner.build(
            sources=sources,
            includes=[Path(i).resolve() for i in spec.includes],
            defines=dict(spec.defines),
            parameters=dict(spec.parameters),
            build_args=list(spec.build_args),
            hdl_toplevel=spec.top,
            build_dir=build_dir,
            always=True,
            timescale=("1ns", "1ps"),
            log_file=log,
        )
    except (RuntimeError, SystemExit, OSError) as err:
        text = log.read_text(errors="replace") if log.is_file() else str(err)
        raise BuildError(
            f"{sim} could not build {spec.top}: {first_error(text)} (whole log: {log})"
        ) from None
    return build_dir


def prepared_sources(spec: DutSpec, sources: list[Path], build_dir: Path) -> list[Path]:
    """The sources as the description's ``prepare`` file's ``sources(sources, build_dir)`` returns them
    (e.g. a build-time copy of a vendored file in a form the simulator accepts; the original stays)."""
    import importlib.util

    assert spec.prepare is not None
    loader = importlib.util.spec_from_file_location(f"kit_prepare_{spec.prepare.stem}", spec.prepare)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    if not callable(getattr(module, "sources", None)):
        raise UserError(f"{spec.prepare}: defines no function sources(sources, build_dir)")
    return [Path(p) for p in module.sources(sources, build_dir)]


@dataclass
class RunRecord:
    """What the testbench saw (rtl_models.kit.tb's result file) and cocotb's verdict."""

    result: SimResult
    failure: str | None
    kind: str | None
    outputs: list[np.ndarray]
    cycles: list[tuple[int, int]]
    counter: list[int | None]
    overflow: list[int | None]
    ran_kit: bool = True  # the kit's items ran (rtl_models.kit.tb.run_kit wrote its result file)


def run_items(
    spec: DutSpec,
    items: Sequence[WorkItem],
    sim: str,
    build_dir: Path,
    *,
    stress: Stress = NO_STRESS,
    test_module: str = KIT_TEST_MODULE,
    name: str = "kit",
) -> RunRecord:
    """Run ``items`` through the built design under cocotb."""
    if any(it.carry is not None for it in items) and not isinstance(spec.protocol, BuffersProtocol):
        raise UserError(
            f"{spec.source_file}: accumulating work (Y = C + A @ W, a vector set with carry_obuf.hex) "
            "needs the buffers protocol, whose output buffer holds C"
        )
    from cocotb_tools.runner import get_runner

    items_path, result_path = build_dir / f"{name}.items.npz", build_dir / f"{name}.result.json"
    save_items(items, items_path)
    for stale in (result_path, result_path.with_suffix(".npz")):
        stale.unlink(missing_ok=True)
    config = {
        "spec": spec.to_json(),
        "items": str(items_path),
        "result": str(result_path),
        "stress": stress.to_json(),
    }
    xml = (build_dir / f"{name}.results.xml").resolve()
    xml.unlink(missing_ok=True)
    # A failing cocotb test ends the runner with SystemExit (under pytest); a simulator that exits
    # non-zero (a design's own $error past the error limit) with RuntimeError: the results say which.
    with contextlib.suppress(SystemExit, RuntimeError):
        get_runner(sim).test(
            hdl_toplevel=spec.top,
            hdl_toplevel_lang="verilog",
            test_module=test_module,
            build_dir=build_dir,
            results_xml=str(xml),
            extra_env={"RTL_TB_CONFIG": json.dumps(config)},
            plusargs=list(spec.plusargs),
            log_file=build_dir / f"{name}.log",
        )
    result = read_results(xml)
    record = json.loads(result_path.read_text()) if result_path.is_file() else {"failure": None, "kind": None}
    outputs: list[np.ndarray] = []
    if result_path.with_suffix(".npz").is_file():
        with np.load(result_path.with_suffix(".npz")) as z:
            outputs = [z[f"arr_{i}"] for i in range(len(z.files))]
    failure = record.get("failure")
    if failure is None and not result.passed:
        failure = (
            "\n".join(result.failures)
            or f"the simulation ended without a verdict (log: {build_dir / name}.log)"
        )
    return RunRecord(
        result,
        failure,
        record.get("kind"),
        outputs,
        [tuple(c) for c in record.get("cycles", [])],
        record.get("counter", []),
        record.get("overflow", []),
        result_path.is_file(),
    )


def build_and_run(
    spec: DutSpec,
    items: Sequence[WorkItem],
    sim: str,
    *,
    stress: Stress = NO_STRESS,
    test_module: str = KIT_TEST_MODULE,
    root: Path | None = None,
) -> RunRecord:
    """:func:`build` and :func:`run_items`, one process at a time per build directory (a lock file:
    parallel test processes and concurrent commands may share a description)."""
    import fcntl

    build_dir = build_dir_of(spec, sim, root)
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build(spec, sim, root)
        return run_items(spec, items, sim, build_dir, stress=stress, test_module=test_module)


# --- the scoreboard ----------------------------------------------------------------------------

_FORMULA_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Call,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
)
_FORMULA_FUNCS = {"min": min, "max": max, "ceil": math.ceil, "floor": math.floor}


def formula_cycles(formula: str, m: int, k: int, n: int, parameters: dict[str, int], where: str) -> float:
    """A user's cycle formula of ``m``, ``k``, ``n`` and the design's parameters (arithmetic only)."""
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError as err:
        raise UserError(f"{where}: formula {formula!r} is not an expression ({err.msg})") from None
    names = {"m": m, "k": k, "n": n, **parameters, **_FORMULA_FUNCS}
    for node in ast.walk(tree):
        if not isinstance(node, _FORMULA_NODES):
            raise UserError(f"{where}: formula {formula!r}: only arithmetic, names and min/max/ceil/floor")
        if isinstance(node, ast.Name) and node.id not in names:
            raise UserError(
                f"{where}: formula {formula!r}: unknown name {node.id!r}; use m, k, n or a parameter"
            )
    return float(eval(compile(tree, "<formula>", "eval"), {"__builtins__": {}}, names))  # noqa: S307


def model_cycles(spec: DutSpec, item: WorkItem) -> float | None:
    """The chosen model's cycles for an item (``None``: no model)."""
    c = spec.compare.cycles
    m, k, n = item.shape
    if c.model == "formula":
        assert c.formula is not None
        return formula_cycles(
            c.formula, m, k, n, dict(spec.parameters), f"{spec.source_file}: compare.cycles"
        )
    if c.model == "hwsim":
        p = spec.protocol
        if not isinstance(p, BuffersProtocol):
            raise UserError(
                f"{spec.source_file}: compare.cycles.model hwsim times hwsim's own arrays (protocol "
                "buffers); for another design give model: formula"
            )
        from hwsim.dataflows import dataflow
        from hwsim.mapping import GemmShape
        from hwsim.timing import native_gemm_cycles

        hw, gemm = p.hardware(spec.gemm), GemmShape(m=m, k=k, n=n)
        carry_load = 0 if item.carry is None else dataflow(p.dataflow).carry_load(gemm, hw.array)
        return float(native_gemm_cycles(gemm, hw).total + carry_load)
    return None


@dataclass
class KitReport:
    """The verdict of one run: values, layers, cycles, overflow counters."""

    top: str
    sim: str
    stress: Stress
    items: int
    failure: str | None = None
    kind: str | None = None  # "mismatch", "hang", "ports", "layer", "cycles", "overflow", "error"
    layers: list[tuple[str, int, str]] = field(default_factory=list)  # (layer, items, verdict)
    cycles: list[tuple[int, int, float | None]] = field(default_factory=list)  # (item, measured, model)
    cycle_note: str = ""

    @property
    def passed(self) -> bool:
        return self.failure is None

    def render(self) -> str:
        lines = [f"{'layer':20s} {'items':>6s}  verdict"]
        lines += [f"{name:20s} {count:6d}  {verdict}" for name, count, verdict in self.layers]
        if self.cycle_note:
            lines.append(self.cycle_note)
        mode = self.stress.describe()
        if self.passed:
            lines.append(
                f"PASS on {self.sim}: {self.top}, {self.items} work items ({mode}), every output == hwsim's"
            )
        else:
            lines.append(
                f"FAIL on {self.sim}: {self.top} ({mode}; replay with --seed {self.stress.seed}): "
                f"{self.failure}"
            )
        return "\n".join(lines)


def judge(
    spec: DutSpec,
    works: Sequence[LayerWork],
    extra: Sequence[WorkItem],
    record: RunRecord,
    sim: str,
    stress: Stress,
) -> KitReport:
    """The scoreboard's verdict on a run (module docstring)."""
    items = [it for w in works for it in w.items] + list(extra)
    report = KitReport(spec.top, sim, stress, len(items))
    if record.failure is not None:
        report.failure, report.kind = record.failure, record.kind or "error"
        return report
    if len(record.outputs) != len(items):
        report.failure, report.kind = (
            f"the testbench returned {len(record.outputs)} of {len(items)} items",
            "error",
        )
        return report
    pos = 0
    for w in works:
        outs = record.outputs[pos : pos + len(w.items)]
        pos += len(w.items)
        total = assemble(w, outs, spec.gemm)
        if total is None:
            verdict = "items ==; layer sum not checked (saturating accumulator over several K blocks)"
        elif np.array_equal(total, w.expected):
            verdict = f"items ==, {w.k_blocks} K block(s) added up == {w.reference}"
        else:
            bad = np.argwhere(total != w.expected)[0]
            report.failure, report.kind = (
                f"layer {w.layer}: the items' outputs added up give Y[m={bad[0]}, n={bad[1]}] = "
                f"{int(total[tuple(bad)])}, the {w.reference} {int(w.expected[tuple(bad)])}",
                "layer",
            )
            verdict = "FAIL"
        report.layers.append((w.layer, len(w.items), verdict))
    if extra:
        report.layers.append(("random (stress)", len(extra), "items =="))
    c = spec.compare.cycles
    worst = 0.0
    for i, it in enumerate(items):
        counter = record.counter[i] if i < len(record.counter) else None
        first, last = record.cycles[i]
        measured = counter if counter is not None else last - first
        model = model_cycles(spec, it)
        report.cycles.append((it.index, measured, model))
        if model is not None and model > 0:
            off = abs(measured - model) / model
            if off > c.tolerance and worst <= c.tolerance:
                note = (
                    f"{it.where()}: {measured} cycles, model {model:g} ({100 * off:.1f} % off, "
                    f"tolerance {100 * c.tolerance:g} %)"
                )
                if c.enforce and report.failure is None:
                    report.failure, report.kind = note, "cycles"
                report.cycle_note = "cycles: " + note + ("" if c.enforce else " (reported, not enforced)")
            worst = max(worst, off)
    if c.model != "none" and not report.cycle_note:
        report.cycle_note = f"cycles: every item within {100 * c.tolerance:g} % of the {c.model} model"
    elif c.model == "none" and report.cycles:
        total = sum(x[1] for x in report.cycles)
        report.cycle_note = f"cycles: {total} measured over {len(items)} items (no model chosen)"
    if spec.compare.overflow_counter and report.failure is None:
        from hwsim.systolic import run_gemm_cycles

        p = spec.protocol
        for i, it in enumerate(items):
            got = record.overflow[i]
            if isinstance(p, BuffersProtocol):  # one event per PE and product, hwsim's array model
                want = run_gemm_cycles(it.a, it.w, p.hardware(spec.gemm), carry=it.carry).overflow_events
            else:
                want = it.overflows
            if got != want:
                report.failure, report.kind = (
                    f"{it.where()}: overflow counter {got}, hwsim {want}",
                    "overflow",
                )
                break
    return report
