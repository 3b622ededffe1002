"""The kit's cocotb test: clock, reset, ties, then the work items through the design by its protocol.

Place in the flow: runs inside the simulator, started by ``rtl_models.kit.runner`` with
``RTL_TB_CONFIG`` = ``{"spec": <DutSpec.to_json()>, "items": items.npz, "result": result.json,
"stress": <Stress.to_json()>}``. It checks that every port the description names exists, drives the
items with the protocol's driver (``rtl_models.kit.protocols.DRIVERS``), which compares every output
element as it arrives, and writes what it saw (outputs, cycles, the first failure) to ``result``
and ``result.npz`` for the runner's scoreboard. A mismatch or a hang fails the cocotb test. Your
own test module (``--test-module``) may call :func:`run_kit` and check more around it.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import FallingEdge, Timer

from rtl_models.kit.protocols import DRIVERS, Hang, Mismatch
from rtl_models.kit.spec import DutSpec, spec_from_json
from rtl_models.kit.stress import Stress
from rtl_models.kit.work import load_items
from rtl_models.tb_common import tb_config


def missing_ports(dut: SimHandleBase, spec: DutSpec) -> list[str]:
    return [f"{where} = {port}" for where, port in spec.ports() if not hasattr(dut, port)]


async def reset(dut: SimHandleBase, spec: DutSpec) -> None:
    """Hold reset for ``reset.cycles`` clock cycles at its active level; an asynchronous reset is
    asserted at once (between edges), a synchronous one over rising edges; released after a falling edge."""
    r = spec.reset
    port = getattr(dut, r.port)
    on, off = (1, 0) if r.active == "high" else (0, 1)
    fall = FallingEdge(getattr(dut, spec.clock.port))
    if r.kind == "async":
        await Timer(spec.clock.period_ns // 4 or 1, "ns")
    port.value = on
    for _ in range(r.cycles):
        await fall
    port.value = off
    await fall


@cocotb.test()
async def kit_items(dut: SimHandleBase) -> None:
    """Every work item of the configuration through the design."""
    await run_kit(dut)


async def run_kit(dut: SimHandleBase) -> None:
    """The kit's run (clock, ties, reset, items, result file), for :func:`kit_items` and for your own
    cocotb test (``--test-module``), which may check more of the design before or after it."""
    cfg = tb_config()
    spec = spec_from_json(cfg["spec"])
    result = Path(cfg["result"])
    record: dict[str, object] = {"failure": None, "kind": None, "items": 0}
    try:
        missing = missing_ports(dut, spec)
        if missing:
            record["kind"] = "ports"
            raise AssertionError(f"the description names ports that {spec.top} lacks: {', '.join(missing)}")
        for port, value in spec.ties.items():
            getattr(dut, port).value = int(value)
        Clock(getattr(dut, spec.clock.port), spec.clock.period_ns, unit="ns").start()
        await reset(dut, spec)
        items = load_items(cfg["items"])
        driver = DRIVERS[spec.protocol_name](dut, spec, Stress(**cfg["stress"]))
        observed = await driver.run(items)
        record["items"] = len(observed)
        record["cycles"] = [[o.first_cycle, o.last_cycle] for o in observed]
        record["counter"] = [o.counter for o in observed]
        record["overflow"] = [o.overflow for o in observed]
        np.savez(result.with_suffix(".npz"), *[o.y for o in observed])
    except (Mismatch, Hang) as err:
        record["failure"], record["kind"] = str(err), "hang" if isinstance(err, Hang) else "mismatch"
        raise
    except AssertionError as err:
        record["failure"] = str(err)
        raise
    except Exception as err:  # a driver's own error: keep the traceback for the report
        record["failure"], record["kind"] = f"{type(err).__name__}: {err}\n{traceback.format_exc()}", "error"
        raise
    finally:
        result.write_text(json.dumps(record) + "\n")
