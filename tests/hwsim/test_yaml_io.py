"""hwsim.yaml_io and its three readers (hardware YAML, quantization YAML, graph.yaml): hostile documents
either load or raise the reader's one clear error, in bounded memory, through the API and the CLIs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hwsim.bundle import GRAPH_FILE, Bundle, BundleError, load_bundle
from hwsim.bundle.build import bundle_files
from hwsim.bundle.synthetic import tiny_builder, tiny_bundle
from hwsim.errors import UserError, shown
from hwsim.hwconfig import HardwareConfig, HwConfigError, load_hw_config
from hwsim.limits import YAML_ALIAS_NODES, YAML_DEPTH
from hwsim.pretrained import BUNDLES_DIR, ManifestError, load_manifest
from hwsim.yaml_io import YamlError, parse_yaml, read_yaml
from qat.config import ConfigError, QuantConfig, load_config

REPO = Path(__file__).resolve().parents[2]
HW_TEXT = (REPO / "configs" / "hw" / "ws_16x16.yaml").read_text()
QUANT_TEXT = (REPO / "configs" / "quant" / "mixed_cfg1.yaml").read_text()
BUNDLE = BUNDLES_DIR / "dorefa_a4w4"
# a real file of each reader: the graph.yaml is the tiny bundle's, whose tensors.npz the graph tests use
OWN_TEXT = {"hw": HW_TEXT, "quant": QUANT_TEXT, "graph": bundle_files(tiny_builder().build("logits"))[0]}
MESSAGE_LIMIT = 2000  # no message holds a whole input


def billion_laughs(levels: int = 8) -> str:
    """The classic: each level an anchored list of nine aliases of the level below (9**levels strings)."""
    text = "l0: &l0 [" + ", ".join(["lol"] * 9) + "]\n"
    for i in range(1, levels + 1):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n"
    return text


# --- the reader itself -------------------------------------------------------------------------


def test_plain_documents_load_as_plain_data() -> None:
    assert parse_yaml("a: 1\nb: [x, 2.5, true, null]\n", "f.yaml") == {"a": 1, "b": ["x", 2.5, True, None]}
    assert parse_yaml("", "f.yaml") is None
    assert parse_yaml(b"\xef\xbb\xbfa: 1\n", "f.yaml") == {"a": 1}  # a UTF-8 byte order mark


def test_every_project_yaml_loads_and_uses_no_alias() -> None:
    """The alias budget costs nothing: none of the project's own files repeats anything with an alias."""
    files = [*sorted((REPO / "configs").rglob("*.yaml")), *sorted(BUNDLES_DIR.rglob("*.yaml"))]
    assert len(files) > 20
    for path in files:
        assert read_yaml(path) is not None, path
        assert not any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(path.read_text())), path


def test_dates_stay_strings_and_impossible_dates_are_no_traceback() -> None:
    assert parse_yaml("a: 2001-02-30\nb: 2001-02-03\n", "f.yaml") == {"a": "2001-02-30", "b": "2001-02-03"}
    with pytest.raises(YamlError, match=r"f.yaml: line 1, column 4: cannot read '2001-02-30' as timestamp"):
        parse_yaml("a: !!timestamp 2001-02-30\n", "f.yaml")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("a: 1\nb: 2\na: 3\n", r"f.yaml: line 3, column 1: duplicate key 'a' \(first at line 1\)"),
        ("x:\n  y: 1\n  z: 2\n  y: 3\n", r"line 4, column 3: duplicate key 'y' \(first at line 2\)"),
        ("{a: 1, a: 2}", r"line 1, column 8: duplicate key 'a' \(first at line 1\)"),
        ("1: a\n1: b\n", r"line 2, column 1: duplicate key 1 \(first at line 1\)"),
    ],
)
def test_duplicate_keys_are_an_error_naming_the_key_and_both_lines(text: str, pattern: str) -> None:
    with pytest.raises(YamlError, match=pattern):
        parse_yaml(text, "f.yaml")


def test_a_merge_key_is_not_a_duplicate() -> None:
    doc = parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 5\n", "f.yaml")
    assert doc == {"base": {"x": 1, "y": 2}, "other": {"x": 5, "y": 2}}


def test_aliases_within_the_budget_load_and_beyond_it_are_refused() -> None:
    # &a is a list of 99 scalars: 100 nodes; 100 aliases of it repeat exactly the budget
    copies = YAML_ALIAS_NODES // 100
    within = "a: &a [" + ", ".join(["0"] * 99) + "]\nb: [" + ", ".join(["*a"] * copies) + "]\n"
    doc = parse_yaml(within, "f.yaml")
    assert len(doc["b"]) == copies and doc["b"][-1] == [0] * 99
    with pytest.raises(
        YamlError, match=f"line 3, column 4: aliases repeat more than {YAML_ALIAS_NODES} nodes"
    ):
        parse_yaml(within + "c: *a\n", "f.yaml")
    with pytest.raises(YamlError, match=r"line 5, column \d+: aliases repeat more than"):
        parse_yaml(billion_laughs(), "f.yaml")
    with pytest.raises(YamlError, match=r"alias \*a refers to a node that contains it"):
        parse_yaml("&a [1, *a]", "f.yaml")
    with pytest.raises(YamlError, match="undefined alias"):
        parse_yaml("a: *nowhere\n", "f.yaml")


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20_000 + "]" * 20_000,
        "{a: " * 20_000 + "1" + "}" * 20_000,
        "".join(" " * i + "k:\n" for i in range(200)),
    ],
)
def test_deep_nesting_is_refused_not_a_recursion_error(text: str) -> None:
    with pytest.raises(YamlError, match=f"nested more than {YAML_DEPTH} deep") as info:
        parse_yaml(text, "f.yaml")
    assert len(str(info.value)) < 200
    assert parse_yaml("[" * YAML_DEPTH + "]" * YAML_DEPTH, "f.yaml") is not None


def test_bytes_that_are_not_utf8_name_their_offset() -> None:
    with pytest.raises(YamlError, match=r"f.yaml: byte 9 \(line 2\) is not UTF-8"):
        parse_yaml(b"a: 1\nb: x\xff\n", "f.yaml")
    with pytest.raises(YamlError, match=r"character '\\x01' at byte 3 \(line 1\) is not allowed"):
        parse_yaml("a: \x01\n", "f.yaml")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("a: [1\n", r"line 2, column 1: not valid YAML \(expected ',' or ']'"),
        ("a: " + "9" * 5000 + "\n", r"line 1, column 4: cannot read '999.*\(5000 characters\) as int"),
        ("a: !!float x\n", "cannot read 'x' as float"),
        ("a: !!binary xx!\n", "not valid YAML \\(failed to decode base64"),
        ("!!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
        ("? [1, 2]\n: 3\n", "found unhashable key"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: *" + "x" * 100_000 + "\n", "found undefined alias 'xxxx"),
    ],
)
def test_odd_scalars_and_tags_are_clear_errors(text: str, pattern: str) -> None:
    with pytest.raises(YamlError, match=pattern) as info:
        parse_yaml(text, "f.yaml")
    assert len(str(info.value)) <= 450


def test_size_and_node_limits_are_checked_and_can_be_raised(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: [" + ", ".join(["1"] * 1000) + "]\n")
    monkeypatch.setenv("HWSIM_MAX_YAML_BYTES", "1000")
    with pytest.raises(YamlError, match=r"big.yaml: larger than 1000 bytes.*HWSIM_MAX_YAML_BYTES"):
        read_yaml(path)
    monkeypatch.delenv("HWSIM_MAX_YAML_BYTES")
    monkeypatch.setenv("HWSIM_MAX_YAML_NODES", "500")
    with pytest.raises(YamlError, match=r"more than 500 values in one document.*HWSIM_MAX_YAML_NODES"):
        read_yaml(path)
    monkeypatch.setenv("HWSIM_MAX_YAML_NODES", "lots")
    with pytest.raises(UserError, match=r"HWSIM_MAX_YAML_NODES='lots': expected a positive integer"):
        read_yaml(path)
    monkeypatch.delenv("HWSIM_MAX_YAML_NODES")
    assert len(read_yaml(path)["a"]) == 1000


def test_shown_bounds_any_value_without_building_its_repr() -> None:
    assert shown("conv1") == "'conv1'" and shown(3) == "3" and shown([1, 2]) == "[1, 2]"
    text = shown("x" * 10**7)
    assert len(text) < 100 and text.endswith("(10000000 characters)")
    nested: Any = ["lol"] * 9
    for _ in range(9):
        nested = [nested] * 9  # 9**10 strings if written out
    assert len(shown(nested)) < 100 and shown(nested).endswith("(9 items)")


# --- the three readers: the same rules, each with its own error type ------------------------


def _hw(tmp: Path, text: str | bytes) -> object:
    path = tmp / "hw.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return load_hw_config(path)


def _quant(tmp: Path, text: str | bytes) -> object:
    path = tmp / "quant.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return load_config(path)


def _graph(tmp: Path, text: str | bytes) -> object:
    bundle = tmp / "bundle"
    if not bundle.exists():
        tiny_bundle(bundle)
    (bundle / GRAPH_FILE).write_bytes(
        text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    )
    return load_bundle(bundle)


READERS: dict[str, tuple[Callable[[Path, str | bytes], object], type[UserError], type]] = {
    "hw": (_hw, HwConfigError, HardwareConfig),
    "quant": (_quant, ConfigError, QuantConfig),
    "graph": (_graph, BundleError, Bundle),
}


def check_reader(reader: str, tmp: Path, text: str | bytes) -> UserError | None:
    """Load ``text`` with one reader: a result of its type, or its error (file first, short); nothing else."""
    read, error, result = READERS[reader]
    try:
        value = read(tmp, text)
    except error as err:
        message = str(err)
        assert message.startswith(str(tmp)), message[:300]
        assert len(message) < MESSAGE_LIMIT, message[:300]
        return err
    assert isinstance(value, result)
    return None


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (billion_laughs(), "aliases repeat more than"),
        ("[" * 20_000 + "]" * 20_000, "nested more than"),
        ("a: 1\na: 2\n", "duplicate key 'a' (first at line 1)"),
        (b"a: \xc3\x28\n", "byte 3 (line 1) is not UTF-8"),
        ("a: !!timestamp 2001-02-30\n", "cannot read '2001-02-30' as timestamp"),
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_each_reader_refuses_hostile_yaml_with_its_own_error(
    reader: str, text: str | bytes, needle: str, tmp_path: Path
) -> None:
    err = check_reader(reader, tmp_path, text)
    assert err is not None and needle in str(err)


@pytest.mark.parametrize("reader", READERS)
def test_each_reader_refuses_a_duplicate_key_of_its_own_files(reader: str, tmp_path: Path) -> None:
    own = OWN_TEXT[reader]
    at, first = next((i, line) for i, line in enumerate(own.splitlines()) if line[:1].isalpha())
    assert check_reader(reader, tmp_path, own) is None
    err = check_reader(reader, tmp_path, own + first + "\n")
    key = first.split(":")[0]
    assert err is not None and f"duplicate key '{key}' (first at line {at + 1})" in str(err)
    assert f"line {len(own.splitlines()) + 1}, column 1" in str(err)


def test_non_string_keys_and_odd_values_are_schema_errors_not_type_errors(tmp_path: Path) -> None:
    err = check_reader("hw", tmp_path, HW_TEXT + "1: x\n")
    assert err is not None and "key 1 is not a field name" in str(err)
    err = check_reader("hw", tmp_path, HW_TEXT.replace("rows: 16", "rows: 16, 2: 3"))
    assert err is not None and "field 'array': key 2 is not a field name" in str(err)
    err = check_reader("hw", tmp_path, HW_TEXT.replace("clock_mhz: 500", "clock_mhz: 2001-02-30"))
    assert err is not None and "field 'clock_mhz': '2001-02-30' is not a number" in str(err)
    err = check_reader("hw", tmp_path, HW_TEXT.replace("clock_mhz: 500", f"clock_mhz: '{'x' * 100_000}'"))
    assert err is not None and "(100000 characters)" in str(err)
    err = check_reader("hw", tmp_path, HW_TEXT.replace("clock_mhz: 500", "clock_mhz: 1" + "0" * 400))
    assert err is not None and "field 'clock_mhz': 1000" in str(err) and "is not a number" in str(err)
    err = check_reader("quant", tmp_path, "1: x\ndefault: {}\n")
    assert err is not None and "unknown key(s) [1]" in str(err)
    err = check_reader("quant", tmp_path, "layers: {1: {weight: {bits: 4}}, conv1: {weight: {bits: 4}}}\n")
    assert err is not None and "layer keys must be strings" in str(err)
    err = check_reader(
        "quant", tmp_path, "default: {weight: {method: dorefa, bits: 4, pact_init: " + "9" * 400 + "}}\n"
    )
    assert err is not None and "pact_init: expected a finite number" in str(err)
    err = check_reader("graph", tmp_path, "format_version: 2\n1: x\n")
    assert err is not None and "key 1 is not a string" in str(err)


def test_a_manifest_is_read_by_the_same_reader(tmp_path: Path) -> None:
    (tmp_path / "MANIFEST.yaml").write_text("manifest_version: 1\nmanifest_version: 1\n")
    with pytest.raises(
        ManifestError, match=r"MANIFEST.yaml: line 2, column 1: duplicate key 'manifest_version'"
    ):
        load_manifest(tmp_path)
    (tmp_path / "MANIFEST.yaml").write_text("1: x\nmanifest_version: 1\n")
    with pytest.raises(
        ManifestError, match=r"expected a mapping with keys .*; got \['1', 'manifest_version'\]"
    ):
        load_manifest(tmp_path)


# --- property-based: whatever the document, a result or the reader's error ---------------------

SCALARS = st.sampled_from(
    [
        "0",
        "-1",
        "16",
        "4",
        "ws",
        "wrap",
        "dorefa",
        "1e999",
        "-.inf",
        ".nan",
        "0x1F",
        "0o17",
        "0b2",
        "1_000",
        "2001-02-30",
        "2001-02-03 10:00:00",
        "12:30:00",
        "~",
        "yes",
        "No",
        "''",
        '"\\x01"',
        "9" * 5000,
        "1" + "0" * 400,
        "!!binary aGVsbG8=",
        "!!binary '!'",
        "!!timestamp 2001-02-30",
        "!!float x",
        "!!int '9'",
        "!!str 5",
        "!!set {a, b}",
        "!!omap [a: 1]",
        "!!python/object:os.system x",
        "!!map []",
        "*a",
        "*b",
        "&a 1",
        "&b [1, *a]",
        "&a [x]",
        "<<",
        "'\\u0000'",
        "[]",
        "{}",
    ]
) | st.text(max_size=12).map(json.dumps)
KEYS = st.sampled_from(
    [
        "array",
        "pe",
        "rows",
        "cols",
        "dataflow",
        "acc_bits",
        "overflow",
        "buffers_kb",
        "clock_mhz",
        "name",
        "default",
        "weight",
        "activation",
        "bits",
        "method",
        "layers",
        "conv1",
        "format_version",
        "nodes",
        "tensors",
        "input",
        "output",
        "1",
        "true",
        "null",
        "? [1]",
        "<<",
        "&k a",
        "*a",
        "'a'",
        "a",
    ]
)


def _mapping(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.tuples(KEYS, children), max_size=5).map(
        lambda items: "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    )


DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5).map(lambda xs: "[" + ", ".join(xs) + "]") | _mapping(children)
    ),
    max_leaves=25,
)


@st.composite
def spliced(draw: st.DrawFn, base: str) -> str:
    """A real file with hostile lines put in, replaced or appended (duplicate keys, aliases, odd values)."""
    lines = base.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines)))
        key = draw(KEYS)
        line = draw(
            st.sampled_from([f"{key}: {draw(DOCUMENTS)}", f"  {key}: {draw(SCALARS)}", draw(DOCUMENTS)])
        )
        if draw(st.booleans()) and at < len(lines):
            lines[at] = line
        else:
            lines.insert(at, line)
    return "\n".join(lines) + "\n"


def _nested(depth: int, open_: str, close: str) -> str:
    return open_ * depth + close * depth


HOSTILE = (
    st.binary(max_size=300)
    | DOCUMENTS
    | st.builds(_nested, st.integers(1, 30_000), st.sampled_from(["[", "{a: "]), st.sampled_from(["]", "}"]))
    | st.builds(billion_laughs, st.integers(1, 9))
)

PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("reader", READERS)
@PROPERTY
@given(data=st.data())
def test_any_document_loads_or_raises_the_readers_error(
    reader: str, tmp_path: Path, data: st.DataObject
) -> None:
    base = OWN_TEXT[reader]
    text = data.draw(HOSTILE | spliced(base), label="document")
    event("loaded" if check_reader(reader, tmp_path, text) is None else "refused")


# --- the CLIs in bounded memory (conftest.run_limited: 2 GiB of address space) ---------------


def _check_refused(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr) < MESSAGE_LIMIT, proc.stderr[-2000:]
    assert needle in proc.stderr, proc.stderr


def test_billion_laughs_as_hw_yaml_through_hwsim_simulate(tmp_path: Path, run_limited: Any) -> None:
    (tmp_path / "evil.yaml").write_text(billion_laughs() + "array: *l8\n")
    proc = run_limited("hwsim", "simulate", str(BUNDLE), "--hw", "evil.yaml", "--report", "r", cwd=tmp_path)
    _check_refused(proc, "evil.yaml: line 5, column 10: aliases repeat more than")
    assert not (tmp_path / "r").exists()


def test_billion_laughs_as_quant_yaml_through_qat_train(tmp_path: Path, run_limited: Any) -> None:
    (tmp_path / "evil.yaml").write_text(billion_laughs() + "default: *l8\n")
    proc = run_limited(
        "qat",
        "train",
        "--quant",
        "evil.yaml",
        "--epochs",
        "1",
        "--synthetic",
        "8",
        "--out",
        "run",
        cwd=tmp_path,
    )
    _check_refused(proc, "evil.yaml: line 5, column 10: aliases repeat more than")


def test_billion_laughs_as_graph_yaml_through_hwsim_emulate(tmp_path: Path, run_limited: Any) -> None:
    tiny_bundle(tmp_path / "b")
    (tmp_path / "b" / GRAPH_FILE).write_text(billion_laughs() + "nodes: *l8\n")
    proc = run_limited("hwsim", "emulate", "b", cwd=tmp_path)
    _check_refused(proc, "graph.yaml: line 5, column 10: aliases repeat more than")
