"""hwsim.emulator: integer-exact against an independent Python-int interpreter, literal goldens,
batch-size invariance, the fast path == the int64-only path, per-layer accumulators, and runs
started mid-graph (emulate_from) == whole runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsim.bundle import AvgPoolSumNode, Bundle, Conv2dNode, LinearNode, RequantNode, load_bundle
from hwsim.bundle.synthetic import builder, fmt, random_resnet20_bundle, tiny_bundle, tiny_inputs
from hwsim.emulator import EmulatorConfig, _Runner, emulate, emulate_from, live_tensors
from hwsim.errors import UserError


def python_ints_reference(
    bundle: Bundle, image: np.ndarray, acc_bits: int, mode: str, per_layer: dict[str, int] | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """The contract of docs/export-format.md for one image, element by element in Python ints.

    Written from the spec, independent of hwsim.gemm / hwsim.fixed: MACs over ascending
    k = c*kh*kw + i*kw + j with one narrowing per product, requantizers rounding half up with
    floor division, sign(+1 at 0), integer average-pool sums. Also returns the overflow events:
    wrap: exact sums out of range; saturate: outputs where a clamp happened. ``per_layer`` gives
    some layers another accumulator width.
    """
    events = 0
    vals: dict[str, np.ndarray] = {bundle.meta.input_tensor: image.astype(object)}

    def mac(products: list[int], layer: str) -> int:
        nonlocal events
        bits = (per_layer or {}).get(layer, acc_bits)
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if mode == "wrap":
            exact = sum(products)
            events += not lo <= exact <= hi
            return (exact - lo) % (2**bits) + lo
        acc, clamped = 0, False
        for p in products:
            t = acc + p
            acc = min(max(t, lo), hi)
            clamped |= acc != t
        events += clamped
        return acc

    for node in bundle.nodes:
        if isinstance(node, Conv2dNode):
            x = vals[node.input]
            c_in, h, w = x.shape
            wt = node.weight
            c_out, cg, kh, kw = wt.shape
            (sh, sw), (ph, pw) = node.stride, node.padding
            ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            out = np.empty((c_out, ho, wo), dtype=object)
            per_group = c_out // node.groups
            for co in range(c_out):
                g = co // per_group
                for oh in range(ho):
                    for ow in range(wo):
                        prods = []
                        for c in range(cg):
                            for i in range(kh):
                                for j in range(kw):
                                    r, s = oh * sh + i - ph, ow * sw + j - pw
                                    xv = int(x[g * cg + c, r, s]) if 0 <= r < h and 0 <= s < w else 0
                                    prods.append(xv * int(wt[co, c, i, j]))
                        out[co, oh, ow] = mac(prods, node.name)
            vals[node.output] = out
        elif isinstance(node, LinearNode):
            x = vals[node.input]
            vals[node.output] = np.array(
                [
                    mac([int(x[f]) * int(node.weight[n, f]) for f in range(x.shape[0])], node.name)
                    for n in range(node.weight.shape[0])
                ],
                dtype=object,
            )
        elif isinstance(node, RequantNode):
            shape = vals[node.inputs[0].tensor].shape
            out_fmt = bundle.tensors[node.output].fmt
            out = np.empty(shape, dtype=object)
            for idx in np.ndindex(*shape):
                c = idx[0]
                total = 0
                for item in node.inputs:
                    b = int(item.bias[c]) if item.bias is not None else 0
                    total += (int(vals[item.tensor][idx]) + b) * int(item.multiplier[c])
                n = int(node.shift[c])
                v = (total + (2 ** (n - 1) if n else 0)) // 2**n
                out[idx] = (
                    (1 if v >= 0 else -1)
                    if node.function == "sign"
                    else min(max(v, out_fmt.min), out_fmt.max)
                )
            vals[node.output] = out
        elif isinstance(node, AvgPoolSumNode):
            x = vals[node.input]
            vals[node.output] = np.array(
                [sum(int(v) for v in x[c].reshape(-1)) for c in range(x.shape[0])], dtype=object
            )
    return vals, events


@pytest.mark.parametrize(
    "acc_bits, mode",
    [(32, "wrap"), (32, "saturate"), (9, "wrap"), (9, "saturate"), (6, "wrap"), (6, "saturate")],
)
def test_tiny_net_equals_python_ints(tmp_path: Path, acc_bits: int, mode: str) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny", seed=3))
    images = tiny_inputs(12, seed=3)
    run = emulate(bundle, images, EmulatorConfig(acc_bits=acc_bits, overflow=mode), batch_size=5)
    events = 0
    for n in range(images.shape[0]):
        ref, image_events = python_ints_reference(bundle, images[n], acc_bits, mode)
        events += image_events
        for name, expected in ref.items():
            assert run.tensors[name][n].tolist() == expected.tolist(), (name, n)
    assert run.logits.tolist() == run.tensors["logits"].tolist()
    assert run.predictions.tolist() == np.argmax(run.tensors["logits"], axis=1).tolist()
    assert sum(s.overflow_count for s in run.layers.values()) == events
    if acc_bits == 32:
        assert all(s.overflow_count == 0 for s in run.layers.values())
    else:
        assert run.layers["conv1"].overflow_count > 0  # the small accumulator does overflow


def test_tiny_net_exercises_ties_negatives_and_saturation(tmp_path: Path) -> None:
    # The tiny net is only a good witness if the cases the brief names actually occur in it.
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny", seed=3))
    images = tiny_inputs(12, seed=3)
    run = emulate(bundle, images)
    conv1, act1 = run.tensors["conv1.acc"], run.tensors["act1"]
    m, b, n = (np.array([1, 3, -2]), np.array([1, -2, 0]), np.array([1, 2, 0]))
    pre = (conv1 + b[:, None, None]) * m[:, None, None]
    half = np.array([2 ** (v - 1) if v else 0 for v in n])
    ties = (pre % (2**n)[:, None, None] == half[:, None, None]) & (n[:, None, None] > 0)
    assert np.any(ties & (pre < 0)) and np.any(ties & (pre > 0))  # negative and positive ties
    assert np.any(act1 == 7) and np.any(act1 == -8)  # saturated both ways
    assert set(np.unique(run.tensors["sgn"]).tolist()) == {-1, 1}


def test_literal_golden_requantizer(tmp_path: Path) -> None:
    b = builder((1, 2, 2), fmt(8, True), 0.5, model="golden")
    b.requant("y", [("input", np.array([3]), None)], np.array([2]), fmt(3, True), 0.375)
    b.requant(
        "s", [("input", np.array([3]), None)], np.array([2]), fmt(2, True, "binary"), 1.0, function="sign"
    )
    b.avgpool_sum("pool", "y")
    bundle = load_bundle(b.save(tmp_path / "golden", "pool"))
    run = emulate(bundle, np.array([[[[-6, -2], [0, 5]]]]))
    # Derivation by hand: 3x = [-18, -6, 0, 15]; round_shift(v, 2) = floor((v + 2) / 4):
    #   -18 -> -16/4 = -4 (-4.5 rounds half up to -4), -6 -> -4/4 = -1 (-1.5 -> -1), 0 -> 0,
    #   15 -> floor(17/4) = 4 (3.75),
    #   then clamp to int3 [-4, 3]: [-4, -1, 0, 3]; sign of the rounded sum: [-1, -1, +1 (at 0), +1];
    #   pool = -4 - 1 + 0 + 3 = -2.
    assert run.tensors["y"].reshape(-1).tolist() == [-4, -1, 0, 3]
    assert run.tensors["s"].reshape(-1).tolist() == [-1, -1, 1, 1]
    assert run.logits.tolist() == [[-2]]


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    root = tmp_path_factory.mktemp("resnet")
    return {
        f"{w}x{a}": load_bundle(random_resnet20_bundle(root / f"{w}x{a}", w, a, seed=w + a))
        for w, a in ((4, 4), (8, 8), (1, 2))
    }


SATURATE = EmulatorConfig(acc_bits=13, overflow="saturate")
CASES = [
    (w, c) for w in ("4x4", "8x8", "1x2") for c in (EmulatorConfig(), EmulatorConfig(acc_bits=13), SATURATE)
]


@pytest.mark.parametrize(
    "widths, config",
    [pytest.param(w, c, marks=pytest.mark.slow) if (w, c) == ("8x8", SATURATE) else (w, c) for w, c in CASES],
    ids=[f"{w}-{c.acc_bits}-{c.overflow}" for w, c in CASES],
)
def test_fast_path_equals_int64_path_and_batching(
    resnet: dict[str, Bundle], widths: str, config: EmulatorConfig
) -> None:
    bundle = resnet[widths]
    codes = np.random.default_rng(0).integers(-127, 128, size=(3, 3, 32, 32))
    fast = emulate(bundle, codes, config, batch_size=256)
    slow = emulate(bundle, codes, config, batch_size=2, int64_only=True)
    single = emulate(bundle, codes, config, batch_size=1)
    for name, value in fast.tensors.items():
        assert value.dtype == np.int64
        assert np.array_equal(value, slow.tensors[name]), name
        assert np.array_equal(value, single.tensors[name]), name
    for name, stats in fast.layers.items():
        assert vars(stats) == vars(slow.layers[name]) == vars(single.layers[name]), name
    keepless = emulate(bundle, codes, config, keep=False, batch_size=3)
    assert keepless.tensors == {} and np.array_equal(keepless.logits, fast.logits)


def test_layer_stats_worst_case_bits_bound_the_observed(resnet: dict[str, Bundle]) -> None:
    codes = np.random.default_rng(1).integers(-127, 128, size=(4, 3, 32, 32))
    run = emulate(resnet["4x4"], codes)
    for stats in run.layers.values():
        assert stats.elements > 0 and stats.overflow_count == 0
        assert stats.min_safe_acc_bits_observed <= stats.min_safe_acc_bits_worst <= 32
        assert stats.peak_acc_abs == max(-stats.min_acc, stats.max_acc)
    assert run.layers["conv1.conv"].macs == 16 * 32 * 32 * 27


def test_bad_config_and_inputs_are_user_errors(tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny"))
    with pytest.raises(UserError, match="1..64"):
        EmulatorConfig(acc_bits=0)
    with pytest.raises(UserError, match="overflow"):
        EmulatorConfig(overflow="clip")
    with pytest.raises(UserError, match="shape"):
        emulate(bundle, np.zeros((1, 3, 4, 4), dtype=np.int64))
    with pytest.raises(UserError, match="does not fit|span"):
        emulate(bundle, np.full((1, 2, 4, 4), 9))


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_per_layer_accumulators_equal_python_ints(tmp_path: Path, mode: str) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny", seed=3))
    images = tiny_inputs(8, seed=3)
    per_layer = {"conv1": 6, "fc": 7}
    config = EmulatorConfig(acc_bits=12, overflow=mode, acc_bits_per_layer=per_layer)
    run = emulate(bundle, images, config, batch_size=3)
    events = 0
    for n in range(images.shape[0]):
        ref, image_events = python_ints_reference(bundle, images[n], 12, mode, per_layer)
        events += image_events
        for name, expected in ref.items():
            assert run.tensors[name][n].tolist() == expected.tolist(), (name, n)
    assert sum(s.overflow_count for s in run.layers.values()) == events
    assert run.layers["conv1"].overflow_count > 0 and run.layers["conv2"].overflow_count == 0
    assert {k: s.acc_bits for k, s in run.layers.items()} == {"conv1": 6, "conv2": 12, "fc": 7}
    assert run.acc_bits == 12


def test_per_layer_config_is_frozen_pairs_and_checked(tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny"))
    config = EmulatorConfig(acc_bits_per_layer={"fc": 9, "conv1": 8})
    assert config.acc_bits_per_layer == (("conv1", 8), ("fc", 9))
    assert config == EmulatorConfig(acc_bits_per_layer=[("fc", 9), ("conv1", 8)])
    assert hash(config) == hash(EmulatorConfig(acc_bits_per_layer=(("conv1", 8), ("fc", 9))))
    assert {k: f.bits for k, f in config.layer_acc_formats(bundle).items()} == {
        "conv1": 8,
        "conv2": 32,
        "fc": 9,
    }
    with pytest.raises(UserError, match="no MAC layer named 'conv3'.*conv1, conv2, fc"):
        emulate(bundle, tiny_inputs(1), EmulatorConfig(acc_bits_per_layer={"conv3": 8}))
    with pytest.raises(UserError, match=r"acc_bits_per_layer\['conv1'\]=0 is outside 1..64"):
        EmulatorConfig(acc_bits_per_layer={"conv1": 0})
    with pytest.raises(UserError, match="more than once"):
        EmulatorConfig(acc_bits_per_layer=[("conv1", 8), ("conv1", 9)])
    with pytest.raises(UserError, match="mapping from MAC layer name to bits"):
        EmulatorConfig(acc_bits_per_layer="conv1")  # type: ignore[arg-type]


@pytest.mark.parametrize("config", [EmulatorConfig(), EmulatorConfig(acc_bits=13, overflow="saturate")])
def test_emulate_from_any_node_equals_the_whole_run(
    resnet: dict[str, Bundle], config: EmulatorConfig
) -> None:
    bundle = resnet["4x4"]
    codes = np.random.default_rng(2).integers(-127, 128, size=(3, 3, 32, 32))
    whole = emulate(bundle, codes, config)
    for node in bundle.nodes:
        given = {t: whole.tensors[t].astype(np.int32) for t in live_tensors(bundle, node.name)}
        part = emulate_from(bundle, node.name, given, config, keep=True)
        assert np.array_equal(part.logits, whole.logits), node.name
        assert set(part.tensors) == set(given) | {n.output for n in bundle.nodes[bundle.nodes.index(node) :]}
        for name, value in part.tensors.items():
            assert np.array_equal(value, whole.tensors[name]), (node.name, name)
        for name, stats in part.layers.items():
            assert vars(stats) == vars(whole.layers[name]), (node.name, name)
    # in the middle of a block: the block's input is live for the residual add
    assert live_tensors(bundle, "layer1.1.relu2.conv") == ("layer1.1.relu1", "layer1.0.relu2")
    assert live_tensors(bundle, "conv1.conv") == ("input",)


def test_emulate_from_rejects_wrong_tensors(resnet: dict[str, Bundle]) -> None:
    bundle = resnet["4x4"]
    codes = np.random.default_rng(3).integers(-127, 128, size=(2, 3, 32, 32))
    whole = emulate(bundle, codes)
    live = {t: whole.tensors[t] for t in live_tensors(bundle, "layer1.1.relu2.conv")}
    with pytest.raises(UserError, match="missing tensors layer1.0.relu2"):
        emulate_from(bundle, "layer1.1.relu2.conv", {"layer1.1.relu1": live["layer1.1.relu1"]})
    with pytest.raises(UserError, match="tensors input are not read"):
        emulate_from(bundle, "layer1.1.relu2.conv", {**live, "input": codes})
    with pytest.raises(UserError, match=r"tensor 'layer1.0.relu2'.*expected integers \[2, 16, 32, 32\]"):
        emulate_from(bundle, "layer1.1.relu2.conv", {**live, "layer1.0.relu2": live["layer1.0.relu2"][:1]})
    with pytest.raises(UserError, match=r"codes of tensor 'layer1.1.relu1': codes span \[16, 31\] but uint4"):
        emulate_from(bundle, "layer1.1.relu2.conv", {**live, "layer1.1.relu1": live["layer1.1.relu1"] + 16})
    with pytest.raises(UserError, match="no node named 'nope'"):
        emulate_from(bundle, "nope", live)
    shortcut = {t: whole.tensors[t] for t in live_tensors(bundle, "layer2.0.relu2.conv")}
    assert "layer2.0.shortcut.acc" in shortcut
    with pytest.raises(UserError, match="accumulator 'layer2.0.shortcut.acc'.*does not fit int5"):
        emulate_from(
            bundle,
            "layer2.0.relu2.conv",
            {**shortcut, "layer2.0.shortcut.acc": shortcut["layer2.0.shortcut.acc"] * 0 + 16},
            EmulatorConfig(acc_bits_per_layer={"layer2.0.shortcut": 5}),
        )
    # within the accumulator, but beyond what 16 channels of 4-bit codes times 4-bit weights can sum
    bound = 15 * int(np.abs(bundle.node("layer2.0.shortcut").weight).sum(axis=(1, 2, 3)).max())
    with pytest.raises(
        UserError, match=f"accumulator 'layer2.0.shortcut.acc' holds {bound + 1} .*\\({bound}\\)"
    ):
        emulate_from(
            bundle,
            "layer2.0.relu2.conv",
            {**shortcut, "layer2.0.shortcut.acc": shortcut["layer2.0.shortcut.acc"] * 0 + bound + 1},
        )


def test_keep_some_tensors_and_steps_of_a_few_images(resnet: dict[str, Bundle]) -> None:
    bundle = resnet["4x4"]
    tile = _Runner(bundle, EmulatorConfig()).tile
    assert 1 < tile < 20  # so 20 images take more than one step
    codes = np.random.default_rng(4).integers(-127, 128, size=(20, 3, 32, 32))
    steps = emulate(bundle, codes, keep=["layer1.0.relu1", "logits"])
    assert set(steps.tensors) == {"layer1.0.relu1", "logits"}
    single = emulate(bundle, codes, batch_size=1)
    assert np.array_equal(steps.tensors["layer1.0.relu1"], single.tensors["layer1.0.relu1"])
    assert np.array_equal(steps.logits, single.logits)
    for name, stats in steps.layers.items():
        assert vars(stats) == vars(single.layers[name]), name
    with pytest.raises(UserError, match="keep: tensor 'nope'"):
        emulate(bundle, codes[:1], keep=["nope"])
