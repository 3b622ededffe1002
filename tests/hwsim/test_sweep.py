"""hwsim.sweep and `hwsim sweep`: the in-memory rewrites are exact, and the sweep measures what it says.

The fast sweep (one unmodified run, each point re-run from its layer on, points on worker
processes) is checked point by point against emulating each rewritten bundle whole."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.bundle import (
    Bundle,
    CodeFormat,
    Conv2dNode,
    LinearNode,
    Node,
    RequantInput,
    RequantNode,
    TensorSpec,
    load_bundle,
)
from hwsim.bundle.synthetic import random_resnet20_bundle, tiny_bundle, tiny_inputs
from hwsim.cli import main
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.fixed import round_shift
from hwsim.output import MARKER
from hwsim.sweep import (
    SweepPoint,
    SweepResult,
    narrow_layer_input,
    narrow_weights,
    parse_range,
    sqnr_db,
    sweep_bundle,
)


def wrap_layer_acc(bundle: Bundle, layer: str, bits: int) -> Bundle:
    """``layer``'s accumulator wrapped to ``bits`` bits by rewriting the graph alone (the cross-check of
    ``EmulatorConfig.acc_bits_per_layer``): two requantizers after the layer compute
    ``x - 2^bits * round_shift(x, bits)``, the two's-complement wrap, and its readers read that."""
    node = bundle.node(layer)
    spec = bundle.tensors[node.output]
    c = int(spec.shape[0])
    carry, wrapped = f"{node.output}@acc{bits}.carry", f"{node.output}@acc{bits}"

    def requant(name: str, inputs: list[tuple[str, np.ndarray]], shift: np.ndarray, out: str) -> RequantNode:
        items = tuple(
            RequantInput(t, m.astype(np.int64), f"{name}.m{i}", None, None) for i, (t, m) in enumerate(inputs)
        )
        return RequantNode(name, items, shift.astype(np.int64), f"{name}.shift", "clamp", out)

    tensors = dict(bundle.tensors)
    tensors[carry] = TensorSpec(carry, "codes", spec.shape, CodeFormat(64, True), 1.0)
    tensors[wrapped] = TensorSpec(wrapped, "codes", spec.shape, CodeFormat(bits, True), 1.0)
    high = requant(f"{carry}.q", [(node.output, np.ones(c))], np.full(c, bits), carry)
    low = requant(
        f"{wrapped}.q", [(node.output, np.ones(c)), (carry, np.full(c, -(1 << bits)))], np.zeros(c), wrapped
    )
    nodes: list[Node] = []
    for n in bundle.nodes:
        if isinstance(n, RequantNode) and node.output in n.reads:
            n = replace(
                n,
                inputs=tuple(replace(i, tensor=wrapped) if i.tensor == node.output else i for i in n.inputs),
            )
        nodes.append(n)
        if n.name == layer:
            nodes += [high, low]
    return replace(bundle, tensors=tensors, nodes=tuple(nodes))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("tiny") / "b", reference_images=12)


@pytest.mark.parametrize("bits", [4, 6, 9])
def test_wrap_rewrite_equals_a_narrow_accumulator(tiny: Path, bits: int) -> None:
    # wrapping every MAC layer by rewrite == the emulator run with acc_bits = bits (wrap is modular)
    bundle = load_bundle(tiny)
    rewritten = bundle
    for node in bundle.mac_nodes:
        rewritten = wrap_layer_acc(rewritten, node.name, bits)
    codes = tiny_inputs(20)
    ours = emulate(rewritten, codes)
    ref = emulate(bundle, codes, EmulatorConfig(acc_bits=bits, overflow="wrap"))
    assert sum(s.overflow_count for s in ref.layers.values()) > 0
    assert np.array_equal(ours.logits, ref.logits)
    for name in ("act1", "act2", "sgn"):
        assert np.array_equal(ours.tensors[name], ref.tensors[name])


def test_input_rewrite_narrows_only_that_layer(tiny: Path) -> None:
    bundle = load_bundle(tiny)
    rewritten = narrow_layer_input(bundle, "conv2", 2)  # act1 is int4: drop 2 bits
    codes = tiny_inputs(6)
    run = emulate(rewritten, codes)
    seen = run.tensors["act1@conv2.a2.up"]
    act1 = run.tensors["act1"]
    assert np.array_equal(seen, np.clip(round_shift(act1, 2), -1, 1) << 2)
    assert not np.array_equal(seen, act1)
    # the residual input of act2 still reads the full act1: rewritten == original up to conv2
    assert np.array_equal(act1, emulate(bundle, codes).tensors["act1"])
    assert narrow_layer_input(bundle, "conv2", 4) is None


@pytest.mark.parametrize("mode", ["floor", "half_even", "toward_zero"])
def test_input_narrowing_rounds_as_the_producing_requantizer(tmp_path: Path, mode: str) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "t", rounding={"act1": mode}))
    rewritten = narrow_layer_input(bundle, "conv2", 2)
    assert rewritten is not None
    assert {n.rounding for n in rewritten.nodes if n.name.startswith("act1@conv2")} == {mode}
    run = emulate(rewritten, tiny_inputs(6))
    want = np.clip(round_shift(run.tensors["act1"], 2, mode), -1, 1) << 2
    assert np.array_equal(run.tensors["act1@conv2.a2.up"], want)


@given(st.lists(st.integers(-127, 127), min_size=1, max_size=12), st.integers(2, 8))
def test_narrow_weights(values: list[int], bits: int) -> None:
    w = np.array(values).reshape(1, -1)
    out = narrow_weights(w, bits)
    qmax = (1 << (bits - 1)) - 1
    peak = int(np.abs(w).max())
    if peak <= qmax:
        assert np.array_equal(out, w)
    else:
        step = 1 << math.ceil(math.log2(max(1, peak)) - (bits - 1))
        assert np.all(np.abs(out) <= peak + step)
        levels = {int(v) for v in np.unique(np.abs(out))}
        assert len(levels) <= qmax + 1


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_one_narrow_accumulator_by_config(tiny: Path, mode: str) -> None:
    # acc_bits_per_layer narrows one layer only: the layers before it are untouched, the layer
    # itself equals a run where every accumulator has that width, and (wrap) it equals the rewrite.
    bundle = load_bundle(tiny)
    codes = tiny_inputs(20)
    base = emulate(bundle, codes, EmulatorConfig(overflow=mode))
    one = emulate(bundle, codes, EmulatorConfig(overflow=mode, acc_bits_per_layer={"conv2": 4}))
    everywhere = emulate(bundle, codes, EmulatorConfig(acc_bits=4, overflow=mode))
    assert np.array_equal(one.tensors["act1"], base.tensors["act1"])
    assert one.layers["conv1"].overflow_count == 0 and everywhere.layers["conv1"].overflow_count > 0
    assert one.layers["conv2"].overflow_count > 0 and one.layers["conv2"].acc_bits == 4
    assert one.layers["fc"].acc_bits == 32 and one.acc_bits == 32
    assert not np.array_equal(one.logits, base.logits)
    narrow_conv2 = emulate(
        bundle, codes, EmulatorConfig(acc_bits=4, overflow=mode, acc_bits_per_layer={"conv1": 32, "fc": 32})
    )
    assert np.array_equal(one.tensors["conv2.acc"], narrow_conv2.tensors["conv2.acc"])
    if mode == "wrap":
        for layer, bits in (("conv1", 5), ("conv2", 4), ("fc", 6)):
            config = EmulatorConfig(acc_bits_per_layer={layer: bits})
            by_config = emulate(bundle, codes, config)
            assert by_config.layers[layer].overflow_count > 0, layer
            by_rewrite = emulate(wrap_layer_acc(bundle, layer, bits), codes)
            assert np.array_equal(by_config.logits, by_rewrite.logits), layer
            for name in ("act1", "act2", "sgn"):
                assert np.array_equal(by_config.tensors[name], by_rewrite.tensors[name]), (layer, name)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    # a8w8: every width below 8 changes the codes of every layer
    return load_bundle(
        random_resnet20_bundle(tmp_path_factory.mktemp("rn") / "b", 8, 8, seed=3, reference_images=10)
    )


SAMPLED_LAYERS = ["conv1.conv", "layer1.0.relu2.conv", "layer2.0.shortcut", "layer2.0.relu2.conv", "fc"]


@pytest.mark.parametrize(
    "what, widths, mode",
    [
        ("w_bits", [2, 5], "wrap"),
        ("a_bits", [3, 7], "wrap"),
        ("acc_bits", [12, 17], "wrap"),
        ("acc_bits", [13, 16], "saturate"),
    ],
)
def test_fast_points_equal_the_whole_rewritten_bundle(
    resnet: Bundle, what: str, widths: list[int], mode: str
) -> None:
    # Each point of the sweep (re-run from its layer on, given the unmodified run's tensors, on two
    # worker processes) equals emulating the rewritten bundle whole, from the input codes.
    codes = resnet.reference.input_codes
    labels = resnet.reference.labels
    result = sweep_bundle(
        resnet, what, widths, codes, labels=labels, layers=SAMPLED_LAYERS, overflow=mode, jobs=2
    )
    config = EmulatorConfig(overflow=mode)
    base = emulate(resnet, codes, config, keep=False).logits
    assert [p.layer for p in result.points] == [n for n in SAMPLED_LAYERS for _ in widths]
    for point in result.points:
        node = resnet.node(point.layer)
        assert isinstance(node, (Conv2dNode, LinearNode))
        run_config = config
        if what == "w_bits":
            whole = replace(
                resnet,
                nodes=tuple(
                    replace(n, weight=narrow_weights(n.weight, point.bits)) if n is node else n
                    for n in resnet.nodes
                ),
            )
        elif what == "a_bits":
            whole = narrow_layer_input(resnet, point.layer, point.bits)
        else:
            whole, run_config = resnet, replace(config, acc_bits_per_layer={point.layer: point.bits})
        run = emulate(whole, codes, run_config, keep=False)
        pred = np.argmax(run.logits, axis=1)
        assert point.changed
        assert point.sqnr_db == sqnr_db(base, run.logits), point
        assert point.agreement == float(np.mean(pred == np.argmax(base, axis=1))), point
        assert point.top1 == float(np.mean(pred == labels)), point
        if what == "acc_bits":
            stats = run.layers[point.layer]
            assert point.overflow_rate == stats.overflow_count / stats.elements, point
    changed_logits = [p for p in result.points if p.sqnr_db != math.inf]
    assert changed_logits, "the sampled widths must change some logits for the check to mean anything"
    if what == "acc_bits":
        assert any(0 < p.overflow_rate < 1 for p in result.points)


def test_jobs_do_not_change_the_result(tiny: Path) -> None:
    bundle = load_bundle(tiny)
    codes = bundle.reference.input_codes
    for what, widths in (("w_bits", [2, 3]), ("a_bits", [2, 3]), ("acc_bits", [4, 6, 40])):
        serial = sweep_bundle(bundle, what, widths, codes, labels=bundle.reference.labels, jobs=1)
        parallel = sweep_bundle(bundle, what, widths, codes, labels=bundle.reference.labels, jobs=3)
        assert parallel.points == serial.points and parallel.baseline == serial.baseline, what
    with pytest.raises(UserError, match="--jobs"):
        sweep_bundle(bundle, "w_bits", [2], codes, jobs=0)


def test_sweep_points_and_minimum_widths(tiny: Path) -> None:
    bundle = load_bundle(tiny)
    codes = bundle.reference.input_codes
    result = sweep_bundle(bundle, "w_bits", [2, 3, 4], codes, labels=bundle.reference.labels)
    assert len(result.points) == 3 * 3
    for p in result.points:
        if not p.changed:
            assert p.sqnr_db == math.inf and p.agreement == result.baseline["agreement"]
    conv2 = [p for p in result.points if p.layer == "conv2"]
    assert not any(p.changed for p in conv2)  # ternary weights already fit 2 bits
    acc = sweep_bundle(bundle, "acc_bits", [4, 8, 31 - 1], codes)
    rates = {(p.layer, p.bits): p.overflow_rate for p in acc.points}
    assert rates[("conv1", 4)] > 0 and rates[("conv1", 30)] == 0
    with pytest.raises(UserError, match="--what"):
        sweep_bundle(bundle, "x_bits", [2], codes)


def test_min_bits_is_the_start_of_the_safe_tail() -> None:
    result = SweepResult("w_bits", [2, 3, 4, 5], ["a", "b", "c"], [], 0.9)
    for layer, agreements in {
        "a": [0.5, 0.95, 0.8, 1.0],
        "b": [0.95, 0.95, 1, 1],
        "c": [0, 0, 0, 0.5],
    }.items():
        for bits, value in zip([2, 3, 4, 5], agreements, strict=True):
            result.points.append(SweepPoint(layer, bits, True, 0.0, value, None))
    assert result.min_bits() == {"a": 5, "b": 2, "c": None}


def test_parse_range_and_sqnr() -> None:
    assert parse_range("2..5") == [2, 3, 4, 5]
    assert parse_range("8,4,6") == [4, 6, 8]
    with pytest.raises(UserError, match="LO..HI"):
        parse_range("two")
    assert sqnr_db(np.array([3, 4]), np.array([3, 4])) == math.inf
    assert sqnr_db(np.array([10, 0]), np.array([11, 0])) == pytest.approx(20.0)


def test_cli_sweep(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "sweep",
                str(tiny),
                "--what",
                "a_bits",
                "--range",
                "2..4",
                "--images",
                "12",
                "--report",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    doc = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in doc["layers"]] == ["conv1", "conv2", "fc"]
    assert "min_a_bits" in doc["layers"][0]
    bundle = load_bundle(tiny)
    for row in doc["layers"]:  # each layer's input width in the bundle, beside its minimum
        node = bundle.node(row["name"])
        assert row["bundle_a_bits"] == bundle.tensors[node.input].fmt.bits
    assert (out / "sensitivity_a_bits_agreement.png").is_file() and (out / "sweep.csv").is_file()
    assert (
        main(
            [
                "sweep",
                str(tiny),
                "--what",
                "acc_bits",
                "--range",
                "4..6",
                "--images",
                "4",
                "--report",
                str(tmp_path / "acc"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "acc" / "sensitivity_acc_bits_overflow.png").is_file()
    assert (
        main(["sweep", str(tiny), "--what", "w_bits", "--range", "x", "--report", str(tmp_path / "bad")]) == 2
    )


def test_cli_sweep_saturate_on_workers(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sat"
    args = ["sweep", str(tiny), "--what", "acc_bits", "--range", "4..6", "--images", "8", "--no-progress"]
    assert main([*args, "--overflow", "saturate", "--jobs", "2", "--report", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["meta"]["overflow"] == "saturate" and any("saturate" in n for n in doc["notes"])
    rows = (out / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("layer,what,bits,") and len(rows) == 1 + 3 * 3
    # no temporary files left (the marker naming the kind of output is not one)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [MARKER]
    with pytest.raises(SystemExit) as exit_:  # argparse refuses the flag's value: usage, status 2
        main([*args, "--jobs", "0", "--report", str(tmp_path / "bad")])
    assert exit_.value.code == 2
    assert "--jobs" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_narrow_weights_is_symmetric_on_the_odd_dorefa_lattice() -> None:
    # DoReFa 4-bit codes are the odd integers in [-15, 15]; dropping one bit makes every code a
    # tie, so round-half-up alone would bias them all by +1/2 step. Derivation of the golden:
    # 4 bits -> qmax 7, shift 1 (15 >> 1 = 7 fits); |w| rounded half up: 1->1, 3->2, ..., 13->7,
    # 15->8 clamped to 7; sign reapplied; shifted back by 1.
    odd = np.arange(-15, 16, 2, dtype=np.int64).reshape(1, -1)
    narrowed = narrow_weights(odd, 4)
    assert np.array_equal(narrowed, -narrow_weights(-odd, 4))
    expected = np.array([-7, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 7]) * 2
    assert np.array_equal(narrowed[0], expected)
    assert np.all(np.diff(narrowed[0]) >= 0)


def test_act_bits_points_equal_the_whole_rewritten_bundle(resnet: Bundle) -> None:
    # an activation tensor narrowed for every reader (the residual add and the next block's convs
    # included), re-run from its first reader on two workers, equals the rewritten bundle run whole
    from hwsim.sweep import activation_tensors, narrow_tensor

    codes = resnet.reference.input_codes
    tensors = activation_tensors(resnet)
    assert tensors[0] == resnet.meta.input_tensor and resnet.meta.output not in tensors
    sampled = [tensors[0], tensors[3], tensors[-1]]
    result = sweep_bundle(resnet, "act_bits", [2, 5], codes, layers=sampled, jobs=2)
    base = emulate(resnet, codes, EmulatorConfig(), keep=False).logits
    for point in result.points:
        whole = narrow_tensor(resnet, point.layer, point.bits)
        assert whole is not None and point.changed
        readers = [n for n in whole.nodes if f"{point.layer}@a{point.bits}.up" in n.reads]
        assert len(readers) == sum(point.layer in n.reads for n in resnet.nodes)
        logits = emulate(whole, codes, EmulatorConfig(), keep=False).logits
        assert point.sqnr_db == sqnr_db(base, logits), point
        assert point.agreement == float(np.mean(np.argmax(logits, 1) == np.argmax(base, 1))), point
    assert any(p.sqnr_db != math.inf for p in result.points)
