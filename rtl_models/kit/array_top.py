"""This project's array_top as the kit sees it: a description from its parameters, vector sets as items.

Place in the flow: ``python -m rtl_models.check VECTORS`` (rtl_models/check.py) runs GEMM vector
sets through the kit with :func:`array_top_spec` (the buffers protocol, hwsim's timing and overflow
events enforced unless values only) and :func:`set_item` (a set's operands, carry and hwsim's
expected accumulators as one work item); the tests describe the array the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hwsim.dataflows import dataflow_at
from hwsim.errors import UserError
from hwsim.vectors import VectorSet, formats
from rtl_models.kit.spec import (
    BuffersProtocol,
    Clock,
    Compare,
    CycleCheck,
    DutSpec,
    Gemm,
    Operand,
    Reset,
)
from rtl_models.kit.work import WorkItem
from rtl_models.sim import sources_for, top_parameters


def array_top_spec(
    parameters: Mapping[str, int], sources: Sequence[Path] | None = None, values_only: bool = False
) -> DutSpec:
    """``array_top`` (ours, or yours with its ports: ``sources``) built with ``parameters``."""
    files = tuple(Path(s).resolve() for s in sources) if sources else tuple(sources_for("array_top"))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"RTL sources {', '.join(missing)}: no such file; pass your Verilog files")
    a_fmt, w_fmt, acc_fmt = formats(dict(parameters))
    overflow = "saturate" if parameters.get("SATURATE") else "wrap"
    flow = dataflow_at(parameters.get("DATAFLOW", 0)).name
    checks = Compare() if values_only else Compare(CycleCheck("hwsim", enforce=True), "ovf_count")
    return DutSpec(
        top="array_top",
        sources=files,
        clock=Clock("clk"),
        reset=Reset("rst", "high", "sync", 2),
        gemm=Gemm(
            Operand(a_fmt.bits, a_fmt.signed), Operand(w_fmt.bits, w_fmt.signed), acc_fmt.bits, overflow
        ),
        protocol=BuffersProtocol(
            int(parameters["ROWS"]), int(parameters["COLS"]), flow, None if values_only else "cycles"
        ),
        parameters=top_parameters("array_top", parameters, list(files)),
        compare=checks,
        timeout_cycles=100_000,
        source_file="array_top",
    )


def set_item(vs: VectorSet, index: int) -> WorkItem:
    """A vector set as one work item: hwsim's register-level model's accumulators expected."""
    m, k, n = vs.shape
    return WorkItem(
        vs.name,
        index,
        0,
        0,
        0,
        (m, k, n),
        vs.a,
        vs.w,
        vs.expected,
        np.zeros((m, n), np.int64),
        vs.overflow_events,
        vs.carry,
    )
