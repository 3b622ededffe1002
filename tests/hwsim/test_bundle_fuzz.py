"""Fuzzing hwsim.bundle.load_bundle: mutated graph.yaml values and keys, dropped or replaced npz arrays,
corrupted bytes. The loader must raise BundleError or succeed, never anything else; a bundle it
accepts must then emulate (or fail with a UserError)."""

from __future__ import annotations

import contextlib
import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hwsim.bundle import GRAPH_FILE, TENSORS_FILE, BundleError, load_bundle, write_bundle_files
from hwsim.bundle.synthetic import tiny_builder
from hwsim.emulator import emulate
from hwsim.errors import UserError

ITERATIONS = 300
JUNK: list[Any] = [
    None,
    0,
    -1,
    1,
    2,
    63,
    64,
    65,
    2**70,
    True,
    False,
    0.5,
    float("nan"),
    float("inf"),
    -1e300,
    "",
    "x",
    "input",
    "act1",
    "conv1.acc",
    "clamp",
    "sign",
    [],
    [1],
    [0, 0],
    [1, 2, 3],
    {},
    {"a": 1},
    {"bits": 4, "signed": True},
    {"bits": 2, "signed": True, "lattice": "binary"},
]


def _containers(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a dict key or list index in the tree."""
    out = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append((*path, k))
            out += _containers(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append((*path, i))
            out += _containers(v, (*path, i))
    return out


def _parent(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def _junk_array(rng: random.Random) -> np.ndarray:
    kind = rng.choice(["int", "float", "bool", "str", "empty", "big", "uint64"])
    shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 4)))
    if kind == "int":
        return np.array(np.random.default_rng(rng.randint(0, 9999)).integers(-300, 300, size=shape))
    if kind == "float":
        return np.full(shape, rng.choice([0.5, -1.0, float("nan"), float("inf")]))
    if kind == "bool":
        return np.ones(shape, dtype=bool)
    if kind == "str":
        return np.array("cpu")
    if kind == "empty":
        return np.zeros((0,), dtype=np.int64)
    if kind == "uint64":
        return np.full(shape or (3,), 2**64 - 1, dtype=np.uint64)
    return np.full(shape or (3,), 2**62, dtype=np.int64)


def _mutate(rng: random.Random, graph: dict[str, Any], arrays: dict[str, np.ndarray]) -> str | None:
    """Apply 1-3 random mutations; returns raw graph text when the text itself was corrupted."""
    for _ in range(rng.randint(1, 3)):
        choice = rng.random()
        paths = _containers(graph)
        if choice < 0.45 and paths:
            path = rng.choice(paths)
            _parent(graph, path)[path[-1]] = copy.deepcopy(rng.choice(JUNK))
        elif choice < 0.6 and paths:
            path = rng.choice(paths)
            parent = _parent(graph, path)
            if isinstance(parent, dict):
                value = parent.pop(path[-1])
                if rng.random() < 0.5:
                    parent[rng.choice(["name", "op", "shape", "kind", "typo", "bias", "input"])] = value
            else:
                parent.pop(path[-1])
        elif choice < 0.75 and arrays:
            key = rng.choice(sorted(arrays))
            if rng.random() < 0.4:
                arrays.pop(key)
            else:
                arrays[key] = _junk_array(rng)
        elif choice < 0.85 and arrays:
            key = rng.choice(sorted(arrays))
            arr = np.array(arrays[key])
            if arr.dtype.kind in "iu" and arr.dtype.itemsize < 4:  # compact weight codes: room for 2^31
                arr = arr.astype(np.int32)
            if arr.size:
                arr.flat[rng.randrange(arr.size)] = rng.choice([-(2**31), -9, -1, 0, 1, 9, 2**31 - 1])
            arrays[key] = arr
        else:
            text = yaml.safe_dump(graph, sort_keys=False)
            data = bytearray(text.encode())
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            return data.decode("utf-8", errors="replace") if rng.random() < 0.5 else data.decode("latin-1")
    return None


def test_loader_raises_bundle_error_or_succeeds(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    base_graph, base_arrays, _ = tiny_builder().parts("logits")
    outcomes = {"rejected": 0, "accepted": 0}
    for i in range(ITERATIONS):
        graph, arrays = copy.deepcopy(base_graph), {k: v.copy() for k, v in base_arrays.items()}
        text = _mutate(rng, graph, arrays)
        path = write_bundle_files(tmp_path / f"b{i % 4}", text if text is not None else graph, arrays)
        if rng.random() < 0.1:  # corrupt the archive's bytes
            blob = bytearray((path / TENSORS_FILE).read_bytes())
            for _ in range(rng.randint(1, 20)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            (path / TENSORS_FILE).write_bytes(bytes(blob))
        if rng.random() < 0.05:
            (path / GRAPH_FILE).write_bytes(bytes(rng.randrange(256) for _ in range(64)))
        try:
            bundle = load_bundle(path)
        except BundleError:
            outcomes["rejected"] += 1
            continue
        outcomes["accepted"] += 1
        spec = bundle.input_spec
        if int(np.prod(spec.shape)) <= 4096:
            codes = np.random.default_rng(i).integers(
                spec.fmt.min, spec.fmt.max, size=(2, *spec.shape), endpoint=True
            )
            if spec.fmt.lattice in ("odd", "binary"):
                codes = np.where(codes % 2 == 0, spec.fmt.max, codes)
            with contextlib.suppress(UserError):
                emulate(bundle, codes, batch_size=1)
    # the mutations must exercise both outcomes
    assert outcomes["rejected"] > ITERATIONS // 2 and outcomes["accepted"] >= 3, outcomes
