"""hwsim.bundle: the loader accepts the hand-built bundles, round-trips them, and rejects every broken rule
with a BundleError naming the file, node/tensor and field (and the CLI turns it into exit status 2)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwsim.bundle import (
    BundleError,
    CodeFormat,
    load_bundle,
    quantize_images,
    save_bundle,
    write_bundle_files,
)
from hwsim.bundle.graph import compact_int_dtype
from hwsim.bundle.synthetic import tiny_builder, tiny_bundle
from hwsim.cli import main as hwsim_main


def node(graph: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in graph["nodes"] if n["name"] == name)


def broken(tmp_path: Path, mutate: Callable[[dict[str, Any], dict[str, np.ndarray]], None]) -> Path:
    graph, arrays, _ = tiny_builder().parts("logits")
    graph, arrays = copy.deepcopy(graph), {k: v.copy() for k, v in arrays.items()}
    mutate(graph, arrays)
    return write_bundle_files(tmp_path / "bad", graph, arrays)


def test_tiny_bundle_loads_and_round_trips(tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny", reference_images=3))
    assert [n.name for n in bundle.nodes] == ["conv1", "act1", "conv2", "act2", "sgn", "pool", "fc", "logits"]
    assert bundle.macs("conv1") == 3 * 4 * 4 * 2 * 9 and bundle.macs("act1") == 0
    assert bundle.input_spec.shape == (2, 4, 4) and bundle.output_spec.shape == (4,)
    assert bundle.reference is not None and bundle.reference.images == 3
    again = load_bundle(save_bundle(bundle, tmp_path / "copy"))
    assert [n.name for n in again.nodes] == [n.name for n in bundle.nodes]
    assert again.tensors == bundle.tensors
    assert all(np.array_equal(again.consts[k], v) for k, v in bundle.consts.items())
    assert np.array_equal(again.reference.codes["logits"], bundle.reference.codes["logits"])


def test_reference_codes_are_stored_in_the_smallest_dtype(tmp_path: Path) -> None:
    """reference.npz holds codes compactly (docs/export-format.md), though the loader widens them to
    int64: a saved bundle's codes take the smallest integer dtype of their range, values unchanged."""
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny", reference_images=3))
    assert bundle.reference is not None and bundle.reference.input_codes.dtype == np.int64
    with np.load(save_bundle(bundle, tmp_path / "copy") / "reference.npz") as npz:
        assert npz["input_codes"].dtype == np.int8  # tiny_inputs span [-8, 7]
        assert np.array_equal(npz["input_codes"], bundle.reference.input_codes)
        for tensor, codes in bundle.reference.codes.items():
            stored = npz[f"codes/{tensor}"]
            assert stored.dtype == compact_int_dtype(int(codes.min()), int(codes.max())), tensor
            assert stored.dtype.itemsize < 8 and np.array_equal(stored, codes), tensor


def test_offset_loads_and_round_trips(tmp_path: Path) -> None:
    graph, arrays, _ = tiny_builder().parts("logits")
    node(graph, "act1")["offset"] = "act1.offset"
    arrays["act1.offset"] = np.array([-(2**62), 0, 2**62 - 1], dtype=np.int64)
    bundle = load_bundle(write_bundle_files(tmp_path / "b", graph, arrays))
    act1 = bundle.node("act1")
    assert act1.offset is not None and act1.offset.dtype == np.int64
    assert act1.offset.tolist() == [-(2**62), 0, 2**62 - 1] and act1.offset_key == "act1.offset"
    assert bundle.node("act2").offset is None
    again = load_bundle(save_bundle(bundle, tmp_path / "copy"))
    assert np.array_equal(again.node("act1").offset, act1.offset) and again.node("act2").offset is None


CASES: list[tuple[str, Callable[[dict[str, Any], dict[str, np.ndarray]], None], str]] = [
    ("missing tensors.npz key", lambda g, a: a.pop("conv1.weight"), r"node 'conv1', field 'weight'.*not in"),
    ("missing graph key", lambda g, a: g.pop("acc_bits"), r"field 'acc_bits': missing"),
    ("missing node field", lambda g, a: node(g, "conv2").pop("groups"), r"node 'conv2', field 'groups'"),
    (
        "wrong weight shape",
        lambda g, a: a.__setitem__("conv1.weight", np.zeros((3, 2, 3, 2), np.int64)),
        r"node 'conv1', field 'weight'|node 'conv1', field 'output'",
    ),
    (
        "float weights",
        lambda g, a: a.__setitem__("conv1.weight", a["conv1.weight"].astype(np.float32)),
        r"node 'conv1', field 'weight': dtype float32",
    ),
    (
        "weight code outside the lattice",
        lambda g, a: a["conv1.weight"].__setitem__((0, 0, 0, 0), -8),
        r"node 'conv1', field 'weight': codes span \[-8, .*narrow",
    ),
    (
        "ternary weight out of {-1,0,1}",
        lambda g, a: a["conv2.weight"].__setitem__((0, 0, 0, 0), 2),
        r"node 'conv2', field 'weight'",
    ),
    ("shift out of 0..62", lambda g, a: a["act1.shift"].__setitem__(0, 63), r"field 'shift': value 63"),
    ("negative shift", lambda g, a: a["act1.shift"].__setitem__(0, -1), r"field 'shift': value -1"),
    (
        "multiplier beyond mult_bits",
        lambda g, a: a["act1.mult0"].__setitem__(0, 2**31),
        r"node 'act1', field 'inputs\[0\].multiplier'.*mult_bits=32",
    ),
    (
        "bias beyond int32",
        lambda g, a: a.__setitem__("act1.bias0", np.array([2**31, 0, 0], np.int64)),
        r"field 'inputs\[0\].bias'",
    ),
    (
        "float bias",
        lambda g, a: a.__setitem__("act1.bias0", np.zeros(3, np.float64)),
        r"bias'.*dtype float64",
    ),
    (
        "offset key missing from tensors.npz",
        lambda g, a: node(g, "act1").__setitem__("offset", "act1.offset"),
        r"node 'act1', field 'offset': array 'act1.offset' is not in",
    ),
    (
        "float offset",
        lambda g, a: (
            node(g, "act1").__setitem__("offset", "act1.offset"),
            a.__setitem__("act1.offset", np.zeros(3, np.float64)),
        ),
        r"node 'act1', field 'offset': dtype float64",
    ),
    (
        "offset of the wrong shape",
        lambda g, a: (
            node(g, "act1").__setitem__("offset", "act1.offset"),
            a.__setitem__("act1.offset", np.zeros(4, np.int64)),
        ),
        r"node 'act1', field 'offset': shape \[4\].*shape \[3\]",
    ),
    (
        "offset beyond int64",
        lambda g, a: (
            node(g, "act1").__setitem__("offset", "act1.offset"),
            a.__setitem__("act1.offset", np.array([2**63, 0, 0], np.uint64)),
        ),
        r"node 'act1', field 'offset': value 9223372036854775808 is out of range.*int64 offsets",
    ),
    (
        "offset that is not an npz key",
        lambda g, a: node(g, "act1").__setitem__("offset", 5),
        r"node 'act1', field 'offset': got 5",
    ),
    (
        "NaN scale",
        lambda g, a: g["tensors"]["act1"].__setitem__("scale", float("nan")),
        r"tensor 'act1', field 'scale'.*finite",
    ),
    ("inf scale", lambda g, a: g["tensors"]["act1"].__setitem__("scale", float("inf")), r"tensor 'act1'"),
    ("zero scale", lambda g, a: g["tensors"]["act1"].__setitem__("scale", 0.0), r"positive"),
    ("negative weight scale", lambda g, a: a["conv1.weight_scale"].__setitem__(0, -1.0), r"weight_scale"),
    (
        "unknown node op",
        lambda g, a: node(g, "pool").__setitem__("op", "lstm"),
        r"node 'pool', field 'op'",
    ),
    ("dangling input", lambda g, a: node(g, "conv2").__setitem__("input", "act9"), r"not declared"),
    (
        "input produced later",
        lambda g, a: node(g, "conv2").__setitem__("input", "act2"),
        r"node 'conv2', field 'input'.*neither the network input nor written by an earlier node",
    ),
    (
        "inconsistent kind",
        lambda g, a: g["tensors"]["conv1.acc"].update(
            kind="codes", format={"bits": 8, "signed": True}, scale=1.0
        ),
        r"node 'conv1', field 'output'.*kind 'codes'",
    ),
    (
        "conv output shape",
        lambda g, a: g["tensors"]["conv1.acc"].__setitem__("shape", [3, 4, 5]),
        r"node 'conv1', field 'output'.*\[3, 4, 4\]",
    ),
    (
        "requant shape",
        lambda g, a: a.__setitem__("act1.shift", np.zeros(2, np.int64)),
        r"field 'shift': shape",
    ),
    ("unsupported format_version", lambda g, a: g.__setitem__("format_version", 3), r"format_version"),
    ("unsupported rounding", lambda g, a: g.__setitem__("rounding", "half_odd"), r"field 'rounding'"),
    (
        "unsupported rounding in version 1",
        lambda g, a: (
            g.__setitem__("format_version", 1),
            g.__setitem__("rounding", "half_even"),
            [n.pop("rounding", None) for n in g["nodes"]],
        ),
        r"field 'rounding'.*format_version 1",
    ),
    (
        "bad lattice",
        lambda g, a: node(g, "conv1")["weight_format"].__setitem__("lattice", "prime"),
        r"lattice",
    ),
    (
        "unknown key",
        lambda g, a: node(g, "conv1").__setitem__("paddings", [1, 1]),
        r"'paddings': unknown key",
    ),
    ("groups do not divide", lambda g, a: node(g, "conv2").__setitem__("groups", 2), r"field 'groups'"),
    (
        "sign into unsigned",
        lambda g, a: g["tensors"]["sgn"].__setitem__("format", {"bits": 2, "signed": False}),
        r"node 'sgn', field 'output'",
    ),
    (
        "avgpool too narrow",
        lambda g, a: g["tensors"]["pool"]["format"].__setitem__("bits", 6),
        r"node 'pool'",
    ),
    ("duplicate producer", lambda g, a: node(g, "act2").__setitem__("output", "act1"), r"already written"),
    ("bool acc_bits", lambda g, a: g.__setitem__("acc_bits", True), r"field 'acc_bits'"),
    ("acc_bits 65", lambda g, a: g.__setitem__("acc_bits", 65), r"1..64"),
    ("mean of wrong length", lambda g, a: g["input"].__setitem__("mean", [0.5]), r"input, field 'mean'"),
]


# What the spec forbids and the loader once let through: each names file, node, field, value and the fix.
FORBIDDEN: list[tuple[str, Callable[[dict[str, Any], dict[str, np.ndarray]], None], str]] = [
    (
        "int16 multipliers",
        lambda g, a: a.__setitem__("act1.mult0", a["act1.mult0"].astype(np.int16)),
        r"graph.yaml: node 'act1', field 'inputs\[0\].multiplier': dtype int16; expected int32 or int64 "
        r"multipliers.*; store the array as int32 or int64",
    ),
    (
        "int64 biases holding int32 values",
        lambda g, a: a.__setitem__("act1.bias0", a["act1.bias0"].astype(np.int64)),
        r"graph.yaml: node 'act1', field 'inputs\[0\].bias': dtype int64; expected int32 biases.*"
        r"store the array as int32",
    ),
    (
        "acc_bits below the widest accumulator",
        lambda g, a: g.__setitem__("acc_bits", 8),
        r"graph.yaml: field 'acc_bits': 8 is narrower than the 11-bit accumulator that node 'conv1' can "
        r"reach.*expected acc_bits >= 11.*set acc_bits: 11",
    ),
    (
        "avgpool scale that is not scale_in / (H*W)",
        lambda g, a: g["tensors"]["pool"].__setitem__("scale", 0.5),
        r"graph.yaml: tensor 'pool', field 'scale': 0.5 is not the scale of a sum over 4x4 of 'act2' "
        r"\(scale 0.5\); expected scale_in / \(H\*W\) = 0.03125.*set the scale of 'pool' to 0.03125",
    ),
    (
        "sign node whose output is not binary",
        lambda g, a: g["tensors"]["sgn"].__setitem__("format", {"bits": 2, "signed": True}),
        r"graph.yaml: node 'sgn', field 'output': a sign node produces -1 and \+1, but 'sgn' has format "
        r"int2 \[-2, 1\]; expected the binary lattice.*declare the output tensor with the binary lattice",
    ),
]


@pytest.mark.parametrize("mutate, pattern", [(m, p) for _, m, p in FORBIDDEN], ids=[c[0] for c in FORBIDDEN])
def test_what_the_spec_forbids_is_rejected_with_exit_2(
    tmp_path: Path, mutate: Any, pattern: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = broken(tmp_path, lambda g, a: None)
    load_bundle(ok)  # the unmutated bundle loads
    path = broken(tmp_path, mutate)
    with pytest.raises(BundleError, match=pattern):
        load_bundle(path)
    assert hwsim_main(["emulate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path / "graph.yaml") in err and "Traceback" not in err


def test_rounding_per_requantizer_loads_and_round_trips(tmp_path: Path) -> None:
    graph, arrays, _ = tiny_builder().parts("logits")
    assert graph["format_version"] == 2 and all(
        n["rounding"] == "half_up" for n in graph["nodes"] if n["op"] == "requant"
    )
    node(graph, "act1")["rounding"] = "half_even"
    node(graph, "logits")["rounding"] = "toward_zero"
    del node(graph, "act2")["rounding"]  # falls back to the top-level rounding
    graph["rounding"] = "floor"
    bundle = load_bundle(write_bundle_files(tmp_path / "b", graph, arrays))
    modes = {n.name: n.rounding for n in bundle.nodes if n.op == "requant"}
    assert modes == {"act1": "half_even", "act2": "floor", "sgn": "half_up", "logits": "toward_zero"}
    again = load_bundle(save_bundle(bundle, tmp_path / "copy"))
    assert {n.name: n.rounding for n in again.nodes if n.op == "requant"} == modes
    node(graph, "act1")["rounding"] = "nearest"
    with pytest.raises(BundleError, match=r"node 'act1', field 'rounding': unknown rounding mode 'nearest'"):
        load_bundle(write_bundle_files(tmp_path / "c", graph, arrays))


def test_version_1_bundles_load_unchanged(tmp_path: Path) -> None:
    graph, arrays, _ = tiny_builder().parts("logits")
    graph["format_version"] = 1
    for n in graph["nodes"]:
        n.pop("rounding", None)
    v1 = load_bundle(write_bundle_files(tmp_path / "v1", graph, arrays))
    assert v1.meta.format_version == 1 and {n.rounding for n in v1.nodes if n.op == "requant"} == {"half_up"}
    node(graph, "act1")["rounding"] = "half_up"  # version 1 has no per-node rounding
    with pytest.raises(BundleError, match=r"node 'act1', field 'rounding': unknown key"):
        load_bundle(write_bundle_files(tmp_path / "v1b", graph, arrays))


@pytest.mark.parametrize("mutate, pattern", [(m, p) for _, m, p in CASES], ids=[c[0] for c in CASES])
def test_broken_bundles_are_rejected_with_a_located_message(
    tmp_path: Path, mutate: Any, pattern: str
) -> None:
    path = broken(tmp_path, mutate)
    with pytest.raises(BundleError, match=pattern) as info:
        load_bundle(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "expected" in message


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_bundle_files(tmp_path / "b", "- just\n- a list\n", {})
    with pytest.raises(BundleError, match="graph.yaml: got list"):
        load_bundle(path)
    path = write_bundle_files(tmp_path / "c", "format_version: [1\n", {})
    with pytest.raises(BundleError, match="not valid YAML"):
        load_bundle(path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="graph.yaml: missing"):
        load_bundle(tmp_path / "empty")
    path = tiny_bundle(tmp_path / "t")
    (path / "tensors.npz").unlink()
    with pytest.raises(BundleError, match="tensors.npz: missing"):
        load_bundle(path)


def test_bad_reference_is_rejected(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "t", reference_images=2)
    with np.load(path / "reference.npz") as f:
        ref = {k: f[k] for k in f.files}
    ref["codes/act1"] = ref["codes/act1"] + 20  # outside int4
    np.savez(path / "reference.npz", **ref)
    with pytest.raises(BundleError, match=r"reference.npz: array 'codes/act1': codes span"):
        load_bundle(path)


def test_cli_reports_bundle_errors_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = broken(tmp_path, lambda g, a: a["act1.shift"].__setitem__(0, 70))
    assert hwsim_main(["emulate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "field 'shift'" in err and "Traceback" not in err


def test_code_format_lattices() -> None:
    odd = CodeFormat(3, True, 2, "odd")
    assert (odd.min, odd.max) == (-3, 3)
    assert odd.violation(np.array([-3, -1, 1, 3])) is None
    assert "even" in odd.violation(np.array([0]))
    assert CodeFormat(2, True, 1, "binary").violation(np.array([0])) is not None
    assert CodeFormat(4, True, lattice="narrow").min == -7
    assert CodeFormat(4, False).int_format.max == 15


def test_quantize_images_follows_the_float32_recipe(tmp_path: Path) -> None:
    from hwsim.bundle.synthetic import random_resnet20_bundle

    bundle = load_bundle(random_resnet20_bundle(tmp_path / "r", 4, 4))
    images = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    codes = quantize_images(images, bundle)
    spec = bundle.input_spec
    # the recipe written out independently, in float32, per pixel
    x = images.astype(np.float32) / np.float32(255)
    mean = np.array(bundle.meta.input_mean, np.float32)
    std = np.array(bundle.meta.input_std, np.float32)
    expected = np.clip(np.floor((x - mean) / std / np.float32(spec.scale) + np.float32(0.5)), -127, 127)
    assert codes.shape == (3, 3, 32, 32) and codes.dtype == np.int64
    assert np.array_equal(codes, expected.astype(np.int64).transpose(0, 3, 1, 2))
