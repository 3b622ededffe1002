"""requant.v on Icarus and Verilator against hwsim.fixed.requantize_sum + saturate/sign (tb_requant.py)."""

from __future__ import annotations

import pytest
from conftest import run_and_check

pytestmark = pytest.mark.rtl

# Output formats of the contract: unsigned 4/8-bit activations, signed 8-bit (network input,
# sign function), signed 16-bit logits; accumulators of 32 and 24 bits.
REQUANT_CASES = [
    ("icarus", {"OUT_BITS": 8, "OUT_SIGNED": 0, "X_BITS": 32}),
    ("icarus", {"OUT_BITS": 8, "OUT_SIGNED": 1, "X_BITS": 24}),
    ("icarus", {"OUT_BITS": 16, "OUT_SIGNED": 1, "X_BITS": 32}),
    ("verilator", {"OUT_BITS": 4, "OUT_SIGNED": 0, "X_BITS": 32}),  # also the ResNet20 layer's build
]


def _id(sim: str, p: dict[str, int]) -> str:
    return f"{sim}-{'int' if p['OUT_SIGNED'] else 'uint'}{p['OUT_BITS']}-x{p['X_BITS']}"


@pytest.mark.parametrize(("sim", "params"), REQUANT_CASES, ids=[_id(s, p) for s, p in REQUANT_CASES])
def test_requant(sim: str, params: dict[str, int]) -> None:
    result = run_and_check(
        "requant",
        sim,
        params,
        "tb_requant",
        config={"seed": 11, "elements": 1000},
        testcase=["requant_directed", "requant_random"],
    )
    assert result.tests == 2
