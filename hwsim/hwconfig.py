"""Hardware description: the MAC array, its PEs, buffers, DRAM and clock, from one YAML file.

Place in the flow: parsed once, at the edge (``hwsim simulate|sweep --hw HW.yaml``), into frozen
dataclasses that validate themselves on construction; the array model (``mapping``, ``timing``,
``systolic``, ``memory``) reads them, and :func:`verilog_parameters` turns the same object into
the array RTL's parameters (one source of truth); :func:`requant_parameters` does the same for a
requantizer (rtl_models/requant.v) from its output format and rounding mode. The file looks like::

    array: {rows: 16, cols: 16, dataflow: ws}        # ws | os | is (hwsim.dataflows)
    pe: {acc_bits: 24, overflow: wrap}               # wrap | saturate
    buffers_kb: {ifmap: 64, weight: 64, ofmap: 64}
    dram_bytes_per_cycle: 16
    clock_mhz: 500
    timing: native                                   # native | scalesim
    energy: {mult_8b_pj: 0.2, dram_64b_pj: 2000}     # optional: EnergyConfig, hwsim.energy

Every key is required except ``timing`` (``native`` when absent), ``name`` (the file's stem) and
``energy`` (each of its keys defaults to :class:`EnergyConfig`'s value, docs/energy.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hwsim.dataflows import DATAFLOWS, index_of
from hwsim.errors import UserError, shown
from hwsim.fixed import OVERFLOW_MODES, CodeFormat, FormatError, IntFormat, rounding_code
from hwsim.output import safe_name
from hwsim.yaml_io import YamlError, is_finite_number, read_yaml

# DATAFLOWS, imported above, is hwsim.dataflows' registry (name -> Dataflow), the list's one owner.
TIMINGS: tuple[str, ...] = ("native", "scalesim")
MAX_PES_PER_SIDE = 4096
ACC_BITS_RANGE = (2, 64)
REQUANT_FUNCTIONS: tuple[str, ...] = ("clamp", "sign")
MAX_BUFFER_KB = 1 << 20


class HwConfigError(UserError, ValueError):
    """A hardware description with a missing, unknown or out-of-range field."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(field_name: str, value: object, lo: int, hi: int) -> None:
    if not _is_int(value) or not lo <= value <= hi:  # type: ignore[operator]
        raise HwConfigError(
            f"field '{field_name}': {shown(value)} is not an integer in the legal range {lo}..{hi}"
        )


def _check_positive(field_name: str, value: object, hi: float) -> None:
    if not is_finite_number(value) or not 0 < value <= hi:  # type: ignore[operator]
        raise HwConfigError(
            f"field '{field_name}': {shown(value)} is not a number in the legal range (0, {hi:g}]"
        )


def _check_choice(field_name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise HwConfigError(f"field '{field_name}': {shown(value)} is not one of {', '.join(choices)}")


@dataclass(frozen=True)
class ArrayConfig:
    """``rows`` x ``cols`` PEs and the dataflow that maps a GEMM onto them."""

    rows: int = 16
    cols: int = 16
    dataflow: str = "ws"

    def __post_init__(self) -> None:
        _check_int("array.rows", self.rows, 1, MAX_PES_PER_SIDE)
        _check_int("array.cols", self.cols, 1, MAX_PES_PER_SIDE)
        _check_choice("array.dataflow", self.dataflow, tuple(DATAFLOWS))  # read now: one may register later

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class PEConfig:
    """The PE's accumulator: ``acc_bits`` two's complement, narrowed by ``overflow`` (wrap | saturate)."""

    acc_bits: int = 24
    overflow: str = "wrap"

    def __post_init__(self) -> None:
        _check_int("pe.acc_bits", self.acc_bits, *ACC_BITS_RANGE)
        _check_choice("pe.overflow", self.overflow, OVERFLOW_MODES)

    @property
    def acc_format(self) -> IntFormat:
        return IntFormat(self.acc_bits, True)


@dataclass(frozen=True)
class BufferConfig:
    """On-chip buffer capacities in KiB (each is double-buffered: half works while half fills)."""

    ifmap_kb: float = 64
    weight_kb: float = 64
    ofmap_kb: float = 64

    def __post_init__(self) -> None:
        _check_positive("buffers_kb.ifmap", self.ifmap_kb, MAX_BUFFER_KB)
        _check_positive("buffers_kb.weight", self.weight_kb, MAX_BUFFER_KB)
        _check_positive("buffers_kb.ofmap", self.ofmap_kb, MAX_BUFFER_KB)


@dataclass(frozen=True)
class EnergyConfig:
    """Energy per operation and per access, and static power: the technology table of hwsim.energy.

    First-order numbers; the defaults are Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm
    (docs/energy.md): an 8-bit integer multiply 0.2 pJ (32-bit: 3.1 pJ, about (32/8)^2 times more:
    a multiplier scales with ``w_bits x a_bits``), a 32-bit integer add 0.1 pJ (8-bit: 0.03 pJ: an
    adder scales with its width), a 64-bit SRAM read 10 pJ at 8 KB (20 pJ at 32 KB, 100 pJ at 1 MB:
    about the square root of the capacity, ``sram_exponent``), a 64-bit DRAM access 1.3-2.6 nJ (2 nJ
    here). ``static_mw`` (leakage of the whole accelerator while it runs) is no Horowitz figure:
    an assumed order of magnitude; put your own technology's numbers in the YAML ``energy:`` section.
    """

    mult_8b_pj: float = 0.2
    add_32b_pj: float = 0.1
    sram_64b_pj: float = 10.0
    sram_ref_kb: float = 8.0
    sram_exponent: float = 0.5
    dram_64b_pj: float = 2000.0
    static_mw: float = 20.0

    def __post_init__(self) -> None:
        for name in ("mult_8b_pj", "add_32b_pj", "sram_64b_pj", "dram_64b_pj"):
            _check_positive(f"energy.{name}", getattr(self, name), 1e9)
        _check_positive("energy.sram_ref_kb", self.sram_ref_kb, MAX_BUFFER_KB)
        _check_positive("energy.sram_exponent", self.sram_exponent, 2)
        if not is_finite_number(self.static_mw) or not 0 <= self.static_mw <= 1e9:  # type: ignore[operator]
            raise HwConfigError(
                f"field 'energy.static_mw': {shown(self.static_mw)} is not a number in the legal "
                "range [0, 1e+09]"
            )


@dataclass(frozen=True)
class HardwareConfig:
    """Everything the array model needs to know about one accelerator."""

    array: ArrayConfig = field(default_factory=ArrayConfig)
    pe: PEConfig = field(default_factory=PEConfig)
    buffers: BufferConfig = field(default_factory=BufferConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    dram_bytes_per_cycle: float = 16
    clock_mhz: float = 500
    timing: str = "native"
    name: str = ""

    def __post_init__(self) -> None:
        for attr, kind in (
            ("array", ArrayConfig),
            ("pe", PEConfig),
            ("buffers", BufferConfig),
            ("energy", EnergyConfig),
        ):
            if not isinstance(getattr(self, attr), kind):
                raise HwConfigError(
                    f"field '{attr}': expected a {kind.__name__}, got {shown(getattr(self, attr))}"
                )
        _check_positive("dram_bytes_per_cycle", self.dram_bytes_per_cycle, 1e6)
        _check_positive("clock_mhz", self.clock_mhz, 1e5)
        _check_choice("timing", self.timing, TIMINGS)
        if not isinstance(self.name, str):
            raise HwConfigError(f"field 'name': expected a string, got {shown(self.name)}")
        if self.name:  # a name becomes a directory name (hwsim simulate with several --hw)
            try:
                safe_name(self.name, "field 'name'")
            except UserError as err:
                raise HwConfigError(str(err)) from None

    @property
    def label(self) -> str:
        """A short human label: the name, else ``16x16-ws-acc24``."""
        return self.name or self.describe()

    def describe(self) -> str:
        a = self.array
        return f"{a.rows}x{a.cols}-{a.dataflow}-acc{self.pe.acc_bits}" + (
            "-scalesim" if self.timing == "scalesim" else ""
        )

    def with_overrides(self, **overrides: Any) -> HardwareConfig:
        """A copy with dotted fields replaced, e.g. ``rows=32, dataflow='os', acc_bits=16``."""
        groups: dict[str, dict[str, Any]] = {"array": {}, "pe": {}, "buffers": {}, "top": {}}
        where = {
            "rows": "array",
            "cols": "array",
            "dataflow": "array",
            "acc_bits": "pe",
            "overflow": "pe",
            "ifmap_kb": "buffers",
            "weight_kb": "buffers",
            "ofmap_kb": "buffers",
            "dram_bytes_per_cycle": "top",
            "clock_mhz": "top",
            "timing": "top",
            "name": "top",
        }
        for key, value in overrides.items():
            if key not in where:
                raise HwConfigError(f"cannot override '{key}'; overridable fields: {', '.join(where)}")
            groups[where[key]][key] = value
        return replace(
            self,
            array=replace(self.array, **groups["array"]),
            pe=replace(self.pe, **groups["pe"]),
            buffers=replace(self.buffers, **groups["buffers"]),
            **groups["top"],
        )


_TOP_KEYS = ("array", "pe", "buffers_kb", "energy", "dram_bytes_per_cycle", "clock_mhz", "timing", "name")
_REQUIRED = ("array", "pe", "buffers_kb", "dram_bytes_per_cycle", "clock_mhz")
_SECTION_KEYS = {
    "array": ("rows", "cols", "dataflow"),
    "pe": ("acc_bits", "overflow"),
    "buffers_kb": ("ifmap", "weight", "ofmap"),
}


def _string_keys(value: dict[Any, Any], where: str, legal: tuple[str, ...]) -> None:
    """Every key of a mapping is a string (a YAML ``1:`` or ``true:`` key is not a field name)."""
    for key in value:
        if not isinstance(key, str):
            raise HwConfigError(
                f"{where}key {shown(key)} is not a field name; legal keys: {', '.join(legal)}"
            )


def _section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc[key]
    if not isinstance(value, dict):
        raise HwConfigError(
            f"field '{key}': expected a mapping with keys {', '.join(_SECTION_KEYS[key])}, got {shown(value)}"
        )
    _string_keys(value, f"field '{key}': ", _SECTION_KEYS[key])
    unknown = sorted(set(value) - set(_SECTION_KEYS[key]))
    if unknown:
        raise HwConfigError(
            f"field {shown(f'{key}.{unknown[0]}')} is unknown; legal keys: {', '.join(_SECTION_KEYS[key])}"
        )
    missing = [k for k in _SECTION_KEYS[key] if k not in value]
    if missing:
        raise HwConfigError(
            f"field '{key}.{missing[0]}' is missing; {key} needs {', '.join(_SECTION_KEYS[key])}"
        )
    return value


_ENERGY_KEYS = tuple(f.name for f in fields(EnergyConfig))


def _energy(doc: dict[str, Any]) -> EnergyConfig:
    """The optional ``energy:`` section: any key left out takes :class:`EnergyConfig`'s default."""
    value = doc.get("energy", {})
    if not isinstance(value, dict):
        raise HwConfigError(
            f"field 'energy': expected a mapping with keys among {', '.join(_ENERGY_KEYS)}, "
            f"got {shown(value)}"
        )
    _string_keys(value, "field 'energy': ", _ENERGY_KEYS)
    unknown = sorted(set(value) - set(_ENERGY_KEYS))
    if unknown:
        raise HwConfigError(
            f"field {shown(f'energy.{unknown[0]}')} is unknown; legal keys: {', '.join(_ENERGY_KEYS)}"
        )
    return EnergyConfig(**value)


def hw_config_from_dict(doc: object, default_name: str = "") -> HardwareConfig:
    """Build and validate a :class:`HardwareConfig` from a parsed YAML document."""
    if not isinstance(doc, dict):
        raise HwConfigError(f"expected a mapping with keys {', '.join(_REQUIRED)}, got {type(doc).__name__}")
    _string_keys(doc, "", _TOP_KEYS)
    unknown = sorted(set(doc) - set(_TOP_KEYS))
    if unknown:
        raise HwConfigError(f"field {shown(unknown[0])} is unknown; legal keys: {', '.join(_TOP_KEYS)}")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise HwConfigError(
            f"field '{missing[0]}' is missing; a hardware description needs {', '.join(_REQUIRED)}"
        )
    array, pe, buffers = _section(doc, "array"), _section(doc, "pe"), _section(doc, "buffers_kb")
    return HardwareConfig(
        array=ArrayConfig(rows=array["rows"], cols=array["cols"], dataflow=array["dataflow"]),
        pe=PEConfig(acc_bits=pe["acc_bits"], overflow=pe["overflow"]),
        buffers=BufferConfig(
            ifmap_kb=buffers["ifmap"], weight_kb=buffers["weight"], ofmap_kb=buffers["ofmap"]
        ),
        dram_bytes_per_cycle=doc["dram_bytes_per_cycle"],
        clock_mhz=doc["clock_mhz"],
        timing=doc.get("timing", "native"),
        name=doc.get("name", default_name),
        energy=_energy(doc),
    )


def load_hw_config(path: str | Path) -> HardwareConfig:
    """Read and validate a hardware YAML; any problem raises one :class:`HwConfigError` naming the file."""
    path = Path(path)
    try:
        doc = read_yaml(path)
    except OSError as err:
        raise HwConfigError(
            f"{path}: cannot read the hardware description ({err.strerror}); "
            "pass an existing YAML file, e.g. configs/hw/ws_16x16.yaml"
        ) from None
    except YamlError as err:
        raise HwConfigError(str(err)) from None
    try:
        return hw_config_from_dict(doc, default_name=path.stem)
    except HwConfigError as err:
        raise HwConfigError(f"{path}: {err}") from None


def hw_config_to_dict(cfg: HardwareConfig) -> dict[str, Any]:
    """The YAML form of ``cfg`` (``load_hw_config`` reads it back to an equal object)."""
    return {
        "name": cfg.name,
        "array": {"rows": cfg.array.rows, "cols": cfg.array.cols, "dataflow": cfg.array.dataflow},
        "pe": {"acc_bits": cfg.pe.acc_bits, "overflow": cfg.pe.overflow},
        "buffers_kb": {
            "ifmap": cfg.buffers.ifmap_kb,
            "weight": cfg.buffers.weight_kb,
            "ofmap": cfg.buffers.ofmap_kb,
        },
        "dram_bytes_per_cycle": cfg.dram_bytes_per_cycle,
        "clock_mhz": cfg.clock_mhz,
        "timing": cfg.timing,
        "energy": {f.name: getattr(cfg.energy, f.name) for f in fields(EnergyConfig)},
    }


def verilog_parameters(
    cfg: HardwareConfig, a_bits: int = 8, w_bits: int = 8, a_signed: bool = False
) -> dict[str, int]:
    """The RTL's parameters, derived from the hardware description (the only place that does it).

    ``a_bits``/``w_bits`` are the operand widths of the layer the RTL runs (weights are always
    signed; activations are unsigned after ReLU, signed for the network input and binary codes).

    >>> hw = HardwareConfig(pe=PEConfig(acc_bits=20, overflow="saturate"))
    >>> verilog_parameters(hw, a_bits=4, w_bits=4)  # doctest: +NORMALIZE_WHITESPACE
    {'ROWS': 16, 'COLS': 16, 'ACC_BITS': 20, 'SATURATE': 1, 'A_BITS': 4, 'W_BITS': 4, 'A_SIGNED': 0,
     'DATAFLOW': 0}

    ``DATAFLOW`` is the dataflow's index in ``hwsim.dataflows.DATAFLOWS`` (rtl_models/array_top.v).
    """
    if not DATAFLOWS[cfg.array.dataflow].rtl:  # ArrayConfig checked that it is registered
        rtl = [flow for flow in DATAFLOWS.values() if flow.rtl]
        raise HwConfigError(
            f"array.dataflow: the RTL implements the {' or '.join(f.title for f in rtl)} array, "
            f"got {cfg.array.dataflow!r}; use a {' or '.join(f.name for f in rtl)} configuration "
            "(e.g. configs/hw/ws_16x16.yaml) for RTL runs"
        )
    _check_int("a_bits", a_bits, 1, 32)
    _check_int("w_bits", w_bits, 1, 32)
    if not isinstance(a_signed, bool):
        raise HwConfigError(f"a_signed: expected a bool, got {a_signed!r}")
    return {
        "ROWS": cfg.array.rows,
        "COLS": cfg.array.cols,
        "ACC_BITS": cfg.pe.acc_bits,
        "SATURATE": int(cfg.pe.overflow == "saturate"),
        "A_BITS": a_bits,
        "W_BITS": w_bits,
        "A_SIGNED": int(a_signed),
        "DATAFLOW": index_of(cfg.array.dataflow),
    }


def requant_parameters(
    out_fmt: IntFormat | CodeFormat,
    rounding: str,
    x_bits: int = 32,
    mult_bits: int = 32,
    *,
    function: str = "clamp",
) -> dict[str, int]:
    """requant.v's parameters for one requantizer (the only place that derives them).

    ``out_fmt``: the output's format, an :class:`~hwsim.fixed.IntFormat` or a
    :class:`~hwsim.fixed.CodeFormat` with its ``lattice`` (``full``, or ``narrow`` for a signed
    clamp: ``OUT_NARROW=1``, the symmetric range);
    ``rounding``: one of :data:`hwsim.fixed.ROUNDING_MODES` (``ROUNDING`` is its index);
    ``x_bits``: the width of the inputs ``x0``/``x1`` (two's complement: an accumulator's
    ``acc_bits``, one more than the bits of unsigned codes); ``mult_bits``: the bundle's
    ``mult_bits``; ``function``: ``clamp`` or ``sign`` (``sign`` needs a signed output of 2+ bits).

    >>> requant_parameters(IntFormat(4, False), "half_even", x_bits=24)
    {'OUT_BITS': 4, 'OUT_SIGNED': 0, 'OUT_NARROW': 0, 'X_BITS': 24, 'MULT_BITS': 32, 'ROUNDING': 1}
    """
    bits, signed = getattr(out_fmt, "bits", None), getattr(out_fmt, "signed", None)
    lattice = getattr(out_fmt, "lattice", "full")
    if not _is_int(bits) or not isinstance(signed, bool):
        raise HwConfigError(f"requant out_fmt: expected an integer format (bits, signed), got {out_fmt!r}")
    _check_int("requant out_fmt.bits", bits, 1, 63)  # requant.v: OUT_BITS < 64
    _check_int("requant x_bits", x_bits, 1, 63)
    _check_int("requant mult_bits", mult_bits, 2, 63)
    _check_choice("requant function", function, REQUANT_FUNCTIONS)
    try:
        code = rounding_code(rounding)
    except FormatError as err:
        raise HwConfigError(f"requant {err}") from None
    if function == "sign":
        if not signed or bits < 2:
            raise HwConfigError(
                f"requant out_fmt {out_fmt}: the sign function writes -1 and +1, which need a signed "
                "output of at least 2 bits"
            )
        narrow = False
    elif lattice in ("full", "narrow"):
        if lattice == "narrow" and (not signed or bits < 2):
            raise HwConfigError(
                f"requant out_fmt {out_fmt}: a narrow lattice needs a signed output of 2+ bits"
            )
        narrow = lattice == "narrow"
    else:
        raise HwConfigError(
            f"requant out_fmt {out_fmt}: a clamp produces the full or narrow lattice, not {lattice!r}; "
            "requant.v has no other (use function sign for binary codes)"
        )
    return {
        "OUT_BITS": int(bits),
        "OUT_SIGNED": int(signed),
        "OUT_NARROW": int(narrow),
        "X_BITS": int(x_bits),
        "MULT_BITS": int(mult_bits),
        "ROUNDING": code,
    }
