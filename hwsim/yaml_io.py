"""The project's one YAML reader: hardware and quantization configs, graph.yaml, bundle manifests.

Place in the flow: the edge. ``hwsim.hwconfig.load_hw_config``, ``qat.config.load_config``,
``hwsim.bundle.load`` and ``hwsim.pretrained`` read their files with :func:`read_yaml` and then
check the schema of what it returns. Whatever the bytes, it returns plain data (dicts, lists,
strings, numbers, booleans, None) or raises one :class:`YamlError` that names the file, the line
and column where known, what was wrong and what is expected; memory and time stay bounded
(``hwsim.limits``):

* the file's size is checked before it is read; bytes that are not UTF-8 are refused with their offset;
* a syntax error names its line and column;
* a key that appears twice in one mapping is an error naming the key and both lines;
* aliases may repeat at most :data:`~hwsim.limits.YAML_ALIAS_NODES` nodes in all, a recursive
  alias is refused, and lists and mappings nest at most :data:`~hwsim.limits.YAML_DEPTH` deep,
  so a billion-laughs or a 20,000-deep document is refused while it is parsed;
* dates stay strings (no schema of the project holds a date, and ``2001-02-30`` is no error here),
  and a scalar that cannot be converted (``!!float x``, an integer of 5,000 digits) is an error at its line.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node

from hwsim import limits
from hwsim.errors import UserError, shown

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_PROBLEM_CHARS = 400


class YamlError(UserError):
    """A YAML file that cannot be read as plain data; ``str()`` is ``FILE: line L, column C: problem``."""

    def __init__(self, source: str, problem: str, line: int | None = None, column: int | None = None):
        if len(problem) > _PROBLEM_CHARS:  # PyYAML's own texts may quote the input (an anchor's name, ...)
            problem = problem[: _PROBLEM_CHARS - 3] + "..."
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        at = f"line {line}, column {column}: " if line is not None and column is not None else ""
        super().__init__(f"{source}: {at}{problem}")


class _Refused(yaml.MarkedYAMLError):
    """A document this reader refuses (too deep, too large, duplicate key), at a position."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with duplicate keys, alias expansion, depth and size bounded."""

    # The safe schema without timestamps: a date stays the string it is written as.
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0  # nodes of the document, each alias counted as the nodes it repeats
        self._aliased = 0  # nodes repeated by aliases
        self._sizes: dict[int, int] = {}  # id(anchored node) -> its size, once composed
        self._max_nodes = limits.YAML_NODES.value()

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise _Refused(
                        None,
                        None,
                        f"alias *{event.anchor} refers to a node that contains it",
                        event.start_mark,
                    )
                self._aliased += size
                if self._aliased > limits.YAML_ALIAS_NODES:
                    raise _Refused(
                        None,
                        None,
                        f"aliases repeat more than {limits.YAML_ALIAS_NODES} nodes in all "
                        f"(at *{event.anchor}); write the values out instead of repeating them with aliases",
                        event.start_mark,
                    )
                self._count(size, event)
            return super().compose_node(parent, index)
        collection = isinstance(event, CollectionStartEvent)
        if collection:
            self._depth += 1
            if self._depth > limits.YAML_DEPTH:
                raise _Refused(
                    None,
                    None,
                    f"lists and mappings nested more than {limits.YAML_DEPTH} deep; "
                    "expected a shallow document",
                    event.start_mark,
                )
        before = self._nodes
        self._count(1, event)
        node = super().compose_node(parent, index)
        if collection:
            self._depth -= 1
        if event.anchor is not None:
            self._sizes[id(node)] = self._nodes - before
        return node

    def _count(self, nodes: int, event: Any) -> None:
        self._nodes += nodes
        if self._nodes > self._max_nodes:
            raise _Refused(
                None,
                None,
                f"more than {self._max_nodes} values in one document; {limits.YAML_NODES.how_to_raise()}",
                event.start_mark,
            )

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the safe constructor refuses it, at its line
                if key in first:
                    raise _Refused(
                        None,
                        None,
                        f"duplicate key {shown(key)} (first at line {first[key].start_mark.line + 1}); "
                        "expected each key once in a mapping; remove or rename one of them",
                        key_node.start_mark,
                    )
                first[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:  # int("9" * 5000), a malformed !!timestamp, ...
            tag = node.tag.rpartition(":")[2]
            raise _Refused(
                None,
                None,
                f"cannot read {shown(node.value)} as {tag} ({shown(str(err), 80)}); expected a valid {tag}",
                node.start_mark,
            ) from None


def is_finite_number(value: object) -> bool:
    """A YAML number for a schema: an int or float (not a bool) that a float holds, finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def parse_yaml(data: str | bytes, source: str) -> Any:
    """The plain data of the YAML document ``data`` (empty: None); ``source`` names it in errors."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise YamlError(
                source,
                f"byte {err.start} (line {line}) is not UTF-8 ({data[err.start : err.start + 4]!r}...); "
                "expected a UTF-8 text file",
            ) from None
    else:
        text = data
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "unreadable"
        if not isinstance(err, _Refused):
            detail = f"{problem}" + (f", {err.context}" if err.context and err.problem else "")
            problem = f"not valid YAML ({detail})"
        if mark is None:
            raise YamlError(source, problem) from None
        raise YamlError(source, problem, mark.line + 1, mark.column + 1) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        offset = len(text[: err.position].encode("utf-8"))
        raise YamlError(
            source,
            f"character {chr(err.character)!r} at byte {offset} (line {line}) is not allowed in YAML; "
            "expected printable text",
        ) from None
    except yaml.YAMLError as err:
        raise YamlError(source, f"not valid YAML ({shown(str(err), 200)})") from None
    except (ValueError, OverflowError, TypeError, RecursionError, MemoryError) as err:
        raise YamlError(
            source, f"cannot read the document ({type(err).__name__}: {shown(str(err), 200)})"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The plain data of the YAML file ``path`` (empty file: None).

    ``OSError`` (missing, unreadable) passes through for the caller to word; everything wrong with
    the contents raises :class:`YamlError`.
    """
    path = Path(path)
    cap = limits.YAML_BYTES.value()
    with path.open("rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise YamlError(
            str(path),
            f"larger than {cap} bytes; expected a small YAML file; {limits.YAML_BYTES.how_to_raise()}",
        )
    return parse_yaml(data, str(path))
