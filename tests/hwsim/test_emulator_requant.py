"""hwsim.emulator's requantizer with a per-channel ``offset`` against independent Python-int arithmetic.

Every path of the emulator's requantizer is covered: the float64 fast path (sums proven below
2^53), the int64 path (larger constants), the int64 reference run (``int64_only``), and the
overflow guard (sums near 2^63, where the offset is what takes the sum over the limit). The
expected codes are computed element by element with Python integers from the contract
``y = f(round_shift(sum_i (x_i + b_i) M_i + o, n))`` (docs/export-format.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsim.bundle import Bundle, RequantInput, RequantNode, load_bundle
from hwsim.bundle.synthetic import builder, fmt
from hwsim.emulator import _RequantF32, emulate, run_nodes
from hwsim.errors import UserError
from hwsim.fixed import ROUNDING_MODES, requantize_sum

IMAGES = 3
SHAPE = (3, 4, 4)
I64_MAX = (1 << 63) - 1
GUARD_OFFSET = I64_MAX - (1 << 49) - (1 << 39) - 100_000 * ((1 << 31) - 1)


def offset_bundle(path: Path, act_mult: np.ndarray, act_shift: int, act_offset: np.ndarray) -> Path:
    """input int8 [3,4,4] -> conv 3x3 p1 -> act = clamp_int8(conv (+bias) and input residual, offset)
    -> sgn = sign(conv, offset) -> pool -> fc -> logits = clamp_int16(fc, offset)."""
    rng = np.random.default_rng(5)
    b = builder(SHAPE, fmt(8, True, "narrow"), 0.02)
    acc = b.conv2d(
        "conv", "input", rng.integers(-127, 128, size=(3, 3, 3, 3)), fmt(8, True, "narrow"), padding=1
    )
    b.requant(
        "act",
        [(acc, act_mult, np.array([5, -1000, 0])), ("input", np.array([3, -2, 1]), None)],
        np.full(3, act_shift),
        fmt(8, True),
        0.1,
        offset=act_offset,
    )
    b.requant(
        "sgn",
        [(acc, np.array([3, -5, 1]), None)],
        np.array([3, 0, 5]),
        fmt(2, True, "binary"),
        1.0,
        function="sign",
        offset=np.array([-40000, 123, 77777]),
    )
    pool = b.avgpool_sum("pool", "act")
    fc = b.linear("fc", pool, rng.integers(-127, 128, size=(2, 3)), fmt(8, True, "narrow"))
    b.requant(
        "logits", [(fc, np.array([7, -3]), None)], np.array([2, 0]), fmt(16, True), 0.1, offset=[-999, 4321]
    )
    return b.save(path, "logits")


def python_reference(bundle: Bundle, codes: np.ndarray) -> dict[str, list[list[int]]]:
    """Every requant output and the logits, element by element in Python integers."""

    def requant(name: str, values: dict[str, list[list[int]]]) -> list[list[int]]:
        node = bundle.node(name)
        out_fmt = bundle.tensors[node.output].fmt
        rows = []
        for n in range(IMAGES):
            row = []
            for e in range(len(values[node.inputs[0].tensor][n])):
                c = e * bundle.tensors[node.output].shape[0] // len(values[node.inputs[0].tensor][n])
                v = sum(
                    (values[i.tensor][n][e] + (int(i.bias[c]) if i.bias is not None else 0))
                    * int(i.multiplier[c])
                    for i in node.inputs
                ) + (int(node.offset[c]) if node.offset is not None else 0)
                s = int(node.shift[c])
                r = (v + ((1 << (s - 1)) if s else 0)) >> s  # Python's >> is the arithmetic shift
                row.append(
                    (1 if r >= 0 else -1)
                    if node.function == "sign"
                    else min(max(r, out_fmt.min), out_fmt.max)
                )
            rows.append(row)
        return rows

    conv = bundle.node("conv")
    w = conv.weight.tolist()
    acc = []
    for n in range(IMAGES):
        x = codes[n].tolist()
        flat = []
        for co in range(3):
            for i in range(4):
                for j in range(4):
                    total = 0
                    for ci in range(3):
                        for di in range(3):
                            for dj in range(3):
                                y, z = i + di - 1, j + dj - 1
                                if 0 <= y < 4 and 0 <= z < 4:
                                    total += int(x[ci][y][z]) * int(w[co][ci][di][dj])
                    flat.append(total)
        acc.append(flat)
    values = {"conv.acc": acc, "input": [[int(v) for v in codes[n].reshape(-1)] for n in range(IMAGES)]}
    values["act"] = requant("act", values)
    values["sgn"] = requant("sgn", values)
    pool = [[sum(values["act"][n][c * 16 : (c + 1) * 16]) for c in range(3)] for n in range(IMAGES)]
    fc = bundle.node("fc").weight.tolist()
    values["fc.acc"] = [
        [sum(p * int(wv) for p, wv in zip(pool[n], fc[k], strict=True)) for k in range(2)]
        for n in range(IMAGES)
    ]
    values["logits"] = requant("logits", values)
    return values


def images(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-127, 128, size=(IMAGES, *SHAPE)).astype(np.int64)


# act's constants: (multipliers, shift, offset), chosen per path (acc |x| <= 127 * 127 * 27 < 2^19)
PATHS = {
    # |sum| < 2^53: the float64 fast path; offsets of +-128 LSB, accumulators a few dozen LSB
    "float64": (np.array([7, -3, 1]), 12, np.array([1 << 19, -(1 << 18) - 1, 12345])),
    # |o| up to 2^54 > 2^53: the int64 path of the fast run
    "int64": (
        np.array([(1 << 31) - 1, -(1 << 30) - 7, 1 << 29]),
        46,
        np.array([1 << 54, -(1 << 52) - 3, (1 << 51) + 5]),
    ),
    # |o| + 2^(n-1) + the static bound of |sum| passes 2^63 - 1 (|acc| <= sum |w| * 127), but not on
    # these data (|acc| < 100000): the guard checks the data and lets it run, exactly
    "guard": (
        np.array([(1 << 31) - 1, -((1 << 31) - 1), 1]),
        50,
        np.array([GUARD_OFFSET, -GUARD_OFFSET, -5]),
    ),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_offset_matches_python_ints_on_every_path(tmp_path: Path, path: str) -> None:
    mult, shift, offset = PATHS[path]
    bundle = load_bundle(offset_bundle(tmp_path / "b", mult, shift, offset))
    codes = images()
    expected = python_reference(bundle, codes)
    for int64_only in (False, True):
        run = emulate(bundle, codes, int64_only=int64_only)
        for name in ("act", "sgn", "logits"):
            got = run.tensors[name].reshape(IMAGES, -1).tolist()
            assert got == expected[name], (path, int64_only, name)
    act = np.array(expected["act"])
    if path != "guard":  # the constants give codes inside the range too, not only clamps
        assert np.any((act > -128) & (act < 127)) and np.any(act == 127)


def test_guard_counts_the_offset(tmp_path: Path) -> None:
    # the offset alone, plus the rounding addend 2^49, passes 2^63 - 1: refused, not wrapped
    mult, shift = np.array([1, 1, 1]), 50
    bundle = load_bundle(offset_bundle(tmp_path / "b", mult, shift, np.array([I64_MAX - (1 << 48), 0, 0])))
    with pytest.raises(UserError, match=r"requant node 'act'.*\+ offset can reach"):
        emulate(bundle, images())


def test_run_nodes_is_the_emulators_arithmetic(tmp_path: Path) -> None:
    mult, shift, offset = PATHS["float64"]
    bundle = load_bundle(offset_bundle(tmp_path / "b", mult, shift, offset))
    codes = images()
    run = emulate(bundle, codes)
    alone = run_nodes(bundle, ["conv", "act"], {"input": codes})
    assert set(alone) == {"conv.acc", "act"}
    assert np.array_equal(alone["act"], run.tensors["act"]) and np.array_equal(
        alone["conv.acc"], run.tensors["conv.acc"]
    )
    # fed another tensor than the emulator's own, a node computes from exactly that tensor
    other = np.clip(run.tensors["act"] + 1, -128, 127)
    fc = run_nodes(bundle, ["fc"], {"pool": other.reshape(IMAGES, 3, 16).sum(axis=2)})["fc.acc"]
    assert np.array_equal(fc, other.reshape(IMAGES, 3, 16).sum(axis=2) @ bundle.node("fc").weight.T)
    with pytest.raises(UserError, match=r"missing tensors input"):
        run_nodes(bundle, ["conv"], {})
    with pytest.raises(UserError, match=r"no node named 'nope'"):
        run_nodes(bundle, ["nope"], {"input": codes})


def _node(
    rng: np.random.Generator, rounding: str, bound: int, out_bits: int, second: int | None
) -> RequantNode:
    """A clamp requantizer scaling an accumulator in ``[-bound, bound]`` onto about ``out_bits`` bits,
    plus (``second``: its width) a shortcut of unsigned codes at about the output's scale."""
    channels = 8
    shift = rng.integers(30, 40, size=channels)
    # multiplier * 2^-shift ~ 2^out_bits / bound: the accumulator range lands on the output levels
    mult = np.ldexp(rng.uniform(0.5, 1.0, channels) * (1 << out_bits) / bound, shift).astype(np.int64)
    bias = rng.integers(-bound // 4, bound // 4, size=channels)
    offset = rng.integers(-(1 << 20), 1 << 20, size=channels)
    items = [RequantInput("acc", mult, "m", bias, "b")]
    if second is not None:
        items.append(
            RequantInput(
                "x", np.ldexp(rng.uniform(0.3, 1.5, channels), shift).astype(np.int64), "m2", None, None
            )
        )
    return RequantNode("act", tuple(items), shift, "n", "clamp", "out", offset, "o", rounding)


CASES = [(3000, 4, None), (40_000, 4, None), (60_000, 8, None), (3000, 4, 4), (20_000, 4, 4), (5000, 8, 2)]


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("bound, out_bits, second", CASES)
def test_float32_requantizer_is_used_only_where_it_equals_the_exact_one(
    rounding: str, bound: int, out_bits: int, second: int | None
) -> None:
    """Every input of the domain (every accumulator value, and every code of a second input):
    accepted means equal to the int64 requantizer everywhere; rejected means some input really
    differs (the check is exact, not a guess)."""
    rng = np.random.default_rng(bound + out_bits + ROUNDING_MODES.index(rounding) + (second or 0))
    node = _node(rng, rounding, bound, out_bits, second)
    lo, hi = 0, (1 << out_bits) - 1
    codes = np.arange(1 << second) if second is not None else np.zeros(1, np.int64)
    grid = np.meshgrid(np.arange(-bound, bound + 1), codes, np.arange(8), indexing="ij")
    x = [grid[0]] + ([grid[1]] if second is not None else [])  # [X, V, C], channels last
    exact = np.clip(
        requantize_sum(
            x,
            [i.multiplier for i in node.inputs],
            node.shift,
            -1,
            [i.bias for i in node.inputs],
            node.offset,
            rounding,
        ),
        lo,
        hi,
    )
    assert len(np.unique(exact)) > (hi - lo) // 2  # the domain covers most output levels
    f32 = _RequantF32.of(node, (lo, hi), (0, (1 << second) - 1) if second is not None else None, bound)
    # the same float32 operations, without the check: where do they differ from exact?
    candidate = _RequantF32.candidate(node, (lo, hi))
    floats = [v.astype(np.float32) for v in x]
    differs = bool((candidate(floats).astype(np.int64) != exact).any())
    if f32 is None:
        assert differs or rounding in ("half_even", "half_away")  # ties: floor is not their rounding
    else:
        assert np.array_equal(f32(floats).astype(np.int64), exact)


def test_float32_requantizer_both_outcomes_occur() -> None:
    """The check is not vacuous: 4-bit outputs of a small accumulator (alone or with a 4-bit
    shortcut) pass it; an 8-bit output of a 21-bit accumulator (as in the bundled a8w8 models) has
    inputs where float32 rounds the other way, and is refused."""
    for bound, out_bits, second, accepted in (
        (3000, 4, None, True),
        (3000, 4, 4, True),
        (2_000_000, 8, None, False),
    ):
        node = _node(np.random.default_rng(7), "half_up", bound, out_bits, second)
        codes = (0, (1 << second) - 1) if second is not None else None
        assert (_RequantF32.of(node, (0, (1 << out_bits) - 1), codes, bound) is not None) == accepted
