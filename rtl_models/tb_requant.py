"""cocotb testbench of requant.v against hwsim.fixed (requantize_sum, then saturate or sign).

Place in the flow: runs inside the simulator, started by tests/rtl/test_requant.py (directed and
random stimulus) and tests/rtl/test_resnet20_layer.py (a real layer's accumulators, config key
``stimulus``: a .npz with x0, b0, m0, x1, b1, m1, shift, func_sign and optionally ``offset``
(0 when absent) and ``expected``, codes that hwsim.fixed's must equal) through rtl_models/sim.py.
One element per cycle; each result is checked right after the clock edge that registers it.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase

from hwsim.fixed import IntFormat, requantize_sum, saturate, sign
from rtl_models.tb_common import ClockedTB, param, signed_value, tb_config, unsigned_value

FIELDS = ("x0", "b0", "m0", "x1", "b1", "m1", "shift", "func_sign", "offset")


class RequantTB(ClockedTB):
    """Streams elements through the requantizer and compares every output with hwsim."""

    def __init__(self, dut: SimHandleBase) -> None:
        super().__init__(dut)
        self.out_fmt = IntFormat(param(dut, "OUT_BITS"), bool(param(dut, "OUT_SIGNED")))
        self.x_fmt = IntFormat(param(dut, "X_BITS"), True)
        self.m_fmt = IntFormat(param(dut, "MULT_BITS"), True)
        for name in ("in_valid", *FIELDS):
            getattr(dut, name).value = 0

    def expected(self, s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """hwsim's codes and clamp flags for every element (each element is its own channel)."""
        v = requantize_sum(
            [s["x0"], s["x1"]],
            [s["m0"], s["m1"]],
            s["shift"],
            channel_axis=0,
            biases=[s["b0"], s["b1"]],
            offset=s["offset"],
        )
        clamped_codes, _ = saturate(v, self.out_fmt)
        clamped = (clamped_codes != v) & (s["func_sign"] == 0)
        codes = np.where(s["func_sign"] != 0, sign(v), clamped_codes)
        return codes, clamped

    async def check(self, s: dict[str, np.ndarray], label: str) -> int:
        codes, clamped = self.expected(s)
        dut = self.dut
        n = len(codes)
        dut.in_valid.value = 1
        for j in range(n):
            for name in FIELDS:
                getattr(dut, name).value = int(s[name][j])
            await self.step()  # the registered result of element j is out now
            got = signed_value(dut.y) if self.out_fmt.signed else unsigned_value(dut.y)
            inputs = ", ".join(f"{k}={int(s[k][j])}" for k in FIELDS)
            assert int(dut.out_valid.value) == 1, f"{label} element {j}: out_valid low"
            assert got == int(codes[j]), (
                f"{label} element {j} ({inputs}): expected {int(codes[j])}, actual {got}"
            )
            assert int(dut.clamped.value) == int(clamped[j]), f"{label} element {j} ({inputs}): clamp flag"
        dut.in_valid.value = 0
        return int(clamped.sum())


def directed(out_fmt: IntFormat, x_fmt: IntFormat, m_fmt: IntFormat) -> dict[str, np.ndarray]:
    """Rounding ties (both signs), every shift edge, clamps at both ends and extreme operands.

    Ties are reached through the accumulator and, separately, through the offset alone (up to
    shift 62, where only the offset can reach them), and with both together.
    """
    rows: list[tuple[int, ...]] = []
    for n in (0, 1, 2, 7, 16, 31, 62):
        half = 1 << (n - 1) if n else 0
        for q in (-3, -1, 0, 1, 2, out_fmt.max, out_fmt.min):
            for d in (-1, 0, 1):  # just below, at and above the tie
                total = (q << n) + half + d
                if x_fmt.min <= total <= x_fmt.max:
                    rows.append((total, 0, 1, 0, 0, 0, n, 0, 0))
                if n < 62 or q in (-1, 0):  # total + 2^61 stays within int64
                    rows.append((0, 0, 0, 0, 0, 0, n, 0, total))
                    rows.append((7, 0, -3, 0, 0, 0, n, 0, total + 21))  # 7 * -3 + offset = total
    big, small = x_fmt.max, x_fmt.min
    for m in (m_fmt.max, m_fmt.min, 1, -1, 0):
        rows += [
            (big, 0, m, 0, 0, 0, 40, 0, 0),
            (small, 0, m, 0, 0, 0, 40, 0, 0),
            (big, -1, m, small, 0, 1, 62, 0, 0),
            (big, 0, m, 0, 0, 0, 40, 0, -(1 << 62)),  # extreme offsets with extreme products
            (small, 0, m, 0, 0, 0, 40, 0, (1 << 62) - 1),
        ]
    rows += [
        (5, -5, 1000, 7, 3, -200, 3, 0, 0),
        (-100, 50, 3, 20, -20, 9, 1, 0, 0),
    ]  # bias and a second input
    rows += [(5, -5, 1000, 7, 3, -200, 3, 0, -12345), (-100, 50, 3, 20, -20, 9, 1, 0, 999)]  # and an offset
    if out_fmt.signed and out_fmt.bits >= 2:
        rows += [
            (x, 0, 1, 0, 0, 0, 1, 1, 0) for x in (-2, -1, 0, 1, 2, x_fmt.min, x_fmt.max)
        ]  # sign function
        rows += [(x, 0, 1, 0, 0, 0, 1, 1, o) for x, o in ((0, -1), (0, -2), (3, -4), (-3, 2), (0, 1 << 40))]
    cols = np.array(rows, dtype=np.int64).T
    return dict(zip(FIELDS, cols, strict=True))


def random_stimulus(
    rng: np.random.Generator, n: int, out_fmt: IntFormat, x_fmt: IntFormat, m_fmt: IntFormat
) -> dict[str, np.ndarray]:
    """Legal random elements: accumulators of X_BITS, int32 biases, multipliers of MULT_BITS, shifts 0..62,
    int64 offsets (below 2^61, so that the sum stays within int64 as the export guarantees)."""

    def ints(lo: int, hi: int) -> np.ndarray:
        return rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int64)

    s = {
        "x0": ints(x_fmt.min, x_fmt.max),
        "b0": ints(-(1 << 31), (1 << 31) - 1),
        "m0": ints(m_fmt.min, m_fmt.max),
        "x1": ints(-(1 << 15), (1 << 15) - 1),
        "b1": np.zeros(n, dtype=np.int64),
        "m1": ints(m_fmt.min, m_fmt.max),
        "shift": ints(0, 62),
        "func_sign": np.zeros(n, dtype=np.int64),
        "offset": ints(-(1 << 61), 1 << 61) >> ints(0, 61),  # every magnitude, both signs
    }
    s["x1"][rng.random(n) < 0.5] = 0  # half of them one-input requantizers
    if out_fmt.signed:
        s["func_sign"] = (rng.random(n) < 0.1).astype(np.int64)
    return s


@cocotb.test()
async def requant_directed(dut: SimHandleBase) -> None:
    tb = RequantTB(dut)
    await tb.reset()
    clamps = await tb.check(directed(tb.out_fmt, tb.x_fmt, tb.m_fmt), "directed")
    assert clamps > 0, "the directed cases never clamped"


@cocotb.test()
async def requant_random(dut: SimHandleBase) -> None:
    tb = RequantTB(dut)
    cfg = tb_config()
    await tb.reset()
    rng = np.random.default_rng(int(cfg.get("seed", 3)))
    await tb.check(
        random_stimulus(rng, int(cfg.get("elements", 1000)), tb.out_fmt, tb.x_fmt, tb.m_fmt), "random"
    )


@cocotb.test()
async def requant_stimulus_file(dut: SimHandleBase) -> None:
    """Elements from a .npz (a real layer's accumulators and requantizer constants)."""
    path = tb_config().get("stimulus")
    assert path, "config key 'stimulus' (a .npz of requantizer inputs) is missing"
    tb = RequantTB(dut)
    await tb.reset()
    with np.load(path) as data:
        s = {name: data[name].astype(np.int64) for name in FIELDS if name != "offset"}
        s["offset"] = data["offset"].astype(np.int64) if "offset" in data else np.zeros_like(s["x0"])
        given = data["expected"].astype(np.int64) if "expected" in data else None
    if given is not None:
        codes, _ = tb.expected(s)
        assert np.array_equal(codes, given), f"{path}: hwsim.fixed and the given expected codes disagree"
    clamps = await tb.check(s, str(path))
    dut._log.info("%s: %d elements, %d clamped", path, len(s["x0"]), clamps)
