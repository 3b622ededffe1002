"""hwsim.bundle.load's resource limits: npz members are checked before anything is decompressed, members
nothing names are refused, and a node whose working size exceeds the limit is refused with the limit."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwsim.bundle import (
    REFERENCE_FILE,
    TENSORS_FILE,
    BundleError,
    load_bundle,
    validate_bundle,
    write_bundle_files,
)
from hwsim.bundle.load import working_bytes
from hwsim.bundle.synthetic import builder, fmt, tiny_builder, tiny_bundle
from hwsim.limits import NPZ_BYTES, NPZ_RATIO, WORKING_BYTES
from hwsim.pretrained import BUNDLES_DIR

MiB = 1 << 20


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The .npy header alone (what np.save writes before the data) for ``shape`` and ``dtype``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zeros_member(zero_mib: int) -> tuple[bytes, int, int]:
    """A deflate stream of a .npy of ``zero_mib`` MiB of zeros, made without compressing them all.

    After a full flush the compressor starts afresh, so every MiB of zeros compresses to the same
    bytes: the stream is the header's block and that block repeated. Returns (stream, size, crc32).
    """
    header = npy_header((zero_mib * MiB,), "|u1")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    chunk = bytes(MiB)
    for _ in range(zero_mib):
        crc = zlib.crc32(chunk, crc)
    return head + block * zero_mib + c.flush(), len(header) + zero_mib * MiB, crc


def write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip archive of (name, stored data, method, uncompressed size, crc32) members, written by hand."""
    out, central = bytearray(), bytearray()
    for name, data, method, size, crc in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size, len(raw), 0)
        out += raw + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0,
            crc,
            len(data),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))


def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, 0, len(data), zlib.crc32(data)


def npz_with(path: Path, arrays: dict[str, np.ndarray], *extra: tuple[str, bytes, int, int, int]) -> None:
    write_zip(path, [stored(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items()] + list(extra))


@pytest.fixture(scope="module")
def bomb() -> tuple[str, bytes, int, int, int]:
    """A real member of 4095 MiB of zeros (a valid .npy of uint8) in about 4 MB."""
    data, size, crc = zeros_member(4095)
    assert len(data) < 5 * MiB and size > 4000 * MiB
    return "junk.npy", data, zlib.DEFLATED, size, crc


def test_a_4gib_member_is_refused_before_it_is_decompressed(
    tmp_path: Path, bomb: Any, run_limited: Any
) -> None:
    path = tiny_bundle(tmp_path / "b")
    _, arrays, _ = tiny_builder().parts("logits")
    npz_with(path / TENSORS_FILE, arrays, bomb)
    assert (path / TENSORS_FILE).stat().st_size < 5 * MiB
    with pytest.raises(
        BundleError, match=f"member 'junk.npy' declares {bomb[3]} bytes compressed into .*{NPZ_RATIO}:1"
    ):
        load_bundle(path)
    proc = run_limited("hwsim", "emulate", str(path), cwd=tmp_path)  # at most 2 GiB of address space
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "junk.npy" in proc.stderr and len(proc.stderr) < 1000


def test_the_declared_total_is_capped_and_the_cap_can_be_raised(tmp_path: Path, monkeypatch: Any) -> None:
    path = tiny_bundle(tmp_path / "b", reference_images=2)
    monkeypatch.setenv("HWSIM_MAX_NPZ_BYTES", "1000")
    with pytest.raises(
        BundleError, match=r"tensors.npz: the members declare more than 1000 bytes uncompressed"
    ) as info:
        load_bundle(path)
    assert "member '" in str(info.value) and "set the environment variable HWSIM_MAX_NPZ_BYTES" in str(
        info.value
    )
    monkeypatch.setenv("HWSIM_MAX_NPZ_BYTES", str(NPZ_BYTES.default * 4))
    assert load_bundle(path).reference is not None


def test_a_member_no_node_names_is_refused_by_name(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "b")
    _, arrays, _ = tiny_builder().parts("logits")
    npz_with(path / TENSORS_FILE, arrays, stored("conv1.extra.npy", b"garbage: never read"))
    with pytest.raises(
        BundleError, match=r"tensors.npz: array 'conv1.extra' is not named by any node of graph.yaml"
    ):
        load_bundle(path)
    npz_with(path / TENSORS_FILE, arrays, stored("notes.txt", b"hello"))
    with pytest.raises(BundleError, match=r"tensors.npz: member 'notes.txt' is not a .npy array"):
        load_bundle(path)
    npz_with(path / TENSORS_FILE, arrays)
    assert load_bundle(path).consts.keys() == arrays.keys()


def test_reference_members_are_checked_by_name_before_any_is_read(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "b", reference_images=2)
    with np.load(path / REFERENCE_FILE) as ref:
        arrays = {k: ref[k] for k in ref.files}
    npz_with(path / REFERENCE_FILE, arrays, stored("junk.npy", b"not an npy array at all"))
    with pytest.raises(BundleError, match=r"reference.npz: array 'junk': unknown key"):
        load_bundle(path)  # reading junk.npy would fail differently: it was never read
    npz_with(path / REFERENCE_FILE, arrays, stored("codes/junk.npy", b"not an npy array at all"))
    with pytest.raises(BundleError, match=r"'junk' is not a codes tensor of graph.yaml"):
        load_bundle(path)
    rest = {k: v for k, v in arrays.items() if k != "codes/act1"}
    npz_with(path / REFERENCE_FILE, rest, stored("codes/act1.npy", b"not an npy array at all"))
    with pytest.raises(BundleError, match=r"member 'codes/act1.npy' is not a readable array"):
        load_bundle(path)
    npz_with(path / REFERENCE_FILE, arrays, stored("codes/act1.npy", npy_bytes(arrays["codes/act1"])))
    with pytest.raises(BundleError, match=r"member 'codes/act1.npy' appears twice"):
        load_bundle(path)


def test_an_npy_header_larger_than_its_member_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "b")
    _, arrays, _ = tiny_builder().parts("logits")
    fake = npy_header((1 << 40,), "<i8") + bytes(64)  # declares 8 TiB, holds 64 bytes
    rest = {k: v for k, v in arrays.items() if k != "conv1.weight"}
    npz_with(path / TENSORS_FILE, rest, stored("conv1.weight.npy", fake))
    with pytest.raises(
        BundleError, match=r"member 'conv1.weight.npy' declares shape \[1099511627776\] of int64"
    ):
        load_bundle(path)
    pickled = npy_header((2,), "|O") + bytes(16)
    npz_with(path / TENSORS_FILE, rest, stored("conv1.weight.npy", pickled))
    with pytest.raises(BundleError, match=r"member 'conv1.weight.npy' holds Python objects"):
        load_bundle(path)


def padded_bundle(padding: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A legal-looking 5-node bundle: 3x3 conv with ``padding`` on 3x32x32, requant, pool, linear, requant."""
    rng = np.random.default_rng(0)
    b = builder((3, 32, 32), fmt(8, True, "narrow"), 0.02, acc_bits=None)
    acc = b.conv2d(
        "conv",
        "input",
        rng.integers(-7, 8, size=(16, 3, 3, 3)),
        fmt(4, True, "narrow"),
        0.05,
        padding=padding,
    )
    act = b.requant("act", [(acc, np.ones(16, np.int64), None)], np.full(16, 4), fmt(4, False), 0.5)
    pool = b.avgpool_sum("pool", act)
    fc = b.linear("fc", pool, rng.integers(-3, 4, size=(10, 16)), fmt(3, True, "narrow"), 0.05)
    b.requant("logits", [(fc, np.ones(10, np.int64), None)], np.full(10, 8), fmt(8, True), 0.1)
    graph, arrays, _ = b.parts("logits")
    return graph, arrays


def test_a_node_beyond_the_working_size_limit_is_refused_with_the_limit(
    tmp_path: Path, monkeypatch: Any, run_limited: Any
) -> None:
    graph, arrays = padded_bundle(2000)
    path = write_bundle_files(tmp_path / "pad2000", graph, arrays)
    limit = WORKING_BYTES.default
    with pytest.raises(
        BundleError, match=r"graph.yaml: node 'conv': needs \d+ bytes \(\d+\.\d GiB\) for one image"
    ) as info:
        load_bundle(path)
    message = str(info.value)
    assert f"more than the limit of {limit} bytes" in message and "HWSIM_MAX_WORKING_BYTES" in message
    assert "im2col" in message and "padded input" in message
    proc = run_limited("hwsim", "emulate", str(path), cwd=tmp_path)
    assert (
        proc.returncode == 2 and "Traceback" not in proc.stderr and "HWSIM_MAX_WORKING_BYTES" in proc.stderr
    )
    monkeypatch.setenv("HWSIM_MAX_WORKING_BYTES", str(1 << 40))  # the limit, and only it, refused the bundle
    assert load_bundle(path).nodes[0].padding == (2000, 2000)
    monkeypatch.delenv("HWSIM_MAX_WORKING_BYTES")
    assert load_bundle(write_bundle_files(tmp_path / "pad1", *padded_bundle(1))).nodes[0].padding == (1, 1)


def test_working_bytes_counts_what_the_emulator_holds_and_every_bundled_model_is_far_below() -> None:
    graph, arrays = padded_bundle(1)
    bundle = validate_bundle(graph, arrays)
    parts = working_bytes(bundle.nodes[0], bundle.tensors)
    # input 3x32x32, padded 3x34x34, im2col 27 columns x 32x32 positions, output 16x32x32; int64
    assert parts == {
        "inputs": 3 * 32 * 32 * 8,
        "output": 16 * 32 * 32 * 8,
        "padded input": 3 * 34 * 34 * 8,
        "im2col": 27 * 1024 * 8,
    }
    worst = max(
        sum(working_bytes(node, b.tensors).values())
        for b in (load_bundle(p) for p in sorted(BUNDLES_DIR.iterdir()) if (p / "graph.yaml").is_file())
        for node in b.nodes
    )
    assert 0 < worst < WORKING_BYTES.default // 100
    declared = max(
        sum(i.file_size for i in zipfile.ZipFile(p).infolist()) for p in BUNDLES_DIR.rglob("*.npz")
    )
    assert NPZ_BYTES.default >= 16 * declared


def test_messages_quote_no_long_name_or_value_whole(tmp_path: Path) -> None:
    graph, arrays, _ = tiny_builder().parts("logits")
    long = "x" * 100_000
    cases = [
        ("nodes", lambda g: g["nodes"][0].update(name=long), "field 'name': got 'xxx"),
        ("tensors", lambda g: g["tensors"].update({long: g["tensors"]["input"]}), "(100000 characters)"),
        ("input", lambda g: g["input"].update(tensor=long), "field 'tensor': got 'xxx"),
        ("acc_bits", lambda g: g.update(acc_bits=[list(range(1000))] * 1000), "(1000 items)"),
    ]
    for label, mutate, needle in cases:
        g = {**graph, "nodes": [dict(n) for n in graph["nodes"]], "tensors": dict(graph["tensors"])}
        g["input"] = dict(graph["input"])
        mutate(g)
        with pytest.raises(BundleError) as info:
            validate_bundle(g, arrays)
        assert needle in str(info.value) and len(str(info.value)) < 1000, (label, str(info.value)[:300])
