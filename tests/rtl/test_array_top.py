"""array_top.v (buffers + fold sequencer + cycle counter) on Icarus and Verilator against hwsim.

Each case writes vector sets with hwsim.vectors (stimulus, hwsim.gemm's accumulators, the native
cycle count of hwsim.timing) and runs rtl_models/tb_array_top.py on them: directed corners that
overflow on purpose, random legal codes on shapes with partial folds, accumulating GEMMs
(``accumulate``: the output buffer's C is added, hwsim's ``carry=``), and a broken PE that the
same testbench must reject.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import HW_DIR, assert_passed, case_id, require_simulator, rtl_parameters

from hwsim.dataflows import DATAFLOWS
from hwsim.fixed import IntFormat
from hwsim.hwconfig import load_hw_config
from hwsim.systolic import execute_gemm
from hwsim.vectors import VectorSet, make_vector_set, write_vectors
from rtl_models.sim import SIM_BUILD, TOPS, VARIANTS, run_testbench
from rtl_models.synth import RTL_TARGETS

pytestmark = pytest.mark.rtl

ADDR_BITS = 11
RTL_DATAFLOWS = [name for name, flow in DATAFLOWS.items() if flow.rtl]

# (simulator, overrides, a_bits, w_bits, a_signed) on configs/hw/ws_8x8.yaml with the dataflow
# replaced: sizes include non-square arrays and 1-row/1-column edges; widths 4/8/16; accumulators
# 16/24/32; wrap and saturate; unsigned and signed activations.
SHAPES = [
    ("icarus", {"rows": 4, "cols": 4}, 8, 8, False),  # acc24 wrap
    ("icarus", {"rows": 3, "cols": 5, "acc_bits": 16, "overflow": "saturate"}, 4, 4, False),
    ("icarus", {"rows": 5, "cols": 2, "acc_bits": 32}, 16, 16, False),
    ("icarus", {"rows": 2, "cols": 3, "acc_bits": 16}, 8, 8, True),  # signed input, wrap
    ("icarus", {"rows": 1, "cols": 1, "acc_bits": 16, "overflow": "saturate"}, 8, 4, False),
    ("verilator", {"rows": 4, "cols": 6, "acc_bits": 16, "overflow": "saturate"}, 8, 4, False),
    ("verilator", {"rows": 3, "cols": 4, "acc_bits": 16}, 4, 4, True),  # signed input, wrap
]
# ws runs every shape; every other RTL dataflow the ones that cover both simulators, wrap and
# saturate, signed and unsigned activations, and a 1 x 1 array.
EVERY_DATAFLOW = (1, 3, 4, 5, 6)
CASES = [
    (sim, flow, over, a_bits, w_bits, a_signed)
    for flow in RTL_DATAFLOWS
    for i, (sim, over, a_bits, w_bits, a_signed) in enumerate(SHAPES)
    if flow == "ws" or i in EVERY_DATAFLOW
]


def _case(sim: str, flow: str, over: dict, a_bits: int, w_bits: int, a_signed: bool) -> tuple:
    over = {**over, "dataflow": flow}
    params = rtl_parameters("ws_8x8.yaml", a_bits=a_bits, w_bits=w_bits, a_signed=a_signed, **over)
    return sim, "ws_8x8.yaml", over, IntFormat(a_bits, a_signed), IntFormat(w_bits, True), params


def vector_sets(
    hw_file: str, over: dict, a_fmt: IntFormat, w_fmt: IntFormat, seed: int = 0
) -> list[VectorSet]:
    """Directed corners and random codes on GEMMs with full and partial folds."""
    hw = load_hw_config(HW_DIR / hw_file).with_overrides(**over)
    r, c = hw.array.rows, hw.array.cols
    rng = np.random.default_rng(seed)

    def rand(shape: tuple[int, int], fmt: IntFormat) -> np.ndarray:
        return rng.integers(fmt.min, fmt.max, size=shape, endpoint=True, dtype=np.int64)

    k, n = 2 * r + 1, c + 1  # a partial last K-fold and N-fold
    sets = []
    # Largest products, all of one sign: every output leaves the accumulator (overflow on purpose).
    acc = hw.pe.acc_format
    big_k = max(k, acc.max // (max(abs(a_fmt.max), 1) * abs(w_fmt.min)) + 2)
    sets.append(("max_x_max", np.full((5, big_k), a_fmt.max), np.full((big_k, n), w_fmt.max)))
    sets.append(("max_x_min", np.full((5, big_k), a_fmt.max), np.full((big_k, n), w_fmt.min)))
    if a_fmt.signed:
        sets.append(("min_x_min", np.full((5, big_k), a_fmt.min), np.full((big_k, n), w_fmt.min)))
    # Sign boundaries: codes around 0 and the format edges, mixed.
    edges_a = np.array(sorted({a_fmt.min, a_fmt.max, 0, 1, a_fmt.max // 2 + 1, max(a_fmt.min, -1)}))
    edges_w = np.array(sorted({w_fmt.min, w_fmt.max, -1, 0, 1, w_fmt.min // 2}))
    sets.append(("sign_boundaries", rng.choice(edges_a, size=(9, k)), rng.choice(edges_w, size=(k, n))))
    sets.append(("random", rand((11, k), a_fmt), rand((k, 2 * c + 1), w_fmt)))
    sets.append(("random_narrow", rand((3, max(1, r - 1)), a_fmt), rand((max(1, r - 1), 1), w_fmt)))
    out = [make_vector_set(a, w, hw, a_fmt=a_fmt, w_fmt=w_fmt, name=name) for name, a, w in sets]
    # accumulate: the output buffer starts at C (random, then at both accumulator edges, where the
    # first product already overflows), and each output carries through every K-fold.
    a, w = rand((6, k), a_fmt), rand((k, n), w_fmt)
    out.append(
        make_vector_set(a, w, hw, a_fmt=a_fmt, w_fmt=w_fmt, name="accumulate_random", carry=rand((6, n), acc))
    )
    edges = np.where(rng.random((4, n)) < 0.5, acc.max, acc.min)
    a_edge = np.full((4, k), a_fmt.max)
    w_edge = np.where(edges[:1] == acc.max, w_fmt.max, w_fmt.min).repeat(k, axis=0)
    out.append(
        make_vector_set(a_edge, w_edge, hw, a_fmt=a_fmt, w_fmt=w_fmt, name="accumulate_edges", carry=edges)
    )
    return out


def write_sets(sets: list[VectorSet], where: Path) -> list[str]:
    return [str(write_vectors(vs, where / vs.name)) for vs in sets]


@pytest.mark.parametrize(
    ("sim", "hw", "over", "a_fmt", "w_fmt", "params"),
    [_case(*c) for c in CASES],
    ids=[case_id(_case(*c)[0], _case(*c)[5]) for c in CASES],
)
def test_array_top(
    sim: str, hw: str, over: dict, a_fmt: IntFormat, w_fmt: IntFormat, params: dict[str, int], tmp_path: Path
) -> None:
    require_simulator(sim)
    sets = vector_sets(hw, over, a_fmt, w_fmt)
    assert any(np.any(vs.expected != (vs.a @ vs.w)) for vs in sets if vs.carry is None), (
        "no vector set overflowed the accumulator"
    )
    carried = [vs for vs in sets if vs.carry is not None]
    assert carried and all(vs.overflow_events > 0 for vs in carried if vs.name == "accumulate_edges")
    # accumulate must matter: the same GEMMs without C give other outputs
    hw_cfg = load_hw_config(HW_DIR / hw).with_overrides(**over)
    assert all(np.any(vs.expected != execute_gemm(vs.a, vs.w, hw_cfg).values) for vs in carried)
    dirs = write_sets(sets, tmp_path)
    result = run_testbench(
        "array_top", sim, {**params, "ADDR_BITS": ADDR_BITS}, "tb_array_top", config={"vectors": dirs}
    )
    assert_passed(result)
    assert result.tests == 2


def _broken_cases() -> list[tuple[str, str]]:
    """(dataflow, variant): each broken variant of rtl_models/broken/ in each dataflow whose array it breaks.

    A variant breaks a dataflow when it replaces a file of that dataflow's array (rtl_models.synth.RTL_TARGETS
    names the array top, rtl_models.sim.TOPS its files).
    """
    cases = []
    for flow in RTL_DATAFLOWS:
        files = TOPS[RTL_TARGETS[flow].array_top]
        cases += [(flow, name) for name, swap in VARIANTS.items() if set(swap) & set(files)]
    return cases


@pytest.mark.parametrize(("flow", "variant"), _broken_cases(), ids=[f"{f}-{v}" for f, v in _broken_cases()])
def test_broken_variant_is_caught(flow: str, variant: str, tmp_path: Path) -> None:
    """A deliberately broken PE (a truncated product; an os sum narrowed once on the way out) must fail."""
    sim = "icarus"
    require_simulator(sim)
    # 3x5, a4w4, acc16 saturate: with wrap, a sum narrowed once on the way out can equal the right one
    _, hw, over, a_fmt, w_fmt, params = _case(sim, flow, *SHAPES[1][1:])
    dirs = write_sets(vector_sets(hw, over, a_fmt, w_fmt), tmp_path)
    result = run_testbench(
        "array_top",
        sim,
        {**params, "ADDR_BITS": ADDR_BITS},
        "tb_array_top",
        config={"vectors": dirs},
        variant=variant,
        testcase="array_top_vectors",
    )
    assert result.tests == 1 and result.failed == 1, result.summary()
    message = result.failures[0]
    # the first set it fails names what differs: an output (with the PE that made it) or the overflow count
    differs = "outputs differ" in message and "first Y[m=" in message and "bottom PE" in message
    assert differs or "overflow events expected" in message, message
    assert "expected" in message and "actual" in message, message


def test_build_dirs_are_per_parameter_set() -> None:
    """Two parameter sets never share a build directory (Icarus would reuse the old binary)."""
    from rtl_models.sim import build_dir_for

    a = build_dir_for("array_top", "icarus", {"ROWS": 4, "COLS": 4})
    b = build_dir_for("array_top", "icarus", {"ROWS": 4, "COLS": 5})
    assert a != b and a.parent == b.parent == SIM_BUILD
