"""The dataflow registry: every dataflow the MAC array can run, by the name the hardware YAML uses.

Place in the flow: ``hwconfig`` validates ``array.dataflow`` against :data:`DATAFLOWS`;
``mapping``, ``timing``, ``systolic`` and ``memory`` look the array's dataflow up with
:func:`dataflow` and use its facts and formulas (:class:`Dataflow`). Each dataflow is one
module here (``weight_stationary``, ``output_stationary``, ``input_stationary``); adding one is
one module and one :func:`register` call below (docs/dataflow.md, "Adding a dataflow").
"""

from __future__ import annotations

from hwsim.dataflows import input_stationary, output_stationary, weight_stationary
from hwsim.dataflows.definition import Cycles, Dataflow, Traffic
from hwsim.errors import UserError, shown

__all__ = ["DATAFLOWS", "Cycles", "Dataflow", "Traffic", "dataflow", "dataflow_at", "index_of", "register"]

DATAFLOWS: dict[str, Dataflow] = {}  # name -> Dataflow, in registration order


def register(flow: Dataflow) -> Dataflow:
    """Add ``flow`` to :data:`DATAFLOWS` under its name (a name is registered once)."""
    if not isinstance(flow, Dataflow):
        raise TypeError(f"register: expected a Dataflow, got {type(flow).__name__}")
    if flow.name in DATAFLOWS:
        raise ValueError(f"register: dataflow {flow.name!r} is already registered")
    DATAFLOWS[flow.name] = flow
    return flow


def dataflow(name: str) -> Dataflow:
    """The registered dataflow called ``name``."""
    try:
        return DATAFLOWS[name]
    except (KeyError, TypeError):
        raise UserError(
            f"dataflow {shown(name)} is unknown; registered dataflows: {', '.join(DATAFLOWS)} "
            "(set array.dataflow in the hardware YAML to one of them)"
        ) from None


def index_of(name: str) -> int:
    """The position of dataflow ``name`` in :data:`DATAFLOWS`: the RTL's ``DATAFLOW`` (ws 0, os 1, is 2)."""
    return list(DATAFLOWS).index(dataflow(name).name)


def dataflow_at(index: int) -> Dataflow:
    """Inverse of :func:`index_of`: the dataflow whose RTL ``DATAFLOW`` parameter is ``index``."""
    flows = list(DATAFLOWS.values())
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(flows):
        raise UserError(
            f"DATAFLOW={shown(index)} names no dataflow; expected 0..{len(flows) - 1} "
            f"({', '.join(f'{i} {f.name}' for i, f in enumerate(flows))})"
        )
    return flows[index]


# The order is the one messages list them in (hwconfig: "is not one of ws, os, is"), and the RTL's
# DATAFLOW parameter numbers them in it (index_of).
register(weight_stationary.DATAFLOW)
register(output_stationary.DATAFLOW)
register(input_stationary.DATAFLOW)
