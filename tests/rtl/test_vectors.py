"""`hwsim vectors` and hwsim.vectors: files, manifest and round trip (no simulator needed).

GEMM sets (a conv2d or linear node) and requant sets (a requant node's inputs and codes); the
requant sets come from the tiny bundle with a different rounding mode per requantizer
(:func:`mixed_rounding_bundle`, also used by tests/rtl/test_check.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import HW_DIR

from hwsim.bundle import Bundle, RequantNode, load_bundle
from hwsim.bundle.synthetic import tiny_builder, tiny_bundle, tiny_inputs
from hwsim.cli import main
from hwsim.dataflows import DATAFLOWS
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.hwconfig import load_hw_config, requant_parameters
from hwsim.systolic import run_gemm_cycles
from hwsim.vectors import (
    BUFFER_LAYOUTS,
    VectorError,
    buffer_layout,
    from_image,
    make_requant_vector_set,
    make_vector_set,
    read_requant_vectors,
    read_vectors,
    write_requant_vectors,
    write_vectors,
)

# The tiny bundle's requantizers, each in its own mode: one input (act1, logits), two inputs
# (act2: an accumulator plus act1's codes), the sign function (sgn); 8 images make ties in each.
MODES = {"act1": "toward_zero", "act2": "half_up", "sgn": "floor", "logits": "half_even"}
IMAGES = 8


def mixed_rounding_bundle(modes: dict[str, str] = MODES) -> Bundle:
    """The tiny bundle (hwsim.bundle.synthetic) in memory, each requant node with its mode of ``modes``."""
    bundle = tiny_builder().build("logits")
    nodes = tuple(
        replace(n, rounding=modes[n.name]) if isinstance(n, RequantNode) and n.name in modes else n
        for n in bundle.nodes
    )
    return replace(bundle, nodes=nodes)


def requant_sets(where: Path) -> list[str]:
    """A requant set per node of :data:`MODES`, plus ``act1.b`` (other images, act1's parameters)."""
    bundle = mixed_rounding_bundle()
    sets = [make_requant_vector_set(bundle, node, tiny_inputs(IMAGES)) for node in MODES]
    sets.append(make_requant_vector_set(bundle, "act1", tiny_inputs(IMAGES, seed=1), name="act1.b"))
    return [str(write_requant_vectors(vs, where / vs.name)) for vs in sets]


def test_cli_writes_a_layer_that_reads_back(tmp_path: Path, capsys) -> None:
    bundle = tiny_bundle(tmp_path / "bundle")
    out = tmp_path / "vec"
    rc = main(
        ["vectors", str(bundle), "--layer", "conv1", "--hw", str(HW_DIR / "ws_8x8.yaml"), "--out", str(out)]
    )
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # conv1: 3x3, 2 -> 3 channels on a 4x4 input with padding 1: M = 16, K = 2*3*3 = 18, N = 3.
    # ws on 8x8: ceil(18 / 8) = 3 K-folds x 1 N-fold
    assert manifest["gemm"] == {"m": 16, "k": 18, "n": 3, "folds": 3} and manifest["dataflow"] == "ws"
    vs = read_vectors(out)
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml")
    run = run_gemm_cycles(vs.a, vs.w, hw)
    assert np.array_equal(vs.expected, run.values) and vs.cycles == run.total_cycles
    # one line per word, ROWS * A_BITS bits wide: 8 lanes of 4-bit codes = 8 hex digits
    lines = (out / "abuf.hex").read_text().split()
    assert len(lines) == 3 * 16 and all(len(line) == 8 for line in lines)
    assert "ADDR_BITS" in capsys.readouterr().out


def test_cli_rejects_an_unknown_layer(tmp_path: Path, capsys) -> None:
    bundle = tiny_bundle(tmp_path / "bundle")
    rc = main(
        [
            "vectors",
            str(bundle),
            "--layer",
            "nope",
            "--hw",
            str(HW_DIR / "ws_8x8.yaml"),
            "--out",
            str(tmp_path / "vectors"),  # not tmp_path: it holds the input bundle
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "conv1" in err and "Traceback" not in err


def test_round_trip_with_signed_codes_and_partial_folds(tmp_path: Path) -> None:
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(
        rows=3, cols=5, acc_bits=16, overflow="saturate"
    )
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(7, 10))
    w = rng.integers(-8, 8, size=(10, 6))
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(8, True), w_fmt=IntFormat(4, True), name="rt")
    back = read_vectors(write_vectors(vs, tmp_path / "rt"))
    assert (
        np.array_equal(back.a, a) and np.array_equal(back.w, w) and np.array_equal(back.expected, vs.expected)
    )
    assert (back.cycles, back.overflow_events, back.parameters) == (
        vs.cycles,
        vs.overflow_events,
        vs.parameters,
    )


def test_origin_names_the_last_write_back_of_the_array_model_trace() -> None:
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(rows=3, cols=4)
    a = np.ones((5, 7), dtype=np.int64)
    w = np.ones((7, 6), dtype=np.int64)
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(8, False), w_fmt=IntFormat(8, True))
    last = {(x.m, x.n): x for x in run_gemm_cycles(a, w, hw, trace=True).writes}
    # Y[4, 5]: N-fold 1 (columns 4..7), array column 5 - 4 = 1, in its third (last) K-fold
    assert vs.origin(4, 5) == (
        f"fold {last[4, 5].fold}, array column 1, bottom PE (2, 1), written in cycle {last[4, 5].cycle} "
        "(0 = first after start)"
    )
    assert last[4, 5].fold == 5


# A 3 x 2 array, A [2, 4] = 1..8 (row-major), W [4, 3] = 11..22, Y [2, 3] = 31..36: each buffer's
# words written out by hand from the layouts of docs/rtl.md (0 is padding).
A = np.arange(1, 9).reshape(2, 4)
W = np.arange(11, 23).reshape(4, 3)
Y = np.arange(31, 37).reshape(2, 3)
HAND_LAYOUTS = {
    # ws: abuf kf*M + m = A[m, kf*3 + r]; wbuf (nf*KF + kf)*3 + j = W[kf*3 + j, nf*2 + c]; obuf nf*M + m
    "W": (
        [[1, 2, 3], [5, 6, 7], [4, 0, 0], [8, 0, 0]],
        [
            [11, 12],
            [14, 15],
            [17, 18],
            [20, 21],
            [0, 0],
            [0, 0],
            [13, 0],
            [16, 0],
            [19, 0],
            [22, 0],
            [0, 0],
            [0, 0],
        ],
        [[31, 32], [34, 35], [33, 0], [36, 0]],
    ),
    # is: abuf (mf*KF + kf)*3 + j = A[mf*2 + c, kf*3 + j]; wbuf kf*N + n = W[kf*3 + r, n];
    # obuf mf*N + n = Y[mf*2 + c, n]
    "A": (
        [[1, 5], [2, 6], [3, 7], [4, 8], [0, 0], [0, 0]],
        [[11, 14, 17], [12, 15, 18], [13, 16, 19], [20, 0, 0], [21, 0, 0], [22, 0, 0]],
        [[31, 34], [32, 35], [33, 36]],
    ),
    # os: abuf mf*K + k = A[mf*3 + r, k]; wbuf nf*K + k = W[k, nf*2 + c]; obuf nf*M + m = Y[m, nf*2 + c]
    "Y": (
        [[1, 5, 0], [2, 6, 0], [3, 7, 0], [4, 8, 0]],
        [[11, 12], [14, 15], [17, 18], [20, 21], [13, 0], [16, 0], [19, 0], [22, 0]],
        [[31, 32], [34, 35], [33, 0], [36, 0]],
    ),
}


@pytest.mark.parametrize("flow", [name for name, f in DATAFLOWS.items() if f.rtl])
def test_every_rtl_dataflow_has_a_buffer_layout_that_round_trips(flow: str, tmp_path: Path) -> None:
    layout = buffer_layout(DATAFLOWS[flow])
    expected = HAND_LAYOUTS[DATAFLOWS[flow].stationary]
    for image, matrix, words in zip(
        (layout.abuf, layout.wbuf, layout.obuf), (A, W, Y), expected, strict=True
    ):
        lanes = image(matrix, 3, 2)
        assert lanes.tolist() == words
        assert np.array_equal(from_image(image, lanes, matrix.shape, 3, 2), matrix)
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(rows=3, cols=2, dataflow=flow, acc_bits=12)
    rng = np.random.default_rng(1)
    a, w, c = rng.integers(-8, 8, (5, 7)), rng.integers(-8, 8, (7, 3)), rng.integers(-99, 99, (5, 3))
    for carry in (None, c):
        vs = make_vector_set(a, w, hw, a_fmt=IntFormat(4, True), w_fmt=IntFormat(4, True), carry=carry)
        back = read_vectors(write_vectors(vs, tmp_path / f"{flow}{carry is None}"))
        assert back.dataflow.name == flow and back.parameters == vs.parameters
        assert (
            np.array_equal(back.a, a)
            and np.array_equal(back.w, w)
            and np.array_equal(back.expected, vs.expected)
        )
        assert carry is None or np.array_equal(back.carry, carry)


def test_a_dataflow_without_a_buffer_layout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(BUFFER_LAYOUTS, "A")
    with pytest.raises(UserError, match="dataflow 'is': no RTL buffer layout for a stationary A"):
        buffer_layout(DATAFLOWS["is"])


def test_accumulating_set_round_trips_with_its_carry(tmp_path: Path) -> None:
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(
        rows=3, cols=2, acc_bits=12, overflow="saturate"
    )
    rng = np.random.default_rng(1)
    a = rng.integers(0, 16, size=(4, 7))
    w = rng.integers(-8, 8, size=(7, 3))
    carry = rng.integers(-2048, 2048, size=(4, 3))
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(4, False), w_fmt=IntFormat(4, True), carry=carry)
    # the expected outputs are hwsim's register-level model with carry=
    assert np.array_equal(vs.expected, run_gemm_cycles(a, w, hw, carry=carry).values)
    out = write_vectors(vs, tmp_path / "acc")
    assert json.loads((out / "manifest.json").read_text())["accumulate"] is True
    back = read_vectors(out)
    assert back.carry is not None and np.array_equal(back.carry, carry)
    assert np.array_equal(back.expected, vs.expected)


def test_requant_sets_hold_the_emulator_codes_in_each_mode_and_round_trip(tmp_path: Path) -> None:
    bundle = mixed_rounding_bundle()
    images = tiny_inputs(IMAGES)
    run = emulate(bundle, images)
    for node, mode in MODES.items():
        rq = bundle.node(node)
        assert isinstance(rq, RequantNode) and rq.rounding == mode
        vs = make_requant_vector_set(bundle, node, images)
        out_fmt = bundle.tensors[rq.output].fmt
        assert out_fmt is not None
        assert vs.parameters == requant_parameters(
            out_fmt, mode, x_bits=32, mult_bits=32, function=rq.function
        )
        assert np.array_equal(vs.expected, run.tensors[rq.output].reshape(-1))
        assert vs.shape == (IMAGES, *bundle.tensors[rq.output].shape) and vs.inputs == len(rq.inputs)
        if mode != "half_up":  # the mode matters on these elements: RTL that ignores it fails
            half_up, _ = replace(vs, rounding="half_up").fixed_codes()
            assert not np.array_equal(half_up, vs.expected), node
        out = write_requant_vectors(vs, tmp_path / node)
        manifest = json.loads((out / "manifest.json").read_text())
        assert (manifest["kind"], manifest["rounding"], manifest["elements"]) == (
            "requant",
            mode,
            vs.elements,
        )
        back = read_requant_vectors(out)
        assert back.parameters == vs.parameters and back.out_format == vs.out_format
        assert np.array_equal(back.expected, vs.expected)
        assert all(np.array_equal(back.stimulus[k], vs.stimulus[k]) for k in vs.stimulus)
        with pytest.raises(VectorError, match="read_requant_vectors"):
            read_vectors(out)


def test_cli_writes_a_requant_node_on_the_hw_accumulators(tmp_path: Path, capsys) -> None:
    bundle_dir = tiny_bundle(tmp_path / "bundle")
    out = tmp_path / "act2"
    hw = HW_DIR / "ws_8x8.yaml"
    assert main(["vectors", str(bundle_dir), "--layer", "act2", "--hw", str(hw), "--out", str(out)]) == 0
    assert "requant of 2 input(s)" in capsys.readouterr().out
    vs = read_requant_vectors(out)
    acc = load_hw_config(hw).pe
    assert vs.parameters["X_BITS"] == acc.acc_bits and vs.inputs == 2  # 24-bit accumulators
    # the expected codes are the emulator's, on the hardware's accumulators, for the first (random) image
    bundle = load_bundle(bundle_dir)
    image = np.random.default_rng(0).integers(-8, 7, size=(1, 2, 4, 4), endpoint=True)
    run = emulate(bundle, image, EmulatorConfig(acc_bits=acc.acc_bits, overflow=acc.overflow))
    assert np.array_equal(vs.expected, run.tensors["act2"].reshape(-1))
    assert np.array_equal(vs.stimulus["x1"], run.tensors["act1"].reshape(-1))  # the residual input


def test_requant_node_with_three_inputs_is_refused() -> None:
    bundle = tiny_builder().build("logits")
    act2 = bundle.node("act2")
    assert isinstance(act2, RequantNode)
    three = replace(act2, inputs=(*act2.inputs, act2.inputs[1]))
    bundle = replace(bundle, nodes=tuple(three if n is act2 else n for n in bundle.nodes))
    with pytest.raises(UserError, match="'act2' has 3 inputs; requant.v adds one or two"):
        make_requant_vector_set(bundle, "act2", tiny_inputs(1))
    with pytest.raises(UserError, match="no requant node named 'conv1'"):
        make_requant_vector_set(bundle, "conv1", tiny_inputs(1))


def test_a_manifest_without_kind_is_a_gemm_set(tmp_path: Path) -> None:
    hw = load_hw_config(HW_DIR / "ws_8x8.yaml").with_overrides(rows=2, cols=2)
    vs = make_vector_set(
        np.ones((3, 3)), np.ones((3, 2)), hw, a_fmt=IntFormat(4, False), w_fmt=IntFormat(4, True)
    )
    out = write_vectors(vs, tmp_path / "old")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest.pop("kind") == "gemm"
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert np.array_equal(read_vectors(out).expected, vs.expected)
    with pytest.raises(VectorError, match="read it with read_vectors"):
        read_requant_vectors(out)


def test_addr_bits_also_fit_the_size_ports() -> None:
    """K = 64 on a 16x16 ws array: 4 K-folds x 1 row = 4 activation words, 64 weight words (6 bits
    address them), but k_depth must hold 64: 7 bits."""
    hw = load_hw_config(HW_DIR / "ws_16x16.yaml")
    a, w = np.ones((1, 64), dtype=np.int64), np.ones((64, 10), dtype=np.int64)
    vs = make_vector_set(a, w, hw, a_fmt=IntFormat(4, False), w_fmt=IntFormat(4, True))
    assert vs.addr_bits == 7
