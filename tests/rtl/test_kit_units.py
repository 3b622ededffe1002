"""The verification kit without a simulator: layouts, parameter discovery, descriptions, work items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsim.bundle import load_bundle
from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.vectors import choose_image
from rtl_models.kit.layout import BlockLayout
from rtl_models.kit.spec import PROTOCOLS, load_spec, parse_spec
from rtl_models.kit.work import assemble, layer_work, random_items, tiles
from rtl_models.sim import declared_parameters

REPO = Path(__file__).resolve().parents[2]
DESIGNS = REPO / "rtl_models" / "kit" / "designs"
BUNDLE = REPO / "hwsim" / "pretrained" / "bundles" / "dorefa_a4w4"


@pytest.mark.parametrize(
    "layout",
    [
        BlockLayout(1, 4),
        BlockLayout(2, 3, order="col"),
        BlockLayout(3, 2, lanes="col", lane0="msb"),
        BlockLayout(5, 7),
    ],
)
def test_layout_round_trip_and_beats(layout: BlockLayout) -> None:
    rng = np.random.default_rng(0)
    fmt = IntFormat(5, True)
    x = rng.integers(fmt.min, fmt.max, size=(5, 7), endpoint=True)
    words = layout.words(x, fmt)
    assert len(words) == layout.beat_count(x.shape)
    assert np.array_equal(layout.matrix(words, x.shape, fmt), x)
    beat = layout.beat_of(x.shape)
    pos = layout.positions(x.shape)
    for b in range(len(words)):  # every element is in the beat beat_of names, exactly once
        inside = pos[b, :, 0] >= 0
        assert np.all(beat[pos[b, inside, 0], pos[b, inside, 1]] == b)
    assert int((pos[..., 0] >= 0).sum()) == x.size


def test_layout_lane_order_by_hand() -> None:
    # [[1, 2], [3, 4]] in beats of one row, 4-bit lanes, lane 0 at the low bits: 0x21, 0x43
    assert BlockLayout(1, 2).words(np.array([[1, 2], [3, 4]]), IntFormat(4, False)) == [0x21, 0x43]
    assert BlockLayout(2, 1, order="row").words(np.array([[1, 2], [3, 4]]), IntFormat(4, False)) == [
        0x31,
        0x42,
    ]
    assert BlockLayout(1, 2, lane0="msb").words(np.array([[1, 2]]), IntFormat(4, False)) == [0x12]


def test_parameters_found_robustly(tmp_path: Path) -> None:
    src = tmp_path / "dut.sv"
    src.write_text(
        "`define PUB /*verilator public*/\n"
        "module dut #(parameter A = 1, B = 2, // comment, C = 3\n"
        "  int unsigned MW, parameter logic [3:0] P `PUB = 4'h3, localparam L1 = 5, L2 = 6,\n"
        "  parameter type T = logic)(input clk);\n"
        "  parameter F = 7, G = 8; localparam H = 1;\nendmodule\n"
        "module other #(parameter Z = 1)(); endmodule\n"
    )
    assert declared_parameters("dut", [src]) == ("A", "B", "MW", "P", "T", "F", "G")
    mm = REPO / "rtl_models" / "third_party" / "cocotb_matrix_multiplier" / "hdl" / "matrix_multiplier.sv"
    names = declared_parameters("matrix_multiplier", [mm])  # `parameter int DATA_WIDTH `VL_RD = 8`
    assert names == ("DATA_WIDTH", "A_ROWS", "B_COLUMNS", "A_COLUMNS_B_ROWS", "C_DATA_WIDTH")
    finn = REPO / "rtl_models" / "third_party" / "finn_mvu" / "mvu_vvu_axi.sv"  # `int unsigned MW,` lists
    names = declared_parameters("mvu_vvu_axi", [finn])
    assert {"IS_MVU", "MW", "MH", "PE", "SIMD", "ACCU_WIDTH", "FORCE_BEHAVIORAL", "M_REG_LUT"} <= set(names)
    assert "WEIGHT_STREAM_WIDTH" not in names and "SIMD_UNEVEN" not in names  # localparams of the header
    with pytest.raises(UserError, match="defines module nope"):
        declared_parameters("nope", [src])


@pytest.mark.parametrize("path", sorted(DESIGNS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_description_loads_and_names_declared_parameters(path: Path) -> None:
    spec = load_spec(path)
    assert spec.protocol_name in PROTOCOLS
    assert set(spec.parameters) <= set(declared_parameters(spec.top, list(spec.sources)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"protocol": "axi-full"}, "protocol: 'axi-full' is not one of stream, parallel, buffers"),
        ({"colour": "red"}, r"unknown field\(s\) colour"),
        ({"sources": ["missing.sv"]}, r"sources\[0\]: .*missing.sv does not exist"),
        (
            {"gemm": {"a": {"bits": 8, "signed": False}, "w": {"bits": 8, "signed": True}}},
            "missing field 'acc_bits'",
        ),
        (
            {"reset": {"port": "rst", "active": "sideways"}},
            "reset.active: 'sideways' is not one of high, low",
        ),
    ],
)
def test_bad_descriptions_name_the_field(change: dict, message: str) -> None:
    import yaml

    data = yaml.safe_load((DESIGNS / "cocotb_matrix_multiplier.yaml").read_text())
    data.update(change)
    with pytest.raises(UserError, match=message):
        parse_spec(data, "dut.yaml", DESIGNS)


def _gemm(**kw: object):
    import yaml

    data = yaml.safe_load((DESIGNS / "cocotb_matrix_multiplier.yaml").read_text())
    data["gemm"].update(kw)
    return parse_spec(data, "dut.yaml", DESIGNS).gemm


def test_items_add_up_to_the_emulators_layer_with_zero_points_and_wrap() -> None:
    bundle = load_bundle(BUNDLE)
    gemm = _gemm(acc_bits=12)  # narrow: the items' sums wrap, and so do the emulator's
    work = layer_work(bundle, "conv1", choose_image(bundle), gemm, rows=6)
    assert work.k_blocks == 4 and len(work.items) == 2 * 4 * 4
    assert any(it.overflows for it in work.items)
    total = assemble(work, [it.expected for it in work.items], gemm)
    assert total is not None and np.array_equal(total, work.expected)
    broken = [it.expected.copy() for it in work.items]
    broken[5][1, 2] += 1  # one output of one item off by one: the layer no longer adds up
    assert not np.array_equal(assemble(work, broken, gemm), work.expected)


def test_codes_that_do_not_fit_the_port_are_bad_input() -> None:
    bundle = load_bundle(BUNDLE)
    gemm = _gemm(w={"bits": 8, "signed": False, "zero_point": 0})
    with pytest.raises(
        UserError, match=r"weight codes span \[-241, 239\].* uint8 \[0, 255\] port.*zero_point"
    ):
        layer_work(bundle, "conv1", choose_image(bundle), gemm, rows=4)
    with pytest.raises(UserError, match="not a conv2d/linear node"):
        layer_work(bundle, "act1", choose_image(bundle), gemm)


def test_random_items_are_exact_and_cover_short_and_long_k() -> None:
    gemm = _gemm(tile={"m": None, "k": None, "n": None})
    items = random_items(gemm, 4, np.random.default_rng(2), k_values=(1, 9))
    assert [it.shape[1] for it in items] == [1, 9, 1, 9]
    for it in items:  # the design's view: unsigned operands, the product wrapped to 16 bits
        exact = (it.a @ it.w) % (1 << 16)
        assert np.array_equal(exact, it.expected % (1 << 16))
        a, w = it.a - 1024, it.w - 1024  # the codes, and the correction recovers their product
        assert np.array_equal((it.expected - it.correction) % (1 << 16), (a @ w) % (1 << 16))
    assert len(tiles(np.ones((3, 20), np.int64), np.ones((20, 2), np.int64), _gemm(), "t")) == 3


def test_first_error_of_a_build_log() -> None:
    from rtl_models.kit.runner import first_error

    verilator = (
        "- V e r i l a t i o n\n%Warning-ASCRANGE: mvu.sv:782:16: Ascending bit range\n"
        "%Error: Exiting due to 1 warning(s)\n"
    )
    assert first_error(verilator) == "%Warning-ASCRANGE: mvu.sv:782:16: Ascending bit range"
    assert first_error("bad.sv:2: syntax error\nI give up.\n") == "bad.sv:2: syntax error"
    assert first_error("") == "(the build printed nothing)"


def test_every_protocol_has_a_driver_and_a_description_that_uses_it() -> None:
    """One registry: each protocol of the description format has its driver, and a test design."""
    from rtl_models.kit.protocols import DRIVERS

    assert set(DRIVERS) == set(PROTOCOLS)
    used = {
        load_spec(p).protocol_name for p in [*DESIGNS.glob("*.yaml"), REPO / "tests/rtl/hdl/stream_dot.yaml"]
    }
    assert used | {"buffers"} == set(PROTOCOLS)  # buffers: array_top's description (rtl_models.kit.array_top)
