"""os_array.v alone on Icarus and Verilator, cycle by cycle against hwsim.systolic.run_gemm_cycles (os).

rtl_models/tb_os_array.py plays array_os's sequencer and buffers with the os schedule of
hwsim/dataflows/output_stationary.py (carry load, stream, drain) and compares every drained
bottom row with the model's trace, on non-square arrays with wrap and with saturate; M and N are
not multiples of the array, K is shorter and longer than ROWS, one GEMM adds a carry. A PE that
narrows only once, when its output leaves, must be rejected.
"""

from __future__ import annotations

import pytest
from conftest import case_id, require_simulator, rtl_parameters, run_and_check

from rtl_models.sim import run_testbench

pytestmark = pytest.mark.rtl

# 3x5 (wider than tall) wraps 16-bit accumulators; 4x3 (taller than wide) saturates 12-bit ones
# with signed activations.
ARRAYS = [
    rtl_parameters(rows=3, cols=5, acc_bits=16, overflow="wrap", dataflow="os"),
    rtl_parameters(
        a_bits=4, w_bits=4, a_signed=True, rows=4, cols=3, acc_bits=12, overflow="saturate", dataflow="os"
    ),
]
CASES = [(sim, params) for params in ARRAYS for sim in ("icarus", "verilator")]


@pytest.mark.parametrize(("sim", "params"), CASES, ids=[case_id(s, p) for s, p in CASES])
def test_os_array_cycle_by_cycle(sim: str, params: dict[str, int]) -> None:
    result = run_and_check("os_array", sim, params, "tb_os_array", config={"seed": 5, "m": 7})
    assert result.tests == 3


@pytest.mark.parametrize("sim", ["icarus"])
def test_late_narrowing_is_caught(sim: str) -> None:
    """A PE that saturates its sum once, when it leaves, instead of after every MAC must fail."""
    require_simulator(sim)
    result = run_testbench(
        "os_array",
        sim,
        ARRAYS[1],
        "tb_os_array",
        config={"seed": 5, "m": 7},
        variant="late_narrowing",
        testcase="os_overflow_both_ways",
    )
    assert result.tests == 1 and result.failed == 1, result.summary()
    message = result.failures[0]
    assert "bottom PE (3, " in message and "-> Y[m=" in message, message
    assert "expected" in message and "actual" in message, message
