"""Mixed-precision configuration: which quantizer every layer of a model gets, from YAML.

Place in the flow: ``qat train --quant CFG.yaml`` parses a file with :func:`load_config` (the
only place YAML is read) into a frozen :class:`QuantConfig`; :func:`resolve` applies it to a
model's :class:`ModelLayout` (the list of its conv/linear layers and activation quantizers,
recorded by ``qat.models.build_model``) and gives a :class:`ResolvedQuant`: one
``QuantSpec`` per module name. The checkpoint stores ``ResolvedQuant.to_dict()``, a plain dict
that :func:`config_from_dict` loads back to the same resolution.

The file (see configs/quant/README.md)::

    default: {weight: {method: dorefa, bits: 4}, activation: {method: pact, bits: 4}}
    input: {bits: 8}        # optional: the network input quantizer (signed), default 8
    logits: {bits: 16}      # optional: the logits' common signed format, default 16
    layers:
      conv1: {weight: {bits: 8}, activation: {bits: 8}}
      fc:    {weight: {bits: 8}}
      "layer3.*.conv2": {weight: {bits: 2}}

Semantics:

* Keys of ``layers`` are module names (``layer1.0.conv1``) or ``fnmatch`` globs
  (``layer3.*.conv2``); entries apply in file order, later ones override earlier ones. Every key
  must match at least one module, and every field of a non-glob entry must apply to it.
* On a conv/linear layer, ``weight`` sets its weight quantizer and ``activation`` the
  activation quantizer of its OUTPUT (the QAct after its BN; for a residual block's ``conv2``
  the ``act2`` after the add). A shortcut conv and the classifier have no activation of their
  own: ``activation`` there is an error that says where to set it. A key may also name an
  activation quantizer directly (``layer3.2.act2``); it takes only ``activation``.
* A spec mapping has the fields ``method`` (one of ``qat.quantizers.METHODS``), ``bits``
  (1..32), ``per_channel``, ``pact_init``, ``pact_l2``; an override merges field by field over
  what the module had so far (``{bits: 8}`` keeps the default's method; ``{method: xnor}`` and
  ``{method: ternary}`` imply 1 and 2 bits). ``bits: 32`` or ``method: float`` means not quantized.
* Seed-style lists: ``layer_wbit: [...]`` and ``layer_abit: [...]`` hold one entry per
  conv/linear layer in model order, EXCLUDING shortcut convs (ResNet20: ``conv1``, the 18 block
  convs, ``fc`` = 20 entries). ``layer_wbit[i]`` is the weight width of layer ``i``;
  ``layer_abit[i]`` the width of the activation after layer ``i`` (its output, as above), 32 for
  the classifier (its output is the logits, set by ``logits``). 32 = not quantized; the
  method comes from ``default``. A shortcut conv takes the ``layer_wbit`` entry of the first
  conv of its block (both read the block's input). ``layers`` entries apply after the lists.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.errors import UserError, shown
from hwsim.yaml_io import YamlError, is_finite_number, read_yaml
from qat.quantizers import MAX_CODE_BITS, METHODS, QuantSpec, make_act_quantizer, make_weight_quantizer

TOP_KEYS: tuple[str, ...] = ("default", "input", "logits", "layers", "layer_wbit", "layer_abit")
ENTRY_KEYS: tuple[str, ...] = ("weight", "activation")
SPEC_FIELDS: tuple[str, ...] = ("method", "bits", "per_channel", "pact_init", "pact_l2")
FLOAT_BITS = 32
NATURAL_BITS: dict[str, int] = {"xnor": 1, "ternary": 2}  # methods with a single legal width
DEFAULT_INPUT_BITS = 8
DEFAULT_LOGITS_BITS = 16


class ConfigError(UserError):
    """A quantization config that is malformed or does not fit the model; the message says where."""


def _label(key: Any) -> str:
    """A layer key as messages name it: ``layers.conv1``, or a short repr of anything else."""
    return key if isinstance(key, str) and len(key) <= 80 else shown(key)


def _is_glob(key: str) -> bool:
    return any(ch in key for ch in "*?[")


def _check_code_bits(value: Any, where: str) -> int:
    """The input and logits formats: signed narrow codes of 2..MAX_CODE_BITS bits."""
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_CODE_BITS:
        raise ConfigError(
            f"{where}: bits={shown(value)} must be an integer in 2..{MAX_CODE_BITS} (signed codes; "
            "the input and the logits are always quantized)"
        )
    return value


def _check_bits(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: bits must be an integer 1..{FLOAT_BITS}, got {shown(value)}")
    if not 1 <= value <= FLOAT_BITS:
        raise ConfigError(f"{where}: bits={value} is outside 1..{FLOAT_BITS} ({FLOAT_BITS} = not quantized)")
    return value


def make_spec(fields: Mapping[str, Any], where: str) -> QuantSpec:
    """A validated ``QuantSpec``; ``method: float`` or ``bits: 32`` mean not quantized."""
    fields = dict(fields)
    if fields.get("method") == "float" or fields.get("bits") == FLOAT_BITS:
        return QuantSpec()
    try:
        return QuantSpec(**fields)
    except (UserError, ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None


@dataclass(frozen=True)
class SpecPatch:
    """The fields one YAML spec mapping sets; ``None`` keeps what the module had."""

    method: str | None = None
    bits: int | None = None
    per_channel: bool | None = None
    pact_init: float | None = None
    pact_l2: float | None = None

    def apply(self, base: QuantSpec, where: str) -> QuantSpec:
        """``base`` with this patch's fields replaced, validated."""
        fields = {f: getattr(base, f) for f in SPEC_FIELDS}
        patch = {f: getattr(self, f) for f in SPEC_FIELDS if getattr(self, f) is not None}
        if patch.get("method") in NATURAL_BITS and "bits" not in patch:
            patch["bits"] = NATURAL_BITS[patch["method"]]
        if base.is_float and "method" not in patch and patch.get("bits", FLOAT_BITS) != FLOAT_BITS:
            raise ConfigError(
                f"{where}: sets bits={patch['bits']} on a module that is not quantized (method float) "
                f"without naming a method; add method: one of {list(METHODS)}"
            )
        if patch.get("method") not in (None, "float") and base.is_float and "bits" not in patch:
            raise ConfigError(
                f"{where}: sets method={patch['method']} on a module that is not quantized without "
                "naming bits; add bits: N"
            )
        fields.update(patch)
        return make_spec(fields, where)

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in SPEC_FIELDS if getattr(self, f) is not None}

    @classmethod
    def parse(cls, raw: Any, where: str) -> SpecPatch:
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping with fields {list(SPEC_FIELDS)}, "
                f"got {type(raw).__name__} {shown(raw)}"
            )
        unknown = [k for k in raw if k not in SPEC_FIELDS]
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {shown(unknown)}; valid fields: {list(SPEC_FIELDS)}"
            )
        method = raw.get("method")
        if method is not None and method not in METHODS:
            raise ConfigError(
                f"{where}.method: {shown(method)} is not a method; valid methods: {list(METHODS)}"
            )
        bits = raw.get("bits")
        if bits is not None:
            _check_bits(bits, f"{where}.bits")
        per_channel = raw.get("per_channel")
        if per_channel is not None and not isinstance(per_channel, bool):
            raise ConfigError(f"{where}.per_channel: expected true or false, got {shown(per_channel)}")
        numbers: dict[str, float | None] = {}
        for name in ("pact_init", "pact_l2"):
            value = raw.get(name)
            if value is not None and not is_finite_number(value):
                raise ConfigError(f"{where}.{name}: expected a finite number, got {shown(value)}")
            numbers[name] = None if value is None else float(value)
        return cls(method=method, bits=bits, per_channel=per_channel, **numbers)


@dataclass(frozen=True)
class LayerEntry:
    """One ``layers:`` entry: a module name or glob and the fields it sets."""

    key: str
    weight: SpecPatch | None = None
    activation: SpecPatch | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.weight is not None:
            out["weight"] = self.weight.to_dict()
        if self.activation is not None:
            out["activation"] = self.activation.to_dict()
        return out


@dataclass(frozen=True)
class QuantConfig:
    """A parsed quantization config (model-independent until :func:`resolve`). Default: float."""

    weight: QuantSpec = dataclasses.field(default_factory=QuantSpec)
    activation: QuantSpec = dataclasses.field(default_factory=QuantSpec)
    input_bits: int = DEFAULT_INPUT_BITS
    logits_bits: int = DEFAULT_LOGITS_BITS
    layers: tuple[LayerEntry, ...] = ()
    layer_wbit: tuple[int, ...] | None = None
    layer_abit: tuple[int, ...] | None = None
    source: str = "quantization config"

    def __post_init__(self) -> None:
        _check_code_bits(self.input_bits, f"{self.source}: input")
        _check_code_bits(self.logits_bits, f"{self.source}: logits")
        for name in ("layer_wbit", "layer_abit"):
            values = getattr(self, name)
            if values is not None:
                for i, v in enumerate(values):
                    _check_bits(v, f"{self.source}: {name}[{i}]")

    @property
    def is_float(self) -> bool:
        """True when nothing but the input and logits formats is quantized."""
        return (
            self.weight.is_float
            and self.activation.is_float
            and not self.layers
            and self.layer_wbit is None
            and self.layer_abit is None
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "default": {"weight": spec_to_dict(self.weight), "activation": spec_to_dict(self.activation)},
            "input": {"bits": self.input_bits},
            "logits": {"bits": self.logits_bits},
        }
        if self.layer_wbit is not None:
            out["layer_wbit"] = list(self.layer_wbit)
        if self.layer_abit is not None:
            out["layer_abit"] = list(self.layer_abit)
        if self.layers:
            out["layers"] = {e.key: e.to_dict() for e in self.layers}
        return out


def spec_to_dict(spec: QuantSpec) -> dict[str, Any]:
    """A ``QuantSpec`` as the YAML mapping that :class:`SpecPatch` parses back."""
    if spec.is_float:
        return {"method": "float"}
    return {f: getattr(spec, f) for f in SPEC_FIELDS}


def config_from_dict(raw: Any, source: str = "quantization config") -> QuantConfig:
    """Parse the loaded YAML structure into a :class:`QuantConfig`; ``source`` names it in errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping with keys {list(TOP_KEYS)}, got {type(raw).__name__}"
        )
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {shown(unknown)}; valid top-level keys: {list(TOP_KEYS)}"
        )

    default = raw.get("default") or {}
    if not isinstance(default, Mapping):
        raise ConfigError(f"{source}: default: expected a mapping with 'weight' and/or 'activation'")
    bad = [k for k in default if k not in ENTRY_KEYS]
    if bad:
        raise ConfigError(f"{source}: default: unknown key(s) {shown(bad)}; valid keys: {list(ENTRY_KEYS)}")
    weight = (
        SpecPatch.parse(default.get("weight", {}), f"{source}: default.weight").apply(
            QuantSpec(), f"{source}: default.weight"
        )
        if "weight" in default
        else QuantSpec()
    )
    activation = (
        SpecPatch.parse(default.get("activation", {}), f"{source}: default.activation").apply(
            QuantSpec(), f"{source}: default.activation"
        )
        if "activation" in default
        else QuantSpec()
    )

    def _bits_of(key: str, fallback: int) -> int:
        value = raw.get(key)
        if value is None:
            return fallback
        if not isinstance(value, Mapping) or set(value) - {"bits"}:
            raise ConfigError(f"{source}: {key}: expected {{bits: N}}, got {shown(value)}")
        return _check_code_bits(value.get("bits", fallback), f"{source}: {key}.bits")

    layers_raw = raw.get("layers") or {}
    if not isinstance(layers_raw, Mapping):
        raise ConfigError(f"{source}: layers: expected a mapping of module name (or glob) -> entry")
    entries = []
    for key, value in layers_raw.items():
        where = f"{source}: layers.{_label(key)}"
        if not isinstance(key, str):
            raise ConfigError(f"{where}: layer keys must be strings (module names or globs)")
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(f"{where}: expected a mapping with {list(ENTRY_KEYS)}, got {shown(value)}")
        bad = [k for k in value if k not in ENTRY_KEYS]
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {shown(bad)}; valid keys: {list(ENTRY_KEYS)}")
        entries.append(
            LayerEntry(
                key=key,
                weight=SpecPatch.parse(value["weight"], f"{where}.weight") if "weight" in value else None,
                activation=(
                    SpecPatch.parse(value["activation"], f"{where}.activation")
                    if "activation" in value
                    else None
                ),
            )
        )

    lists: dict[str, tuple[int, ...] | None] = {}
    for name in ("layer_wbit", "layer_abit"):
        value = raw.get(name)
        if value is not None and not isinstance(value, list):
            raise ConfigError(f"{source}: {name}: expected a list of bit widths, got {shown(value)}")
        lists[name] = (
            None
            if value is None
            else tuple(_check_bits(v, f"{source}: {name}[{i}]") for i, v in enumerate(value))
        )
    return QuantConfig(
        weight=weight,
        activation=activation,
        input_bits=_bits_of("input", DEFAULT_INPUT_BITS),
        logits_bits=_bits_of("logits", DEFAULT_LOGITS_BITS),
        layers=tuple(entries),
        layer_wbit=lists["layer_wbit"],
        layer_abit=lists["layer_abit"],
        source=source,
    )


def load_config(path: str | Path) -> QuantConfig:
    """Read a quantization YAML file with ``hwsim.yaml_io`` (the edge: nothing else in qat reads them)."""
    path = Path(path)
    try:
        raw = read_yaml(path)
    except OSError as err:
        raise ConfigError(
            f"--quant {path}: cannot read it ({err.strerror}); pass a file from configs/quant/"
        ) from None
    except YamlError as err:
        raise ConfigError(str(err)) from None
    return config_from_dict(raw, source=str(path))


# --- the model side: what a model has, and the resolution --------------------------------------


@dataclass(frozen=True)
class WeightLayer:
    """A conv/linear layer of a model, as the config sees it.

    ``output``: the activation quantizer of its output, or ``None`` (then ``no_output`` says where
    to set that activation instead). ``listed``: counted in ``layer_wbit``/``layer_abit``;
    an unlisted layer (a shortcut conv) takes the ``layer_wbit`` entry of ``follows``.
    """

    name: str
    output: str | None = None
    listed: bool = True
    follows: str | None = None
    no_output: str = ""


@dataclass(frozen=True)
class ModelLayout:
    """The quantizable modules of one model, in model order (recorded while building it)."""

    model: str
    weights: tuple[WeightLayer, ...]
    activations: tuple[str, ...]

    def __post_init__(self) -> None:
        names = [w.name for w in self.weights] + list(self.activations)
        if len(set(names)) != len(names):
            raise ValueError(f"{self.model}: duplicate module names in the layout")
        acts = set(self.activations)
        for w in self.weights:
            if w.output is not None and w.output not in acts:
                raise ValueError(f"{self.model}: {w.name}.output={w.output} is not an activation quantizer")

    @property
    def listed(self) -> tuple[WeightLayer, ...]:
        return tuple(w for w in self.weights if w.listed)

    def names(self) -> str:
        """All names a config may use, for error messages."""
        return (
            f"conv/linear layers: {', '.join(w.name for w in self.weights)}; "
            f"activation quantizers: {', '.join(self.activations)}"
        )


@dataclass(frozen=True)
class ResolvedQuant:
    """One ``QuantSpec`` for every conv/linear weight and every activation quantizer of a model."""

    weights: tuple[tuple[str, QuantSpec], ...]
    activations: tuple[tuple[str, QuantSpec], ...]
    input_bits: int = DEFAULT_INPUT_BITS
    logits_bits: int = DEFAULT_LOGITS_BITS

    def weight(self, name: str, **_registration: object) -> QuantSpec:
        """The weight spec of ``name`` (the :class:`LayoutRecorder` registration arguments are ignored)."""
        return dict(self.weights)[name]

    def activation(self, name: str) -> QuantSpec:
        return dict(self.activations)[name]

    def to_dict(self) -> dict[str, Any]:
        """Explicit per-module config (every module named, full specs): loads back to the same resolution."""
        layers: dict[str, Any] = {n: {"weight": spec_to_dict(s)} for n, s in self.weights}
        layers.update({n: {"activation": spec_to_dict(s)} for n, s in self.activations})
        return {
            "default": {"weight": {"method": "float"}, "activation": {"method": "float"}},
            "input": {"bits": self.input_bits},
            "logits": {"bits": self.logits_bits},
            "layers": layers,
        }

    def summary(self) -> str:
        """``name: weight / activation`` lines for logs."""

        def fmt(s: QuantSpec) -> str:
            return "float" if s.is_float else f"{s.method}{s.bits}"

        lines = [f"input: int{self.input_bits}"]
        lines += [f"{n}: w {fmt(s)}" for n, s in self.weights]
        lines += [f"{n}: a {fmt(s)}" for n, s in self.activations]
        lines.append(f"logits: int{self.logits_bits}")
        return "\n".join(lines)


class LayoutRecorder:
    """Stands in for a :class:`ResolvedQuant` while a model is built once to learn its layout.

    Models ask ``specs.weight(name, output=..., listed=..., follows=..., no_output=...)`` for every
    conv/linear layer and ``specs.activation(name)`` for every activation quantizer, in module
    order; the recorder answers "not quantized" and remembers the calls.
    """

    def __init__(
        self, model: str, input_bits: int = DEFAULT_INPUT_BITS, logits_bits: int = DEFAULT_LOGITS_BITS
    ):
        self.model = model
        self.input_bits = input_bits
        self.logits_bits = logits_bits
        self._weights: list[WeightLayer] = []
        self._activations: list[str] = []

    def weight(
        self,
        name: str,
        *,
        output: str | None = None,
        listed: bool = True,
        follows: str | None = None,
        no_output: str = "",
    ) -> QuantSpec:
        self._weights.append(WeightLayer(name, output, listed, follows, no_output))
        return QuantSpec()

    def activation(self, name: str) -> QuantSpec:
        self._activations.append(name)
        return QuantSpec()

    def layout(self) -> ModelLayout:
        return ModelLayout(self.model, tuple(self._weights), tuple(self._activations))


def resolve(config: QuantConfig, layout: ModelLayout) -> ResolvedQuant:
    """Apply ``config`` to the modules of ``layout``: default, then the lists, then ``layers`` in order."""
    src = config.source
    weights: dict[str, QuantSpec] = {w.name: config.weight for w in layout.weights}
    acts: dict[str, QuantSpec] = {a: config.activation for a in layout.activations}
    by_name = {w.name: w for w in layout.weights}
    listed = layout.listed

    if config.layer_wbit is not None or config.layer_abit is not None:
        order = ", ".join(f"{i}:{w.name}" for i, w in enumerate(listed))
        for list_name in ("layer_wbit", "layer_abit"):
            values = getattr(config, list_name)
            if values is not None and len(values) != len(listed):
                raise ConfigError(
                    f"{src}: {list_name} has {len(values)} entries but {layout.model} has {len(listed)} "
                    f"conv/linear layers (shortcut convs excluded), in this order: {order}"
                )
        index = {w.name: i for i, w in enumerate(listed)}
        if config.layer_wbit is not None:
            for w in layout.weights:
                i = index[w.name] if w.listed else index[w.follows or ""]
                bits = config.layer_wbit[i]
                weights[w.name] = _list_spec(config.weight, bits, f"{src}: layer_wbit[{i}] ({w.name})")
        if config.layer_abit is not None:
            for i, w in enumerate(listed):
                bits = config.layer_abit[i]
                where = f"{src}: layer_abit[{i}] ({w.name})"
                if w.output is None:
                    if bits != FLOAT_BITS:
                        raise ConfigError(
                            f"{where} = {bits}: {w.name} has no activation after it; "
                            f"{w.no_output}; write {FLOAT_BITS} here"
                        )
                    continue
                acts[w.output] = _list_spec(config.activation, bits, where)

    for entry in config.layers:
        where = f"{src}: layers.{entry.key}"
        glob = _is_glob(entry.key)
        matched_w = [n for n in by_name if fnmatch.fnmatchcase(n, entry.key)]
        matched_a = [n for n in acts if fnmatch.fnmatchcase(n, entry.key)]
        if not matched_w and not matched_a:
            raise ConfigError(
                f"{where}: {'no module matches this glob' if glob else 'no such module'} in {layout.model}; "
                f"valid names ({layout.names()})"
            )
        applied = False
        if entry.weight is not None:
            for n in matched_w:
                weights[n] = entry.weight.apply(weights[n], f"{where}.weight ({n})")
                applied = True
            if not glob and not matched_w:
                raise ConfigError(
                    f"{where}.weight: {entry.key} is an activation quantizer, it has no weights; "
                    "set weight on the conv/linear layer before it"
                )
        if entry.activation is not None:
            for n in matched_w:
                layer = by_name[n]
                if layer.output is None:
                    if not glob:
                        raise ConfigError(
                            f"{where}.activation: {n} has no activation of its own; {layer.no_output}"
                        )
                    continue
                acts[layer.output] = entry.activation.apply(acts[layer.output], f"{where}.activation ({n})")
                applied = True
            for n in matched_a:
                acts[n] = entry.activation.apply(acts[n], f"{where}.activation ({n})")
                applied = True
        if not applied:
            raise ConfigError(
                f"{where}: matches {', '.join(matched_w + matched_a)} but none of them takes the fields "
                f"given ({', '.join(entry.to_dict())}); valid names ({layout.names()})"
            )
    for name, spec in weights.items():
        _check_buildable(spec, "weight", name, src)
    for name, spec in acts.items():
        _check_buildable(spec, "activation", name, src)
    return ResolvedQuant(
        weights=tuple((w.name, weights[w.name]) for w in layout.weights),
        activations=tuple((a, acts[a]) for a in layout.activations),
        input_bits=config.input_bits,
        logits_bits=config.logits_bits,
    )


def _check_buildable(spec: QuantSpec, role: str, name: str, source: str) -> None:
    """A method quantizes weights or activations (or both); say which module got the wrong one."""
    try:
        (make_weight_quantizer if role == "weight" else make_act_quantizer)(spec)
    except UserError as err:
        raise ConfigError(f"{source}: {name} ({role}, {spec.method} {spec.bits} bits): {err}") from None


def _list_spec(default: QuantSpec, bits: int, where: str) -> QuantSpec:
    if bits == FLOAT_BITS:
        return QuantSpec()
    if default.is_float:
        raise ConfigError(
            f"{where} = {bits}: the default method is float, so the list cannot say how to quantize; "
            f"set default.weight/default.activation to a method from {list(METHODS)}"
        )
    return make_spec({**{f: getattr(default, f) for f in SPEC_FIELDS}, "bits": bits}, where)


SpecSource = LayoutRecorder | ResolvedQuant
"""What model constructors ask for their specs: ``weight(name, ...)``, ``activation(name)``,
``input_bits``, ``logits_bits``."""
