"""mac_pe.v on Icarus and Verilator against hwsim.fixed.narrow (rtl_models/tb_mac_pe.py)."""

from __future__ import annotations

import pytest
from conftest import case_id, rtl_parameters, run_and_check

pytestmark = pytest.mark.rtl

# Operand widths 4/8/16, accumulators 16/24/32, wrap and saturate, signed activations (the
# network input) and the bottom row's combinational partial sum (PSUM_REG=0).
PE_CASES = [
    ("icarus", rtl_parameters(a_bits=8, w_bits=8)),  # ws_8x8: acc24 wrap
    ("icarus", rtl_parameters(a_bits=4, w_bits=4, acc_bits=16, overflow="saturate")),
    ("icarus", rtl_parameters(a_bits=16, w_bits=16, acc_bits=32)),
    ("icarus", rtl_parameters(a_bits=16, w_bits=8, acc_bits=24, overflow="saturate")),
    ("icarus", rtl_parameters(a_bits=8, w_bits=4, a_signed=True, acc_bits=16)),
    ("icarus", {**rtl_parameters(a_bits=4, w_bits=8, acc_bits=16, overflow="saturate"), "PSUM_REG": 0}),
    ("verilator", rtl_parameters(a_bits=8, w_bits=8, acc_bits=16, overflow="saturate")),
]


def _id(sim: str, params: dict[str, int]) -> str:
    return case_id(sim, params, array=False) + ("-comb" if params.get("PSUM_REG") == 0 else "")


@pytest.mark.parametrize(("sim", "params"), PE_CASES, ids=[_id(s, p) for s, p in PE_CASES])
def test_mac_pe(sim: str, params: dict[str, int]) -> None:
    run_and_check("mac_pe", sim, params, "tb_mac_pe", config={"seed": 7, "cycles": 1500})
