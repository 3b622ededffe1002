"""requant.v on Icarus and Verilator in every rounding mode against hwsim.fixed (tb_requant.py).

Each rounding mode runs on both simulators with the directed elements (ties of both signs and
the values just below and above them, shifts 0 to 62, clamps, extreme sums) and a few hundred
random ones; the output formats of the contract are spread over the modes.
"""

from __future__ import annotations

import pytest
from conftest import run_and_check

from hwsim.fixed import ROUNDING_MODES, CodeFormat, IntFormat
from hwsim.hwconfig import requant_parameters
from rtl_models.sim import SIMULATORS

pytestmark = pytest.mark.rtl

# Unsigned 4/8-bit activations, signed 8-bit (network input, sign function), signed narrow 8-bit
# logits, signed 16-bit logits, signed 4-bit codes; accumulators of 32 and 24 bits. uint4 half_up
# is also the ResNet20 layer's build, int4 toward_zero and int8 half_even those of tests/rtl/test_check.py.
FORMATS: dict[str, tuple[IntFormat | CodeFormat, int]] = {
    "half_up": (IntFormat(4, False), 32),
    "half_even": (IntFormat(8, True), 32),
    "half_away": (IntFormat(16, True), 32),
    "floor": (IntFormat(8, False), 24),
    "ceil": (CodeFormat(8, True, lattice="narrow"), 32),
    "toward_zero": (IntFormat(4, True), 32),
}
assert set(FORMATS) == set(ROUNDING_MODES)
CASES = [(sim, mode) for mode in ROUNDING_MODES for sim in SIMULATORS]


def _params(mode: str) -> dict[str, int]:
    out_fmt, x_bits = FORMATS[mode]
    return requant_parameters(out_fmt, mode, x_bits=x_bits)


def _id(sim: str, mode: str) -> str:
    p = _params(mode)
    out = f"{'int' if p['OUT_SIGNED'] else 'uint'}{p['OUT_BITS']}{'n' if p['OUT_NARROW'] else ''}"
    return f"{sim}-{mode}-{out}-x{p['X_BITS']}"


@pytest.mark.parametrize(("sim", "mode"), CASES, ids=[_id(s, m) for s, m in CASES])
def test_requant(sim: str, mode: str) -> None:
    result = run_and_check(
        "requant",
        sim,
        _params(mode),
        "tb_requant",
        config={"seed": 11 + ROUNDING_MODES.index(mode), "elements": 300},
        testcase=["requant_directed", "requant_random"],
    )
    assert result.tests == 2
