"""The one spelling of graph.yaml: every mapping's keys, in the spec's order, read and written by one table.

Place in the flow: ``hwsim.bundle.load`` checks a graph.yaml's keys against these tables (required,
optional, unknown) before it reads the values; :func:`graph_yaml` writes a bundle's nodes and
tensors back through the same tables (``hwsim.bundle.build`` and ``save_bundle`` use it),
so a key exists in exactly one place. The meaning of each key is docs/export-format.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from hwsim.bundle.graph import (
    AvgPoolSumNode,
    BundleMeta,
    Conv2dNode,
    LinearNode,
    MaxPoolNode,
    Node,
    RequantInput,
    RequantNode,
    TensorSpec,
)
from hwsim.fixed import CodeFormat

FORMAT_VERSION = 2  # what the writer writes
FORMAT_VERSIONS: tuple[int, ...] = (1, 2)  # what the loader reads (1: half_up only, no node rounding)
GRAPH_FILE = "graph.yaml"
TENSORS_FILE = "tensors.npz"
REFERENCE_FILE = "reference.npz"
TENSOR_KINDS: tuple[str, ...] = ("codes", "acc")
REQUANT_FUNCTIONS: tuple[str, ...] = ("clamp", "sign")


@dataclass(frozen=True)
class Key:
    """One key of a graph.yaml mapping: its name, whether it may be left out, and how to write it.

    ``get`` reads the key's value off the typed object (``None`` leaves an optional key out);
    ``since`` is the first format_version that knows the key.
    """

    name: str
    get: Callable[[Any], Any]
    optional: bool = False
    since: int = 1


def _keys_of(keys: Iterable[Key], version: int) -> tuple[set[str], set[str]]:
    known = [k for k in keys if k.since <= version]
    return {k.name for k in known if not k.optional}, {k.name for k in known if k.optional}


def required_and_optional(keys: tuple[Key, ...], version: int = FORMAT_VERSION) -> tuple[set[str], set[str]]:
    """The required and the optional key names of a table in ``version``."""
    return _keys_of(keys, version)


def write(keys: tuple[Key, ...], obj: Any) -> dict[str, Any]:
    """The mapping of ``obj`` in the table's order, optional keys whose value is ``None`` left out."""
    out: dict[str, Any] = {}
    for key in keys:
        value = key.get(obj)
        if value is None and key.optional:
            continue
        out[key.name] = value
    return out


def _fmt(fmt: CodeFormat | None) -> dict[str, Any] | None:
    return None if fmt is None else fmt.to_yaml()


# --- integer formats, tensors, the input --------------------------------------------------------

FORMAT_KEYS: tuple[Key, ...] = (
    Key("bits", lambda f: int(f.bits)),
    Key("signed", lambda f: bool(f.signed)),
    Key("nominal_bits", lambda f: int(f.nominal_bits) if f.nominal_bits != f.bits else None, optional=True),
    Key("lattice", lambda f: f.lattice if f.lattice != "full" else None, optional=True),
)

TENSOR_KEYS: dict[str, tuple[Key, ...]] = {
    "codes": (
        Key("shape", lambda t: [int(v) for v in t.shape]),
        Key("kind", lambda t: t.kind),
        Key("format", lambda t: _fmt(t.fmt)),
        Key("scale", lambda t: float(t.scale)),
    ),
    "acc": (
        Key("shape", lambda t: [int(v) for v in t.shape]),
        Key("kind", lambda t: t.kind),
    ),
}

INPUT_KEYS: tuple[Key, ...] = (
    Key("tensor", lambda m: m.input_tensor),
    Key("mean", lambda m: [float(v) for v in m.input_mean]),
    Key("std", lambda m: [float(v) for v in m.input_std]),
)

# --- nodes ----------------------------------------------------------------------------------------

_MAC_KEYS: tuple[Key, ...] = (
    Key("name", lambda n: n.name),
    Key("op", lambda n: n.op),
    Key("input", lambda n: n.input),
    Key("output", lambda n: n.output),
    Key("weight", lambda n: n.weight_key),
    Key("weight_format", lambda n: n.weight_format.to_yaml()),
    Key("weight_scale", lambda n: n.weight_scale_key),
)

REQUANT_INPUT_KEYS: tuple[Key, ...] = (
    Key("tensor", lambda i: i.tensor),
    Key("multiplier", lambda i: i.multiplier_key),
    Key("bias", lambda i: i.bias_key, optional=True),
)

NODE_KEYS: dict[str, tuple[Key, ...]] = {
    "conv2d": (
        *_MAC_KEYS,
        Key("stride", lambda n: [int(v) for v in n.stride]),
        Key("padding", lambda n: [int(v) for v in n.padding]),
        Key("groups", lambda n: int(n.groups)),
    ),
    "linear": _MAC_KEYS,
    "requant": (
        Key("name", lambda n: n.name),
        Key("op", lambda n: n.op),
        Key("function", lambda n: n.function),
        Key("rounding", lambda n: n.rounding, optional=True, since=2),
        Key("inputs", lambda n: [write(REQUANT_INPUT_KEYS, i) for i in n.inputs]),
        Key("shift", lambda n: n.shift_key),
        Key("output", lambda n: n.output),
        Key("offset", lambda n: n.offset_key, optional=True),
    ),
    "avgpool_sum": (
        Key("name", lambda n: n.name),
        Key("op", lambda n: n.op),
        Key("input", lambda n: n.input),
        Key("output", lambda n: n.output),
    ),
    "maxpool": (
        Key("name", lambda n: n.name, since=2),
        Key("op", lambda n: n.op, since=2),
        Key("input", lambda n: n.input, since=2),
        Key("output", lambda n: n.output, since=2),
        Key("kernel", lambda n: [int(v) for v in n.kernel], since=2),
        Key("stride", lambda n: [int(v) for v in n.stride], since=2),
        Key("padding", lambda n: [int(v) for v in n.padding], since=2),
    ),
}
OPS: tuple[str, ...] = tuple(NODE_KEYS)
NODE_TYPES: dict[str, type] = {
    "conv2d": Conv2dNode,
    "linear": LinearNode,
    "requant": RequantNode,
    "avgpool_sum": AvgPoolSumNode,
    "maxpool": MaxPoolNode,
}


def op_since(op: str) -> int:
    """The first format_version that knows ``op`` (that of its earliest key)."""
    return min(k.since for k in NODE_KEYS[op])


# --- the top level ----------------------------------------------------------------------------------

TOP_KEYS: tuple[Key, ...] = (
    Key("format_version", lambda g: FORMAT_VERSION),
    Key("model", lambda g: g.meta.model, optional=True),
    Key("rounding", lambda g: g.meta.rounding),
    Key("acc_bits", lambda g: int(g.meta.acc_bits)),
    Key("mult_bits", lambda g: int(g.meta.mult_bits)),
    Key("input", lambda g: write(INPUT_KEYS, g.meta)),
    Key("output", lambda g: g.meta.output),
    Key("quantization", lambda g: _plain(dict(g.meta.quantization)), optional=True),
    Key(
        "reference",
        lambda g: _plain(dict(g.meta.reference)) if g.meta.reference is not None else None,
        optional=True,
    ),
    Key("tensors", lambda g: {name: write(TENSOR_KEYS[t.kind], t) for name, t in g.tensors.items()}),
    Key("nodes", lambda g: [write(NODE_KEYS[n.op], n) for n in g.nodes]),
)


@dataclass(frozen=True)
class _Graph:
    meta: BundleMeta
    tensors: Mapping[str, TensorSpec]
    nodes: tuple[Node, ...]


def graph_yaml(meta: BundleMeta, tensors: Mapping[str, TensorSpec], nodes: Iterable[Node]) -> dict[str, Any]:
    """The graph.yaml mapping (current :data:`FORMAT_VERSION`) of a bundle's metadata, tensors and nodes."""
    return write(TOP_KEYS, _Graph(meta, tensors, tuple(nodes)))


def graph_text(graph: Mapping[str, Any]) -> str:
    """graph.yaml as text: keys in the spec's order, small mappings and lists inline, plain numbers."""
    return yaml.safe_dump(_plain(dict(graph)), sort_keys=False, default_flow_style=None, width=120)


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples as plain Python (graph.yaml holds no numpy reprs)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    return value


plain = _plain


__all__ = [
    "FORMAT_KEYS",
    "FORMAT_VERSION",
    "FORMAT_VERSIONS",
    "GRAPH_FILE",
    "INPUT_KEYS",
    "NODE_KEYS",
    "NODE_TYPES",
    "OPS",
    "REFERENCE_FILE",
    "REQUANT_FUNCTIONS",
    "REQUANT_INPUT_KEYS",
    "TENSORS_FILE",
    "TENSOR_KEYS",
    "TENSOR_KINDS",
    "TOP_KEYS",
    "Key",
    "RequantInput",
    "graph_text",
    "graph_yaml",
    "op_since",
    "plain",
    "required_and_optional",
    "write",
]
