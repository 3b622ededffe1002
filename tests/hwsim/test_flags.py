"""hwsim.flags and every hwsim command's numeric flags: finite, in range, the range in the message.

Also the defaults that depend on the data (`--images` takes what the bundle holds when it holds
fewer; an explicit larger count is an error naming both numbers), `sweep --range` checked before
the list is built, the `--grid` bound, and `hwsim vectors`' bound and note on large arrays.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import tiny_bundle
from hwsim.cli import main
from hwsim.commands.simulate import select_inputs
from hwsim.commands.sweep import DEFAULT_IMAGES
from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.flags import ValueRangeError, check_float, check_int, finite_float, int_in
from hwsim.sweep import WIDTH_LIMITS, parse_range
from hwsim.vectors import pack_words, unpack_words

REPO = Path(__file__).resolve().parents[2]
HW = REPO / "configs" / "hw" / "ws_8x8.yaml"
BUNDLED = REPO / "hwsim" / "pretrained" / "bundles"


Cli = Callable[[Callable[[list[str]], int], list[str]], tuple[int, str]]  # the `cli` fixture


# --- the type functions ----------------------------------------------------------------------------

BOUNDS = st.one_of(st.none(), st.floats(-1e6, 1e6))


@given(value=st.floats(allow_nan=True, allow_infinity=True), lo=BOUNDS, hi=BOUNDS, lo_open=st.booleans())
def test_finite_float_accepts_exactly_the_finite_numbers_in_range(
    value: float, lo: float | None, hi: float | None, lo_open: bool
) -> None:
    legal = math.isfinite(value) and (lo is None or value > lo or (value == lo and not lo_open))
    legal = legal and (hi is None or value <= hi)
    parse = finite_float(lo, hi, lo_open=lo_open)
    if legal:
        assert parse(repr(value)) == value
        assert check_float("--x", value, lo, hi, lo_open=lo_open) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=r"expected a finite number in [\[(]"):
            parse(repr(value))
        with pytest.raises(ValueRangeError, match=r"^--x .*: expected a finite number in"):
            check_float("--x", value, lo, hi, lo_open=lo_open)


@given(value=st.integers(-(2**70), 2**70), lo=st.integers(-100, 100), span=st.integers(0, 200))
def test_int_in_accepts_exactly_the_integers_in_range(value: int, lo: int, span: int) -> None:
    hi = lo + span
    if lo <= value <= hi:
        assert int_in(lo, hi)(str(value)) == value and check_int("--n", value, lo, hi) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=rf"expected an integer in {lo}\.\.{hi}, got"):
            int_in(lo, hi)(str(value))
        with pytest.raises(UserError, match=rf"--n {value}: expected an integer in {lo}\.\.{hi}"):
            check_int("--n", value, lo, hi)


@pytest.mark.parametrize("text", ["1.5", "x", "", "1e3", "nan", "0x10"])
def test_int_in_refuses_what_is_not_an_integer(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an integer >= 1"):
        int_in(1)(text)


@pytest.mark.parametrize("value", [True, 2.0, "3", None, np.float64(1.0)])
def test_check_int_refuses_other_types(value: object) -> None:
    with pytest.raises(ValueRangeError, match="expected an integer"):
        check_int("--n", value, 0)


# --- every command's numeric flags, through the CLI -------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with 5 reference images (fewer than any --images default)."""
    return tiny_bundle(tmp_path_factory.mktemp("flags") / "tiny", reference_images=5)


def _commands(b: str) -> dict[str, list[str]]:
    return {
        "emulate": ["emulate", b],
        "compare": ["compare", b, "--report", "never"],
        "simulate": ["simulate", b, "--hw", str(HW), "--report", "never"],
        "sweep": ["sweep", b, "--what", "acc_bits", "--report", "never"],
        "vectors": ["vectors", b, "--layer", "conv1", "--hw", str(HW), "--out", "never"],
        "export-qonnx": ["export-qonnx", b, "--out", "never.onnx"],
        "import-qonnx": ["import-qonnx", "never.onnx", "--out", "never"],
        "demo": ["demo", "--out", "never"],
    }


# (command, flag, bad value, the legal range the message states)
BAD_FLAGS: list[tuple[str, str, str, str]] = [
    ("emulate", "--acc-bits", "0", "an integer in 1..64"),
    ("emulate", "--acc-bits", "65", "an integer in 1..64"),
    ("emulate", "--acc-bits", "nan", "an integer in 1..64"),
    ("emulate", "--batch-size", "0", "an integer in 1..1048576"),
    ("emulate", "--images", "0", "an integer >= 1"),
    ("emulate", "--images", "-3", "an integer >= 1"),
    ("compare", "--acc-bits", "100", "an integer in 1..64"),
    ("compare", "--batch-size", "-1", "an integer in 1..1048576"),
    ("simulate", "--images", "0", "an integer >= 1"),
    ("simulate", "--batch", "0", "an integer in 1..1048576"),
    ("sweep", "--images", "0", "an integer >= 1"),
    ("sweep", "--threshold", "nan", "a finite number in [0, 1]"),
    ("sweep", "--threshold", "1.5", "a finite number in [0, 1]"),
    ("sweep", "--threshold", "-inf", "a finite number in [0, 1]"),
    ("sweep", "--jobs", "0", "an integer in 1..1024"),
    ("vectors", "--image", "-1", "an integer >= 0"),
    ("vectors", "--seed", "-1", "an integer in 0..4294967295"),
    ("vectors", "--group", "-1", "an integer >= 0"),
    ("export-qonnx", "--batch", "0", "an integer in 1..1048576"),
    ("export-qonnx", "--images", "0", "an integer >= 1"),
    ("import-qonnx", "--images", "0", "an integer >= 1"),
    ("import-qonnx", "--mult-bits", "1", "an integer in 2..63"),
    ("import-qonnx", "--batch-size", "0", "an integer in 1..1048576"),
    ("demo", "--sweep-images", "0", "an integer >= 1"),
    ("demo", "--sim-images", "0", "an integer >= 1"),
    ("demo", "--test-images", "0", "an integer >= 1"),
    ("demo", "--threshold", "inf", "a finite number in [0, 1]"),
    ("demo", "--jobs", "-2", "an integer in 1..1024"),
]


@pytest.mark.parametrize(
    ("command", "flag", "value", "legal"), BAD_FLAGS, ids=[" ".join(c[:3]) for c in BAD_FLAGS]
)
def test_a_bad_flag_value_exits_2_with_its_range(
    command: str,
    flag: str,
    value: str,
    legal: str,
    tiny: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    argv = _commands(str(tiny))[command]
    code, err = cli(main, [*argv, f"{flag}={value}"])
    assert code == 2
    assert f"argument {flag}: expected {legal}, got '{value}'" in err, err
    assert "Traceback" not in err and not Path("never").exists()


@pytest.mark.parametrize("value", ["nan", "1,inf,1", "a,b"])
def test_import_qonnx_normalization_must_be_finite(value: str, cli: Cli) -> None:
    code, err = cli(main, ["import-qonnx", "never.onnx", "--out", "never", f"--mean={value}"])
    assert code == 2 and "expected finite numbers" in err and "Traceback" not in err


# --- sweep --range: bounds before the list ----------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "text"),
    [
        ("acc_bits", "1..10000000000"),
        ("acc_bits", "0..8"),
        ("acc_bits", "8..65"),
        ("acc_bits", "9..8"),
        ("w_bits", "1..4"),
        ("w_bits", "2..63"),
        ("a_bits", "0,4"),
        ("a_bits", ",".join(["4"] * 100)),
        ("acc_bits", "-" + "9" * 5000 + "..3"),  # passed as --range=TEXT: it starts with "-"
    ],
)
def test_sweep_range_outside_the_legal_widths(
    what: str, text: str, tiny: Path, tmp_path: Path, cli: Cli
) -> None:
    lo, hi = WIDTH_LIMITS[what]
    report = tmp_path / "r"
    code, err = cli(main, ["sweep", str(tiny), "--what", what, f"--range={text}", "--report", str(report)])
    assert code == 2 and "Traceback" not in err and not report.exists()
    assert f"{what} widths must lie in {lo}..{hi}" in err or "expected LO..HI" in err, err
    assert len(err) < 500  # the input is shown truncated


def test_parse_range_limits_per_width() -> None:
    assert parse_range("1..64", "acc_bits") == list(range(1, 65))
    assert parse_range("2..62", "w_bits")[0] == 2 and parse_range("1..3", "a_bits") == [1, 2, 3]
    with pytest.raises(UserError, match=r"w_bits widths must lie in 2\.\.62"):
        parse_range("1", "w_bits")


# --- --images defaults and explicit counts ----------------------------------------------------------


def test_sweep_and_simulate_defaults_take_what_the_reference_holds(
    tiny: Path, tmp_path: Path, cli: Cli
) -> None:
    sweep = ["sweep", str(tiny), "--what", "acc_bits", "--range", "8..9", "--jobs", "1", "--no-progress"]
    assert cli(main, [*sweep, "--report", str(tmp_path / "s")])[0] == 0
    assert json.loads((tmp_path / "s" / "report.json").read_text())["totals"]["images"] == 5
    code, err = cli(main, [*sweep, "--images", "6", "--report", str(tmp_path / "s6")])
    assert code == 2 and "--images 6: the bundle's reference holds 5 inputs" in err and "--images 5" in err
    simulate = ["simulate", str(tiny), "--hw", str(HW), "--no-progress"]
    assert cli(main, [*simulate, "--report", str(tmp_path / "m")])[0] == 0
    code, err = cli(main, [*simulate, "--images", "9", "--report", str(tmp_path / "m9")])
    assert code == 2 and "--images 9" in err and "holds 5 inputs" in err


def test_sweep_default_images_fit_every_bundled_model() -> None:
    """The default is at most what each bundled model's reference holds (32 images each)."""
    dirs = sorted(p for p in BUNDLED.iterdir() if (p / "graph.yaml").is_file())
    assert dirs
    for d in dirs:
        bundle = load_bundle(d)
        assert bundle.reference is not None
        codes, _ = select_inputs(bundle, None, None, DEFAULT_IMAGES)
        assert codes.shape[0] == min(DEFAULT_IMAGES, bundle.reference.images), d.name


def test_simulate_grid_is_bounded_before_it_is_built(tiny: Path, tmp_path: Path, cli: Cli) -> None:
    many = ",".join(str(v) for v in range(1, 101))
    argv = ["simulate", str(tiny), "--hw", str(HW), "--grid", f"rows={many}", f"cols={many}"]
    code, err = cli(main, [*argv, "--report", str(tmp_path / "g")])
    assert code == 2 and "10000 combinations; at most 1024" in err and not (tmp_path / "g").exists()


# --- hwsim vectors on large arrays --------------------------------------------------------------


def _hw(tmp_path: Path, side: int) -> Path:
    path = tmp_path / f"hw{side}.yaml"
    text = HW.read_text().replace("rows: 8", f"rows: {side}").replace("cols: 8", f"cols: {side}")
    assert f"rows: {side}" in text
    path.write_text(text)
    return path


def test_vectors_refuses_an_array_beyond_the_model_bound(tiny: Path, tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "v"
    argv = ["vectors", str(tiny), "--layer", "conv1", "--hw", str(_hw(tmp_path, 4096)), "--out", str(out)]
    code, err = cli(main, argv)
    assert code == 2 and "over the limit of 2.00e+10" in err and "use a smaller array" in err, err
    assert "HWSIM_MAX_PE_CYCLES" in err and not out.exists()


def test_the_array_model_bound_is_raised_by_its_variable(
    tiny: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bound lowered below the small 8x8 run refuses it; the default lets it run."""
    out = tmp_path / "v"
    argv = ["vectors", str(tiny), "--layer", "conv1", "--hw", str(HW), "--out", str(out)]
    monkeypatch.setenv("HWSIM_MAX_PE_CYCLES", "10")
    code, err = cli(main, argv)
    assert code == 2 and "over the limit of 1.00e+01" in err and not out.exists(), err
    monkeypatch.delenv("HWSIM_MAX_PE_CYCLES")
    assert cli(main, argv)[0] == 0 and out.is_dir()


def test_vectors_says_up_front_when_it_will_take_a_while(
    tiny: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hwsim.commands.vectors as command

    argv = ["vectors", str(tiny), "--layer", "conv1", "--hw", str(HW), "--out", str(tmp_path / "v")]
    assert cli(main, argv)[0] == 0
    monkeypatch.setattr(command, "NOTE_PE_CYCLES", 0)
    code, err = cli(main, [*argv[:-1], str(tmp_path / "w")])
    assert code == 0 and "steps 8x8 PEs through" in err and "this takes a while" in err


@given(
    bits=st.integers(1, 64),
    signed=st.booleans(),
    shape=st.tuples(st.integers(0, 5), st.integers(1, 9)),
    seed=st.integers(0, 2**32 - 1),
)
def test_packed_words_hold_lane_i_at_bit_i_times_width(
    bits: int, signed: bool, shape: tuple[int, int], seed: int
) -> None:
    if bits == 64 and not signed:
        signed = True  # unsigned 64-bit codes do not fit int64
    fmt = IntFormat(bits, signed)
    lanes = np.random.default_rng(seed).integers(fmt.min, fmt.max, size=shape, endpoint=True, dtype=np.int64)
    words = pack_words(lanes, bits)
    mask = (1 << bits) - 1
    assert words == [sum((int(v) & mask) << (i * bits) for i, v in enumerate(row)) for row in lanes.tolist()]
    assert np.array_equal(unpack_words(words, shape[1], fmt), lanes)
