"""cocotb testbench of requant.v against hwsim.fixed (requantize_sum in the DUT's rounding mode, clamp, sign).

Place in the flow: runs inside the simulator, started by tests/rtl/test_requant.py (directed and
random stimulus), tests/rtl/test_resnet20_layer.py, ``python -m rtl_models.check`` (requant vector
sets of ``hwsim vectors``; config key ``stimulus``: one path or a list of paths of .npz files with
x0, b0, m0, x1, b1, m1, shift, func_sign, optionally ``offset`` (0 when absent), ``expected`` (the
codes the RTL must produce) and ``shape``, see hwsim.vectors.read_requant_stimulus) and
rtl_models/network.py (``dump``, optional: a directory where each stimulus file's output codes, as
the RTL produced them, are saved as ``<file stem>.rtl_y.npy``) through rtl_models/sim.py. The
rounding mode is the DUT's ``ROUNDING`` parameter (an index into hwsim.fixed.ROUNDING_MODES), the
clamp range its ``OUT_BITS``, ``OUT_SIGNED`` and ``OUT_NARROW``. One element per cycle; each
result is checked right after the clock edge that registers it.
"""

from __future__ import annotations

from pathlib import Path

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase

from hwsim.fixed import I64_MAX, ROUNDING_MODES, IntFormat
from hwsim.vectors import REQUANT_FIELDS, read_requant_stimulus, stimulus_codes
from rtl_models.tb_common import ClockedTB, param, signed_value, tb_config, unsigned_value

FIELDS = REQUANT_FIELDS
I64_MIN = -I64_MAX - 1


class RequantTB(ClockedTB):
    """Streams elements through the requantizer and compares every output with hwsim."""

    def __init__(self, dut: SimHandleBase) -> None:
        super().__init__(dut)
        self.out_fmt = IntFormat(param(dut, "OUT_BITS"), bool(param(dut, "OUT_SIGNED")))
        self.x_fmt = IntFormat(param(dut, "X_BITS"), True)
        self.m_fmt = IntFormat(param(dut, "MULT_BITS"), True)
        self.narrow = self.out_fmt.signed and bool(param(dut, "OUT_NARROW"))
        code = param(dut, "ROUNDING")
        assert 0 <= code < len(ROUNDING_MODES), f"ROUNDING={code} is not a code of {ROUNDING_MODES}"
        self.rounding = ROUNDING_MODES[code]
        # the clamp range: the full range of OUT_BITS, or the symmetric one (the narrow lattice)
        self.lo = -self.out_fmt.max if self.narrow else self.out_fmt.min
        self.hi = self.out_fmt.max
        self.outputs = np.zeros(0, dtype=np.int64)  # the codes the last check read from the RTL
        for name in ("in_valid", *FIELDS):
            getattr(dut, name).value = 0

    def expected(self, s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """hwsim's codes and clamp flags for every element (each element is its own channel)."""
        return stimulus_codes(s, self.lo, self.hi, self.rounding)

    async def check(
        self,
        s: dict[str, np.ndarray],
        label: str,
        given: np.ndarray | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> int:
        """Run every element; the RTL must produce ``given`` (a vector set's codes) or else hwsim.fixed's."""
        codes, clamped = self.expected(s)
        want = codes if given is None else given
        dut = self.dut
        n = len(codes)
        self.outputs = np.zeros(n, dtype=np.int64)
        dut.in_valid.value = 1
        for j in range(n):
            for name in FIELDS:
                getattr(dut, name).value = int(s[name][j])
            await self.step()  # the registered result of element j is out now
            got = signed_value(dut.y) if self.out_fmt.signed else unsigned_value(dut.y)
            self.outputs[j] = got
            if got != int(want[j]) or int(dut.clamped.value) != int(clamped[j]):
                inputs = ", ".join(f"{k}={int(s[k][j])}" for k in FIELDS)
                where = f" at {tuple(int(i) for i in np.unravel_index(j, shape))}" if shape else ""
                note = ""
                if given is not None and int(codes[j]) != int(given[j]):
                    note = f"; hwsim.fixed ({self.rounding}) gives {int(codes[j])}, not the set's value"
                assert got == int(want[j]), (
                    f"{label} element {j}{where} ({inputs}, rounding {self.rounding}): "
                    f"expected {int(want[j])}, actual {got}{note}"
                )
                assert int(dut.clamped.value) == int(clamped[j]), (
                    f"{label} element {j}{where} ({inputs}): clamp flag {int(dut.clamped.value)}, "
                    f"expected {int(clamped[j])}"
                )
            assert int(dut.out_valid.value) == 1, f"{label} element {j}: out_valid low"
        dut.in_valid.value = 0
        if given is not None:
            bad = np.flatnonzero(codes != given)
            assert bad.size == 0, (
                f"{label}: the set's expected codes differ from hwsim.fixed's ({self.rounding}) at "
                f"{bad.size} elements, first element {int(bad[0])}"
            )
        return int(clamped.sum())


def directed(out_fmt: IntFormat, x_fmt: IntFormat, m_fmt: IntFormat) -> dict[str, np.ndarray]:
    """Rounding ties (both signs, even and odd quotients), just below and just above them, every shift
    edge (1 and 62 included), clamps at both ends and extreme operands and sums (up to +-2^63).

    Ties are reached through the accumulator and, separately, through the offset alone (up to
    shift 62, where only the offset can reach them), and with both together. Every rounding mode
    sees the same elements; they differ on exactly these.
    """
    rows: list[tuple[int, ...]] = []

    def fits(v: int) -> bool:
        return I64_MIN <= v <= I64_MAX

    for n in (0, 1, 2, 7, 16, 31, 61, 62):
        half = 1 << (n - 1) if n else 0
        for q in (-4, -3, -2, -1, 0, 1, 2, 3, out_fmt.max, out_fmt.min, -out_fmt.max):
            for d in (-1, 0, 1):  # just below, at and above the tie
                total = (q << n) + half + d
                if x_fmt.min <= total <= x_fmt.max:
                    rows.append((total, 0, 1, 0, 0, 0, n, 0, 0))
                if fits(total):
                    rows.append((0, 0, 0, 0, 0, 0, n, 0, total))
                if fits(total + 21):
                    rows.append((7, 0, -3, 0, 0, 0, n, 0, total + 21))  # 7 * -3 + offset = total
    for n in (1, 2, 61, 62):  # the extreme sums themselves
        for o in (I64_MAX, I64_MAX - 1, I64_MIN, I64_MIN + 1, I64_MIN + (1 << (n - 1))):
            rows.append((0, 0, 0, 0, 0, 0, n, 0, o))
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
        (-3, 0, 1, 1, 0, -2, 2, 0, 0),  # -3 - 2 = -5: a tie of -5/4 through both inputs
        (3, -4, 1, 1, 1, 3, 1, 0, 0),  # (3 - 4) + 2 * 3 = 5: a tie of 5/2 through both inputs
    ]  # bias and a second input
    rows += [(5, -5, 1000, 7, 3, -200, 3, 0, -12345), (-100, 50, 3, 20, -20, 9, 1, 0, 999)]  # and an offset
    if out_fmt.signed and out_fmt.bits >= 2:
        rows += [
            (x, 0, 1, 0, 0, 0, 1, 1, 0) for x in (-2, -1, 0, 1, 2, x_fmt.min, x_fmt.max)
        ]  # sign function (-1 / 2 is a tie: its sign depends on the rounding mode)
        rows += [(x, 0, 1, 0, 0, 0, 1, 1, o) for x, o in ((0, -1), (0, -2), (3, -4), (-3, 2), (0, 1 << 40))]
        rows += [(0, 0, 0, 0, 0, 0, n, 1, o) for n in (2, 62) for o in (-(1 << (n - 1)), -(1 << (n - 1)) - 1)]
    cols = np.array(rows, dtype=np.int64).T
    return dict(zip(FIELDS, cols, strict=True))


def random_stimulus(
    rng: np.random.Generator, n: int, out_fmt: IntFormat, x_fmt: IntFormat, m_fmt: IntFormat
) -> dict[str, np.ndarray]:
    """Legal random elements: accumulators of X_BITS, int32 biases, multipliers of MULT_BITS, shifts 0..62,
    int64 offsets (below 2^61, so that the sum stays within int64 as the export guarantees). A quarter
    of them are small sums on a tie (or one off it) at shifts 1..20, rounding to codes in or just
    outside the output range."""

    def ints(lo: int, hi: int, size: int = n) -> np.ndarray:
        return rng.integers(lo, hi, size=size, endpoint=True, dtype=np.int64)

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
    # Ties that reach the output: total = k * 2^n + 2^(n-1) + d with k in (or just outside) the
    # output range and d in -1..1, the offset making up what the inputs do not give.
    ties = np.flatnonzero(rng.random(n) < 0.25)
    shift = ints(1, 20, ties.size)
    s["shift"][ties] = shift
    s["x0"][ties] = ints(max(x_fmt.min, -1000), min(x_fmt.max, 1000), ties.size)
    s["m0"][ties] = ints(max(m_fmt.min, -100), min(m_fmt.max, 100), ties.size)
    s["x1"][ties] = 0
    k = ints(max(out_fmt.min, -(1 << 20)) - 2, min(out_fmt.max, 1 << 20) + 2, ties.size)
    inputs = (s["x0"][ties] + s["b0"][ties]) * s["m0"][ties]
    tie = (k << shift) + (np.int64(1) << (shift - 1)) + ints(-1, 1, ties.size)
    s["offset"][ties] = tie - inputs
    return s


@cocotb.test()
async def requant_directed(dut: SimHandleBase) -> None:
    tb = RequantTB(dut)
    await tb.reset()
    clamps = await tb.check(directed(tb.out_fmt, tb.x_fmt, tb.m_fmt), f"directed ({tb.rounding})")
    assert clamps > 0, "the directed cases never clamped"


@cocotb.test()
async def requant_random(dut: SimHandleBase) -> None:
    tb = RequantTB(dut)
    cfg = tb_config()
    await tb.reset()
    rng = np.random.default_rng(int(cfg.get("seed", 3)))
    await tb.check(
        random_stimulus(rng, int(cfg.get("elements", 1000)), tb.out_fmt, tb.x_fmt, tb.m_fmt),
        f"random ({tb.rounding})",
    )


@cocotb.test()
async def requant_stimulus_file(dut: SimHandleBase) -> None:
    """Elements from .npz files (a real layer's inputs and requantizer constants, or vector sets).

    Config: ``stimulus``, a path or a list of paths; ``rounding`` (optional), the mode the files were
    made for, which must be the DUT's.
    """
    cfg = tb_config()
    paths = cfg.get("stimulus")
    assert paths, "config key 'stimulus' (a .npz of requantizer inputs, or a list of them) is missing"
    tb = RequantTB(dut)
    if cfg.get("rounding") is not None:
        assert cfg["rounding"] == tb.rounding, (
            f"the stimulus was made for rounding {cfg['rounding']}, the design has ROUNDING={tb.rounding}"
        )
    await tb.reset()
    for path in [paths] if isinstance(paths, str) else paths:
        data = read_requant_stimulus(path)
        s = {name: data[name] for name in FIELDS}
        shape = tuple(int(v) for v in data["shape"]) if "shape" in data else None
        clamps = await tb.check(s, str(path), data.get("expected"), shape)
        if cfg.get("dump"):
            np.save(Path(cfg["dump"]) / f"{Path(path).stem}.rtl_y.npy", tb.outputs)
        dut._log.info("%s: %d elements, %d clamped (%s)", path, len(s["x0"]), clamps, tb.rounding)
