"""The bundled pretrained models: lists the exported bundles shipped in ``hwsim/pretrained/bundles/``.

Place in the flow: ``qat train`` -> ``qat export`` -> ``hwsim.pretrained.pack`` copies the bundle
(compact reference, optional checkpoint) into ``bundles/<name>/`` -> this module lists them, with
the per-model record of ``bundles/MANIFEST.yaml`` -> ``hwsim demo`` runs them. Every bundle is an
ordinary bundle directory (docs/export-format.md), so any ``hwsim`` command takes its path.

``MANIFEST.yaml`` (optional; its fields are described in ``bundles/README.md``)::

    manifest_version: 1
    primary: dorefa_a4w4            # the model the demo's w_bits/a_bits sweeps run on
    models:                          # in the order the demo shows them
      dorefa_a4w4:                   # = the directory bundles/dorefa_a4w4/
        title: DoReFa a4w4           # short label for tables and plots
        method: dorefa               # the scheme: dorefa, pact, xnor, ternary, lsq, mixed
        w_bits: 4                    # nominal widths as the method names them: an int, or "mixed"
        a_bits: 4
        config: configs/quant/dorefa_a4w4.yaml   # the quantization config it was trained with
        checkpoint: checkpoint.pt    # in the bundle directory, for qat eval / qat export; or null
        commands: [qat train ..., qat export ..., python -m hwsim.pretrained.pack ...]
        top1_pytorch: 0.289          # the PyTorch QAT model's top-1 (fraction) on eval_set
        eval_set: CIFAR-10 test split, first 1017 images
        notes: free text
    float:                           # optional: the float model the QAT runs started from
      checkpoint: float_resnet20.pt  # in the bundles directory, or null
      top1_pytorch: 0.6834           # on eval_set: the baseline of the accuracy drops
      eval_set: CIFAR-10 test split, first 1017 images
      commands: [qat train ...]

A bundle directory without a manifest entry is still listed, with what its graph.yaml says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.bundle import GRAPH_FILE
from hwsim.errors import UserError, shown
from hwsim.output import safe_name
from hwsim.yaml_io import YamlError, read_yaml

BUNDLES_DIR = Path(__file__).resolve().parent / "bundles"
MANIFEST_FILE = "MANIFEST.yaml"
MANIFEST_VERSION = 1

_REQUIRED = ("title", "method", "w_bits", "a_bits", "config", "commands")
_OPTIONAL = ("checkpoint", "top1_pytorch", "eval_set", "notes")
_FLOAT_REQUIRED = ("top1_pytorch", "commands")
_FLOAT_OPTIONAL = ("checkpoint", "eval_set")
_TOP_LEVEL = ("manifest_version", "primary", "models", "float")


class ManifestError(UserError):
    """A MANIFEST.yaml that breaks the format above: names the file, the model and the field."""


@dataclass(frozen=True)
class PretrainedModel:
    """One bundled model: its bundle directory and what the manifest records about it."""

    name: str
    path: Path
    title: str
    method: str
    w_bits: int | str
    a_bits: int | str
    config: str | None = None
    checkpoint: Path | None = None
    commands: tuple[str, ...] = ()
    top1_pytorch: float | None = None
    eval_set: str | None = None
    notes: str | None = None
    in_manifest: bool = True

    def __post_init__(self) -> None:
        for fld in ("w_bits", "a_bits"):
            value = getattr(self, fld)
            ok = (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 32) or (
                isinstance(value, str) and value != ""
            )
            if not ok:
                raise ManifestError(
                    f"model '{self.name}', field '{fld}': {value!r}; expected a width 1..32 or a word "
                    "such as 'mixed'"
                )
        _check_top1(f"model '{self.name}'", self.top1_pytorch)

    @property
    def bits_label(self) -> str:
        """``w4/a4``, ``w1/a1``, ``mixed``."""
        return self._bits("w", "a")

    @property
    def widths_label(self) -> str:
        """``4/4``, ``2/8``, ``mixed``: weights/activations, for tables with a "w/a" header."""
        return self._bits("", "")

    def _bits(self, w: str, a: str) -> str:
        if self.w_bits == self.a_bits and isinstance(self.w_bits, str):
            return self.w_bits
        return f"{w}{self.w_bits}/{a}{self.a_bits}"


@dataclass(frozen=True)
class FloatBaseline:
    """The float model the bundled QAT models were fine-tuned from: the baseline of accuracy drops."""

    top1_pytorch: float
    commands: tuple[str, ...]
    checkpoint: Path | None = None
    eval_set: str | None = None

    def __post_init__(self) -> None:
        _check_top1("float", self.top1_pytorch)


def _check_top1(where: str, top1: object) -> None:
    if top1 is not None and (
        isinstance(top1, bool)
        or not isinstance(top1, (int, float))
        or not math.isfinite(top1)
        or not 0.0 <= top1 <= 1.0
    ):
        raise ManifestError(
            f"{where}, field 'top1_pytorch': {shown(top1)}; expected a fraction in [0, 1] (0.91, not 91)"
        )


def _is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / GRAPH_FILE).is_file()


def _from_graph(name: str, path: Path) -> PretrainedModel:
    """What graph.yaml says of a bundle without a manifest entry (its quantization record)."""
    try:
        graph = read_yaml(path / GRAPH_FILE) or {}
    except (OSError, YamlError):
        graph = {}
    quant = graph.get("quantization") if isinstance(graph, dict) else None
    default = (quant or {}).get("config", {}).get("default", {}) if isinstance(quant, dict) else {}
    weight = default.get("weight", {}) if isinstance(default, dict) else {}
    act = default.get("activation", {}) if isinstance(default, dict) else {}

    def bits(part: Any) -> int | str:
        value = part.get("bits") if isinstance(part, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 32 else "?"

    method = weight.get("method") if isinstance(weight, dict) else None
    return PretrainedModel(
        name=name,
        path=path,
        title=name,
        method=str(method or "unknown"),
        w_bits=bits(weight),
        a_bits=bits(act),
        in_manifest=False,
    )


def _check_fields(
    path: Path, where: str, entry: Any, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    if not isinstance(entry, dict):
        raise ManifestError(f"{path}: {where}: expected a mapping of fields, got {shown(entry)}")
    missing = [k for k in required if k not in entry]
    unknown = sorted(set(entry) - set(required) - set(optional))
    if missing or unknown:
        problem = f"field '{missing[0]}' is missing" if missing else f"field '{unknown[0]}' is unknown"
        raise ManifestError(
            f"{path}: {where}: {problem}; fields: {', '.join(required)} (required), "
            f"{', '.join(optional)} (optional)"
        )
    commands = entry["commands"]
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise ManifestError(f"{path}: {where}, field 'commands': expected a list of command lines")


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    """The checked ``MANIFEST.yaml`` of ``directory`` as a dict, or None when there is none."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        doc = read_yaml(path)
    except OSError as err:
        raise ManifestError(f"{path}: cannot read it ({err.strerror}); fix the file") from None
    except YamlError as err:
        raise ManifestError(f"{err}; fix the file") from None
    if not isinstance(doc, dict) or set(doc) - set(_TOP_LEVEL):
        raise ManifestError(
            f"{path}: expected a mapping with keys {', '.join(_TOP_LEVEL)} (float optional); got "
            f"{shown(sorted(map(str, doc))) if isinstance(doc, dict) else type(doc).__name__}"
        )
    if doc.get("manifest_version") != MANIFEST_VERSION:
        raise ManifestError(
            f"{path}: field 'manifest_version' is {shown(doc.get('manifest_version'))}; expected "
            f"{MANIFEST_VERSION}"
        )
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise ManifestError(f"{path}: field 'models' must map each bundle directory name to its record")
    for name, entry in models.items():
        safe_name(name, f"{path}: field 'models', a bundle directory name")  # a path from data
        _check_fields(path, f"model '{name}'", entry, _REQUIRED, _OPTIONAL)
    primary = doc.get("primary")
    if primary is not None and primary not in models:
        raise ManifestError(
            f"{path}: field 'primary' is {shown(primary)}, which is not a model of the manifest; "
            f"models: {', '.join(models)}"
        )
    if "float" in doc:
        _check_fields(path, "float", doc["float"], _FLOAT_REQUIRED, _FLOAT_OPTIONAL)
    return doc


def load_manifest(directory: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """``MANIFEST.yaml`` of ``directory`` as ``({name: entry}, primary)``; empty when there is none."""
    doc = _read_manifest(directory)
    if doc is None:
        return {}, None
    return doc["models"], doc.get("primary")


def float_baseline(directory: Path | None = None) -> FloatBaseline | None:
    """The manifest's ``float`` record (the QAT models' starting point), or None without one."""
    directory = Path(directory) if directory is not None else BUNDLES_DIR
    doc = _read_manifest(directory)
    if doc is None or "float" not in doc:
        return None
    entry = doc["float"]
    checkpoint = entry.get("checkpoint")
    if checkpoint and not (directory / checkpoint).is_file():
        raise ManifestError(
            f"{directory / MANIFEST_FILE}: float, field 'checkpoint': {directory / checkpoint} does not "
            "exist; copy the float checkpoint there or set checkpoint: null"
        )
    return FloatBaseline(
        top1_pytorch=entry["top1_pytorch"],
        commands=tuple(entry["commands"]),
        checkpoint=(directory / checkpoint) if checkpoint else None,
        eval_set=entry.get("eval_set"),
    )


def list_bundles(directory: Path | None = None) -> list[PretrainedModel]:
    """The bundles under ``directory`` (default: the package's): manifest order first, then the rest by name.

    A manifest entry whose directory is missing (or holds no graph.yaml) is an error: the package
    would promise a model it does not ship.
    """
    directory = Path(directory) if directory is not None else BUNDLES_DIR
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory of bundles; expected one bundle directory per model")
    entries, _ = load_manifest(directory)
    models: list[PretrainedModel] = []
    for name, entry in entries.items():
        path = directory / name
        if not _is_bundle(path):
            raise ManifestError(
                f"{directory / MANIFEST_FILE}: model '{name}' has no bundle at {path} (no {GRAPH_FILE}); "
                "add the bundle (python -m hwsim.pretrained.pack) or remove the entry"
            )
        checkpoint = entry.get("checkpoint")
        if checkpoint and not (path / checkpoint).is_file():
            raise ManifestError(
                f"{directory / MANIFEST_FILE}: model '{name}', field 'checkpoint': {path / checkpoint} "
                "does not exist; copy the checkpoint there (python -m hwsim.pretrained.pack --checkpoint) "
                "or set checkpoint: null"
            )
        top1 = entry.get("top1_pytorch")
        models.append(
            PretrainedModel(
                name=name,
                path=path,
                title=str(entry["title"]),
                method=str(entry["method"]),
                w_bits=entry["w_bits"],
                a_bits=entry["a_bits"],
                config=entry.get("config"),
                checkpoint=(path / checkpoint) if checkpoint else None,
                commands=tuple(entry["commands"]),
                top1_pytorch=float(top1) if isinstance(top1, (int, float)) and math.isfinite(top1) else top1,
                eval_set=entry.get("eval_set"),
                notes=entry.get("notes"),
            )
        )
    listed = set(entries)
    for path in sorted(p for p in directory.iterdir() if _is_bundle(p) and p.name not in listed):
        models.append(_from_graph(path.name, path))
    return models


def primary_model(models: list[PretrainedModel], directory: Path | None = None) -> PretrainedModel | None:
    """The manifest's ``primary`` model when it is among ``models``, else the first of ``models``."""
    _, primary = load_manifest(Path(directory) if directory is not None else BUNDLES_DIR)
    for model in models:
        if model.name == primary:
            return model
    return models[0] if models else None
