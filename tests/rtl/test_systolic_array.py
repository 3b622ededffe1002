"""systolic_array.v alone on Icarus and Verilator, cycle by cycle against hwsim.systolic.run_gemm_cycles.

rtl_models/tb_systolic_array.py drives the array's ports with the ws schedule of docs/dataflow.md
and compares every cycle's bottom-row outputs (final and partial sums) with the model's trace,
on non-square arrays with wrap and with saturate; for is, with the model of the is dataflow on
the GEMM whose transpose the array runs.
"""

from __future__ import annotations

import pytest
from conftest import case_id, rtl_parameters, run_and_check

from hwsim.dataflows import DATAFLOWS

pytestmark = pytest.mark.rtl

# 3x5 (wider than tall) wraps 16-bit accumulators; 4x3 (taller than wide) saturates 12-bit ones
# with signed activations. Both run on both simulators.
ARRAYS = [
    rtl_parameters(rows=3, cols=5, acc_bits=16, overflow="wrap"),
    rtl_parameters(a_bits=4, w_bits=4, a_signed=True, rows=4, cols=3, acc_bits=12, overflow="saturate"),
]
# The dataflows that run on systolic_array: ws, and is (the same array on Y^T = W^T A^T).
FLOWS = [name for name, f in DATAFLOWS.items() if f.rtl and f.stationary in ("W", "A")]
CASES = [(sim, params, flow) for params in ARRAYS for sim in ("icarus", "verilator") for flow in FLOWS]


@pytest.mark.parametrize(("sim", "params", "flow"), CASES, ids=[f"{case_id(s, p)}-{f}" for s, p, f in CASES])
def test_systolic_array_cycle_by_cycle(sim: str, params: dict[str, int], flow: str) -> None:
    config = {"seed": 5, "m": 7, "dataflow": flow}
    result = run_and_check("systolic_array", sim, params, "tb_systolic_array", config=config)
    assert result.tests == 2
