"""The ``maxpool`` node: format (graph.yaml v2), loader rules, emulator (both paths) against a plain-loop
reference, and a small network through every consumer: save/load, simulate, sweep, compare, the CLI."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hwsim.bundle import (
    BundleBuilder,
    BundleError,
    CodeFormat,
    MaxPoolNode,
    load_bundle,
    save_bundle,
    write_bundle_files,
)
from hwsim.bundle.schema import NODE_KEYS, NODE_TYPES, required_and_optional
from hwsim.bundle.synthetic import builder, fmt, reference_from_emulator, with_reference
from hwsim.cli import main as hwsim_main
from hwsim.compare import compare_bundle
from hwsim.dataflows import DATAFLOWS
from hwsim.emulator import emulate, emulate_from, live_tensors
from hwsim.hwconfig import ArrayConfig, BufferConfig, HardwareConfig
from hwsim.mapping import layer_from_node, pool_from_node
from hwsim.memory import pool_memory
from hwsim.simulate import simulate_bundle, vector_maxpool
from hwsim.sweep import sweep_bundle
from hwsim.timing import pool_timing

# ----------------------------------------------------------------------------------------------
# The independent reference: Python ints, one window at a time, padding as -inf
# ----------------------------------------------------------------------------------------------


def reference_maxpool(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """``x [N, C, H, W]`` -> ``[N, C, H_out, W_out]`` by plain loops; padded positions are -inf."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, c, ho, wo), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for oy in range(ho):
                for ox in range(wo):
                    best: float = -math.inf
                    for i in range(kh):
                        for j in range(kw):
                            y, xx = oy * sh - ph + i, ox * sw - pw + j
                            value = int(x[b, ch, y, xx]) if 0 <= y < h and 0 <= xx < w else -math.inf
                            best = max(best, value)
                    assert best != -math.inf, "a window of padding only"
                    out[b, ch, oy, ox] = int(best)
    return out


def random_codes(code_fmt: CodeFormat, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if code_fmt.lattice == "binary":
        return rng.choice(np.array([-1, 1]), size=shape)
    if code_fmt.lattice == "ternary":
        return rng.choice(np.array([-1, 0, 1]), size=shape)
    return rng.integers(code_fmt.min, code_fmt.max, size=shape, endpoint=True)


def pool_net(
    code_fmt: CodeFormat,
    shape: tuple[int, int, int],
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    padding: int | tuple[int, int],
) -> Any:
    """input -> maxpool -> avgpool_sum -> logits (a requant of the sums' codes)."""
    b = builder(shape, code_fmt, 0.5, acc_bits=None, model="pool")
    p = b.maxpool("mp", "input", kernel, stride=stride, padding=padding)
    s = b.avgpool_sum("gap", p)
    c = shape[0]
    b.requant("logits", [(s, np.ones(c, dtype=np.int64), None)], np.full(c, 2), fmt(8, True), 1.0)
    return b.build("logits")


FORMATS = {
    "uint4": fmt(4, False),
    "int4": fmt(4, True),
    "int4_narrow": fmt(4, True, "narrow"),
    "binary": fmt(2, True, "binary"),
    "ternary": fmt(2, True, "ternary"),
    "int40": fmt(40, True),  # beyond float32: the fast path holds float64
    "int58": fmt(58, True),  # beyond float64: the fast path holds int64
}

# (input shape [C, H, W], kernel, stride (None: the kernel), padding)
GEOMETRIES = [
    ((3, 6, 6), 2, None, 0),
    ((2, 7, 5), 3, 2, 1),
    ((2, 5, 8), (2, 3), (1, 2), (1, 1)),
    ((1, 4, 4), 3, 1, 2),
    ((3, 6, 7), (3, 1), (2, 1), (1, 0)),
    ((2, 5, 5), 5, 1, 0),
    ((2, 3, 3), 1, 1, 0),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"{g[0]}-k{g[1]}-s{g[2]}-p{g[3]}" for g in GEOMETRIES])
@pytest.mark.parametrize("name", list(FORMATS))
def test_emulator_equals_the_loop_reference_on_both_paths(name: str, geometry: Any) -> None:
    shape, kernel, stride, padding = geometry
    code_fmt = FORMATS[name]
    bundle = pool_net(code_fmt, shape, kernel, stride, padding)
    node = bundle.node("mp")
    assert isinstance(node, MaxPoolNode)
    rng = np.random.default_rng(hash((name, str(geometry))) % 2**32)
    x = random_codes(code_fmt, (5, *shape), rng)
    if code_fmt.lattice in ("full", "narrow"):  # the extremes of the format, on the border too
        x[0, 0, 0, 0], x[0, 0, -1, -1] = code_fmt.min, code_fmt.max
    want = reference_maxpool(x, node.kernel, node.stride, node.padding)
    fast = emulate(bundle, x)
    slow = emulate(bundle, x, int64_only=True)
    one = emulate(bundle, x, batch_size=1)
    assert fast.tensors["mp"].shape == (5, *bundle.tensors["mp"].shape) == want.shape
    for run in (fast, slow, one):
        assert np.array_equal(run.tensors["mp"], want)
        assert np.array_equal(run.logits, fast.logits)
        assert set(run.layers) == set()  # no MAC node here, and a maxpool is not one
    assert code_fmt.violation(fast.tensors["mp"]) is None
    assert np.array_equal(vector_maxpool(x, node), want)  # the array model's own evaluation


def test_builder_defaults_and_derived_tensor() -> None:
    b = builder((3, 8, 6), fmt(4, False), 0.125)
    out = b.maxpool("mp", "input", 2)
    spec = b.spec(out)
    assert out == "mp" and spec.shape == (3, 4, 3) and spec.fmt == fmt(4, False) and spec.scale == 0.125
    node = b.nodes[-1]
    assert isinstance(node, MaxPoolNode)
    assert (node.kernel, node.stride, node.padding, node.reads) == ((2, 2), (2, 2), (0, 0), ("input",))
    out2 = b.maxpool("mp2", out, (3, 2), stride=(1, 2), padding=(1, 0), output="pooled")
    assert out2 == "pooled" and b.shape(out2) == (3, 4, 1)
    assert NODE_TYPES["maxpool"] is MaxPoolNode
    assert required_and_optional(NODE_KEYS["maxpool"], 2) == (
        {"name", "op", "input", "output", "kernel", "stride", "padding"},
        set(),
    )


# ----------------------------------------------------------------------------------------------
# A small network with maxpools, through every consumer
# ----------------------------------------------------------------------------------------------

IN_SHAPE = (2, 9, 8)


def net_builder(seed: int = 0) -> BundleBuilder:
    """conv1 3x3 p1 (2->4) -> act1 uint3 -> mp1 3x3 s2 p1 -> conv2 3x3 p1 (4->4) -> act2 int3 narrow
    -> mp2 (2x1, stride (1, 2)) -> sgn (sign of act2's pool) -> gap (avgpool_sum) -> fc (4->5) -> logits."""
    rng = np.random.default_rng(seed)
    b = builder(IN_SHAPE, fmt(4, True), 0.25, model="maxpool_net")
    a1 = b.conv2d("conv1", "input", rng.integers(-3, 4, size=(4, 2, 3, 3)), fmt(3, True, "narrow"), padding=1)
    act1 = b.requant("act1", [(a1, np.array([1, 2, 1, 3]), None)], np.array([3, 3, 2, 4]), fmt(3, False), 0.5)
    mp1 = b.maxpool("mp1", act1, 3, stride=2, padding=1)
    a2 = b.conv2d("conv2", mp1, rng.integers(-1, 2, size=(4, 4, 3, 3)), fmt(2, True, "ternary"), padding=1)
    act2 = b.requant(
        "act2", [(a2, np.array([1, 1, 2, 1]), None)], np.array([1, 1, 2, 1]), fmt(3, True, "narrow"), 0.5
    )
    mp2 = b.maxpool("mp2", act2, (2, 1), stride=(1, 2))
    ones = np.ones(4, dtype=np.int64)
    binary = fmt(2, True, "binary")
    sgn = b.requant("sgn", [(mp2, ones, np.array([0, 1, -1, 0]))], np.zeros(4), binary, 1.0, function="sign")
    gap = b.avgpool_sum("gap", sgn)
    af = b.linear("fc", gap, rng.integers(-3, 4, size=(5, 4)), fmt(3, True, "narrow"))
    b.requant("logits", [(af, np.array([3, 1, 2, 1, 2]), None)], np.array([2, 1, 1, 2, 2]), fmt(8, True), 0.1)
    return b


def net_inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-8, 8, size=(n, *IN_SHAPE))


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The network on disk, with a reference batch (the emulator's own codes, maxpool outputs included)."""
    bundle = net_builder().build("logits")
    ref = reference_from_emulator(bundle, net_inputs(6), labels=np.arange(6) % 5)
    return save_bundle(with_reference(bundle, ref), tmp_path_factory.mktemp("net") / "maxpool_net")


def test_network_loads_and_round_trips(net_dir: Path, tmp_path: Path) -> None:
    bundle = load_bundle(net_dir)
    graph = yaml.safe_load((net_dir / "graph.yaml").read_text())
    assert graph["format_version"] == 2
    mp1 = next(n for n in graph["nodes"] if n["name"] == "mp1")
    assert mp1 == {"name": "mp1", "op": "maxpool", "input": "act1", "output": "mp1",
                   "kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]}  # fmt: skip
    assert bundle.tensors["mp1"].shape == (4, 5, 4) and bundle.tensors["mp2"].shape == (4, 4, 2)
    assert bundle.tensors["mp2"].fmt == bundle.tensors["act2"].fmt and bundle.tensors["mp2"].scale == 0.5
    assert [n.name for n in bundle.mac_nodes] == ["conv1", "conv2", "fc"]
    assert bundle.macs("mp1") == 0 and bundle.total_macs == sum(bundle.macs(n.name) for n in bundle.mac_nodes)
    again = load_bundle(save_bundle(bundle, tmp_path / "copy"))
    assert again.tensors == bundle.tensors
    for a, b in zip(again.nodes, bundle.nodes, strict=True):
        assert type(a) is type(b) and a.name == b.name
        if isinstance(a, MaxPoolNode):
            assert (a.input, a.output, a.kernel, a.stride, a.padding) == (
                b.input, b.output, b.kernel, b.stride, b.padding)  # fmt: skip
    assert (tmp_path / "copy" / "graph.yaml").read_text() == (net_dir / "graph.yaml").read_text()
    assert bundle.reference is not None and "mp1" in bundle.reference.codes


def test_network_emulates_identically_on_both_paths_and_from_any_node(net_dir: Path) -> None:
    bundle = load_bundle(net_dir)
    x = net_inputs(7, seed=3)
    fast, slow = emulate(bundle, x), emulate(bundle, x, int64_only=True, batch_size=2)
    assert set(fast.tensors) == set(slow.tensors) == set(bundle.tensors)
    for name in fast.tensors:
        assert np.array_equal(fast.tensors[name], slow.tensors[name]), name
    assert list(fast.layers) == ["conv1", "conv2", "fc"]  # the MAC layers only
    want = reference_maxpool(fast.tensors["act1"], (3, 3), (2, 2), (1, 1))
    assert np.array_equal(fast.tensors["mp1"], want)
    for node in ("mp1", "conv2", "mp2", "sgn"):
        need = live_tensors(bundle, node)
        part = emulate_from(bundle, node, {t: fast.tensors[t] for t in need}, keep=True)
        assert np.array_equal(part.logits, fast.logits), node
    assert live_tensors(bundle, "mp2") == ("act2",)


@pytest.mark.parametrize("dataflow", list(DATAFLOWS))
def test_network_simulates_on_every_dataflow(net_dir: Path, dataflow: str) -> None:
    bundle = load_bundle(net_dir)
    hw = HardwareConfig(array=ArrayConfig(4, 3, dataflow))
    sim = simulate_bundle(bundle, hw, net_inputs(3))
    names = [r.name for r in sim.rows]
    assert names == ["conv1", "mp1", "conv2", "mp2", "fc"]
    assert sim.totals["array_value_mismatches"] == 0 and sim.totals["overflow_count"] == 0
    assert sim.totals["cycles"] == sum(r.cycles for r in sim.rows)
    assert sim.totals["dram_bytes"] == sum(r.dram_bytes for r in sim.rows)
    assert sim.totals["macs"] == bundle.total_macs
    for row in sim.rows:
        if row.type != "maxpool":
            continue
        node = bundle.node(row.name)
        c, ho, wo = bundle.tensors[node.output].shape
        kh, kw = node.kernel
        assert row.macs == 0 and row.array_value_mismatches == 0 and row.acc_bits is None
        assert row.compute_cycles == row.array_cycles == math.ceil(c * ho * wo / 3) * kh * kw
        assert row.preload_cycles == row.fill_drain_cycles == 0
        assert row.cycles == row.array_cycles + row.stall_cycles >= row.array_cycles
        bits = bundle.tensors[node.input].fmt.bits
        cin, h, w = bundle.tensors[node.input].shape
        assert row.dram_read_bytes == math.ceil(cin * h * w * bits / 8)
        assert row.dram_write_bytes == math.ceil(c * ho * wo * bits / 8)
        assert row.weight_bytes == row.psum_bytes == 0 and row.utilization == 0.0
    # batch scales the vector unit's work like the array's
    batched = simulate_bundle(bundle, hw, net_inputs(1), batch=4)
    mp1 = next(r for r in batched.rows if r.name == "mp1")
    assert mp1.compute_cycles == math.ceil(4 * 5 * 4 * 4 / 3) * 9


def test_vector_unit_model_in_isolation(net_dir: Path) -> None:
    bundle = load_bundle(net_dir)
    node = bundle.node("mp1")
    assert isinstance(node, MaxPoolNode)
    pool = pool_from_node(node, bundle)
    assert (pool.c, pool.h, pool.w, pool.h_out, pool.w_out, pool.window) == (4, 9, 8, 5, 4, 9)
    hw = HardwareConfig(array=ArrayConfig(16, 16, "ws"))
    timing = pool_timing(pool, hw)
    assert timing.total == math.ceil(80 / 16) * 9 and timing.folds == 5 and timing.utilization == 0.0
    mem = pool_memory(pool, hw, timing.total, a_bits=3)
    assert (mem.dram_read_bytes, mem.dram_write_bytes) == (
        math.ceil(4 * 9 * 8 * 3 / 8),
        math.ceil(80 * 3 / 8),
    )
    assert mem.buffer_read_bytes == math.ceil(80 * 9 * 3 / 8) and mem.buffer_write_bytes == mem.ofmap_bytes
    assert (
        mem.total_cycles == mem.prologue_cycles + timing.total + mem.epilogue_cycles
        and mem.bound == "compute"
    )
    # buffers holding a quarter of the input: passes over output rows, the later ones overlapped
    small = HardwareConfig(array=ArrayConfig(16, 16, "ws"), buffers=BufferConfig(0.0625, 1, 1))
    tiled = pool_memory(pool, small, timing.total, a_bits=3)
    assert tiled.m_tiles == 4 and tiled.dram_bytes == mem.dram_bytes
    slow = replace(small, dram_bytes_per_cycle=0.01)
    assert pool_memory(pool, slow, timing.total, a_bits=3).bound == "memory"
    with pytest.raises(Exception, match="vector unit"):
        layer_from_node(node, bundle)


def test_network_sweeps(net_dir: Path) -> None:
    bundle = load_bundle(net_dir)
    x = net_inputs(4)
    for what, width in (("acc_bits", 6), ("w_bits", 2), ("a_bits", 2)):
        result = sweep_bundle(bundle, what, [width], x)
        assert result.layers == ["conv1", "conv2", "fc"], what
        assert len(result.points) == 3 and all(0.0 <= p.agreement <= 1.0 for p in result.points)
    # conv2 reads mp1: its a_bits point inserts the narrowing requantizers after the maxpool
    again = sweep_bundle(bundle, "a_bits", [2], x, layers=["conv2"], jobs=2)
    assert again.points[0].agreement == next(
        p.agreement for p in sweep_bundle(bundle, "a_bits", [2], x).points if p.layer == "conv2"
    )


def test_network_compares_against_a_reference(net_dir: Path) -> None:
    bundle = load_bundle(net_dir)
    comparison = compare_bundle(bundle)
    rows = comparison.layers
    assert [r.name for r in rows] == ["act1", "act2", "sgn", "logits"]  # the requantizers
    t = comparison.totals
    assert t["layers_exact"] == t["layers_compared"] == 4 and t["top1_agreement"] == 1.0
    assert t["first_divergent_layer"] is None and t["isolated_max_abs_err_lsb"] == 0
    assert next(r for r in rows if r.name == "sgn").mac_nodes == ()
    assert next(r for r in rows if r.name == "act2").isolated_mismatch_rate == 0.0  # from mp1's codes


def test_cli_emulate_simulate_compare_and_vectors(
    net_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hwsim_main(["emulate", str(net_dir)]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "mp1" not in out  # the per-layer table lists MAC layers
    assert hwsim_main(["compare", str(net_dir), "--report", str(tmp_path / "cmp")]) == 0
    hw = Path(__file__).resolve().parents[2] / "configs" / "hw" / "ws_16x16.yaml"
    report = tmp_path / "sim"
    assert hwsim_main(["simulate", str(net_dir), "--hw", str(hw), "--images", "2", "--report", str(report),
                       "--no-progress"]) == 0  # fmt: skip
    data = json.loads((report / "report.json").read_text())
    assert [r["name"] for r in data["layers"]] == ["conv1", "mp1", "conv2", "mp2", "fc"]
    assert data["totals"]["array_value_mismatches"] == 0
    assert any("maxpool rows (mp1, mp2)" in n for n in data["notes"])
    for png in ("latency.png", "utilization.png", "overflow.png", "error.png", "roofline.png"):
        assert (report / png).is_file(), png
    capsys.readouterr()
    code = hwsim_main(
        ["vectors", str(net_dir), "--layer", "mp1", "--hw", str(hw), "--out", str(tmp_path / "v")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'mp1' is a maxpool node" in err and "Traceback" not in err
    assert hwsim_main(["vectors", str(net_dir), "--layer", "conv2", "--hw", str(hw), "--out",
                       str(tmp_path / "v2")]) == 0  # fmt: skip


def test_cli_demo_runs_a_bundle_with_maxpool(net_dir: Path, tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    save_bundle(load_bundle(net_dir), bundles / "maxpool_net")
    manifest = {
        "manifest_version": 1,
        "primary": "maxpool_net",
        "models": {"maxpool_net": {"title": "Max-pool net", "method": "random", "w_bits": 3, "a_bits": 3,
                                   "config": "none", "commands": ["test_maxpool"]}},
    }  # fmt: skip
    (bundles / "MANIFEST.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    out = tmp_path / "demo"
    fast = ["--sweep-images", "3", "--acc-widths", "6,10", "--precision-widths", "2,3", "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CIFAR10_DIR", raising=False)
        assert hwsim_main(["demo", "--bundles", str(bundles), "--out", str(out), "--jobs", "1", *fast]) == 0
    report = json.loads((out / "maxpool_net" / "report.json").read_text())
    t = report["totals"]
    assert t["array_value_mismatches@ws_16x16"] == 0 and t["array_value_mismatches@os_16x16"] == 0
    assert t["layers_exact"] == t["layers_compared"] == 4
    names = [r["name"] for r in report["layers"]]
    assert names == ["act1", "mp1", "act2", "mp2", "sgn", "logits"]  # in execution order
    assert t["latency_us@ws_16x16"] == pytest.approx(sum(r["latency_us"] or 0 for r in report["layers"]))
    mp1 = report["layers"][1]
    assert (
        mp1["type"] == "maxpool" and mp1["macs"] == 0 and mp1["cycles"] > 0 and mp1["mismatch_rate"] is None
    )
    assert mp1["latency_us@os_16x16"] > 0 and any("maxpool rows (mp1, mp2)" in n for n in report["notes"])


# ----------------------------------------------------------------------------------------------
# The loader's rules
# ----------------------------------------------------------------------------------------------


def net_node(graph: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in graph["nodes"] if n["name"] == name)


def broken(tmp_path: Path, mutate: Callable[[dict[str, Any], dict[str, np.ndarray]], None]) -> Path:
    graph, arrays, _ = net_builder().parts("logits")
    graph, arrays = copy.deepcopy(graph), {k: v.copy() for k, v in arrays.items()}
    mutate(graph, arrays)
    return write_bundle_files(tmp_path / "bad", graph, arrays)


def _set(mapping: dict[str, Any], key: str, value: Any) -> None:
    mapping[key] = value


def _version_1(graph: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    graph["format_version"] = 1
    for n in graph["nodes"]:
        n.pop("rounding", None)


REJECTED: list[tuple[str, Callable[[dict[str, Any], dict[str, np.ndarray]], None], str]] = [
    (
        "wrong output shape",
        lambda g, a: _set(g["tensors"]["mp1"], "shape", [4, 4, 4]),
        r"node 'mp1', field 'output': tensor 'mp1' has shape \[4, 4, 4\]; expected \[4, 5, 4\]",
    ),
    (
        "output of another format",
        lambda g, a: _set(g["tensors"]["mp1"], "format", {"bits": 4, "signed": False}),
        r"tensor 'mp1', field 'format': uint4 .* differs from the format uint3 .* of the input 'act1'",
    ),
    (
        "output of another lattice",
        lambda g, a: _set(g["tensors"]["mp2"], "format", {"bits": 3, "signed": True}),
        r"tensor 'mp2', field 'format': .* differs from the format .* of the input 'act2'",
    ),
    (
        "output of another scale",
        lambda g, a: _set(g["tensors"]["mp1"], "scale", 0.25),
        r"tensor 'mp1', field 'scale': 0.25 differs from the scale 0.5 of the input 'act1'; .*set the scale",
    ),
    (
        "padding equal to the kernel",
        lambda g, a: _set(net_node(g, "mp2"), "padding", [2, 0]),
        r"node 'mp2', field 'padding': \[2, 0\] is not smaller than the kernel \[2, 1\]",
    ),
    (
        "padding beyond the kernel",
        lambda g, a: _set(net_node(g, "mp1"), "padding", [1, 4]),
        r"node 'mp1', field 'padding': .*padding < kernel",
    ),
    (
        "negative padding",
        lambda g, a: _set(net_node(g, "mp1"), "padding", [-1, 0]),
        r"node 'mp1', field 'padding': got \[-1, 0\]; expected a list of two integers >= 0",
    ),
    (
        "stride 0",
        lambda g, a: _set(net_node(g, "mp1"), "stride", [0, 2]),
        r"node 'mp1', field 'stride': got \[0, 2\]; expected a list of two integers >= 1",
    ),
    (
        "kernel 0",
        lambda g, a: _set(net_node(g, "mp1"), "kernel", [3, 0]),
        r"node 'mp1', field 'kernel': got \[3, 0\]; expected a list of two integers >= 1",
    ),
    (
        "kernel larger than the padded input",
        lambda g, a: _set(net_node(g, "mp2"), "kernel", [12, 1]),
        r"node 'mp2', field 'kernel': the 12x1 kernel is larger than the padded 5x4 input",
    ),
    (
        "missing kernel",
        lambda g, a: net_node(g, "mp1").pop("kernel"),
        r"node 'mp1', field 'kernel': missing",
    ),
    (
        "accumulator input",
        lambda g, a: _set(net_node(g, "mp1"), "input", "conv1.acc"),
        r"node 'mp1', field 'input': tensor 'conv1.acc' is of kind 'acc'; expected kind codes",
    ),
    (
        "maxpool in a format_version 1 bundle",
        _version_1,
        r"node 'mp1', field 'op': op 'maxpool' does not exist in format_version 1; expected format_version "
        r">= 2 .*set format_version: 2",
    ),
]


@pytest.mark.parametrize("mutate, pattern", [(m, p) for _, m, p in REJECTED], ids=[c[0] for c in REJECTED])
def test_loader_rejects_with_exit_2(
    tmp_path: Path, mutate: Any, pattern: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load_bundle(broken(tmp_path, lambda g, a: None))  # the unmutated bundle loads
    path = broken(tmp_path, mutate)
    with pytest.raises(BundleError, match=pattern) as info:
        load_bundle(path)
    message = str(info.value)
    assert message.startswith(str(path / "graph.yaml")) and "; expected " in message
    assert hwsim_main(["emulate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path / "graph.yaml") in err and "Traceback" not in err


def test_version_1_without_maxpool_still_loads(tmp_path: Path) -> None:
    """The same network without its maxpools, as version 1: loads (and the maxpool keys are v2 only)."""
    b = builder((2, 4, 4), fmt(4, True), 0.25)
    s = b.avgpool_sum("gap", "input")
    b.requant("logits", [(s, np.ones(2, dtype=np.int64), None)], np.zeros(2), fmt(8, True), 1.0)
    graph, arrays, _ = b.parts("logits")
    _version_1(graph, arrays)
    assert load_bundle(write_bundle_files(tmp_path / "v1", graph, arrays)).meta.format_version == 1
    assert required_and_optional(NODE_KEYS["maxpool"], 1) == (set(), set())
