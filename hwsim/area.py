"""The area cost of a hardware configuration, looked up in the synthesis table of ``rtl_models.synth``.

Place in the flow: ``python -m rtl_models.synth`` writes ``synth.json`` (Yosys on the PE and a small
array, for a grid of widths and dataflows) -> :func:`area_estimate` gives a ``HardwareConfig``'s PE
figures at given operand widths (an exact lookup: a configuration the table lacks is an error that
says what it holds) and its array's figures, scaled per PE from the synthesized array to the
configuration's ``rows x cols``. Optional: nothing else in hwsim needs the table or Yosys.

The area is the table's ``area_unit`` (Yosys' generic CMOS transistor estimate, generic cells, no
liberty file), not a process's area in square micrometres.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.errors import UserError, shown
from hwsim.hwconfig import HardwareConfig

TABLE_FORMAT = "qnn-verify-synth"  # what rtl_models.synth writes into synth.json
TABLE_VERSION = 1
FIGURES = ("cells", "flip_flops", "transistors", "longest_path")


@dataclass(frozen=True)
class AreaEstimate:
    """The PE's synthesized figures and the array's, scaled per PE (``array_*``) to ``rows x cols``."""

    dataflow: str
    w_bits: int
    a_bits: int
    acc_bits: int
    overflow: str
    a_signed: bool
    rows: int
    cols: int
    pe_cells: int
    pe_flip_flops: int
    pe_transistors: int
    pe_longest_path: int  # cells on the PE's longest combinational path
    array_cells: int  # round(cells of the synthesized array / its PEs * rows * cols)
    array_flip_flops: int
    array_transistors: int
    array_longest_path: int  # of the synthesized array (not scaled)
    synthesized_rows: int
    synthesized_cols: int
    area_unit: str  # e.g. "transistors"

    @property
    def note(self) -> str:
        return (
            "array figures scaled per PE from the synthesized "
            f"{self.synthesized_rows}x{self.synthesized_cols} array to {self.rows}x{self.cols} "
            "(its skew registers and overflow sums scale with it); "
            f"area in {self.area_unit}, generic cells, no liberty file"
        )


def _load(table: str | Path | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    if isinstance(table, Mapping):
        return table, "the synthesis table"
    path = Path(table)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(
            f"{path}: cannot be read ({err.strerror}); pass the synth.json of rtl_models.synth"
        ) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path}: not valid JSON ({str(err)[:100]}); pass the synth.json of rtl_models.synth"
        ) from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a synthesis table; pass the synth.json of rtl_models.synth")
    return doc, str(path)


def area_estimate(
    table: str | Path | Mapping[str, Any],
    hw: HardwareConfig,
    *,
    w_bits: int,
    a_bits: int,
    a_signed: bool = False,
) -> AreaEstimate:
    """The PE and array figures of ``hw`` (dataflow, acc_bits, overflow, rows x cols) at the operand
    widths, from ``table`` (the path of ``synth.json``, or its parsed content)."""
    doc, where = _load(table)
    if doc.get("format") != TABLE_FORMAT or doc.get("version") != TABLE_VERSION:
        raise UserError(
            f"{where}: not a {TABLE_FORMAT} table version {TABLE_VERSION} "
            f"(format {shown(doc.get('format'))}, version {shown(doc.get('version'))}); "
            "write it with python -m rtl_models.synth"
        )
    want: dict[str, Any] = {
        "dataflow": hw.array.dataflow,
        "w_bits": w_bits,
        "a_bits": a_bits,
        "acc_bits": hw.pe.acc_bits,
        "overflow": hw.pe.overflow,
        "a_signed": a_signed,
    }
    rows = doc.get("results")
    if not isinstance(rows, list):
        raise UserError(f"{where}: no 'results' list; write it with python -m rtl_models.synth")
    found: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if isinstance(row, dict) and all(row.get(k) == v for k, v in want.items()):
            found.setdefault(str(row.get("design")), row)
    missing = [design for design in ("pe", "array") if design not in found]
    if missing:
        held = sorted({_asked(r) for r in rows if isinstance(r, dict)})
        asked = _asked(want)
        signed = " (signed activations)" if a_signed else ""
        raise UserError(
            f"{where}: the {' and '.join(missing)} of {asked}{signed} is not in the table; it holds "
            f"{len(held)} configurations ({', '.join(held[:6])}{', ...' if len(held) > 6 else ''}); "
            "synthesize it with python -m rtl_models.synth --grid full, or pick one of those"
        )
    pe, arr = found["pe"], found["array"]
    for row in (pe, arr):
        bad = [k for k in (*FIGURES, "rows", "cols") if not isinstance(row.get(k), int) or row[k] < 0]
        if bad or row["rows"] < 1 or row["cols"] < 1:
            raise UserError(
                f"{where}: the {row.get('design')} row of {_asked(want)} lacks whole numbers for "
                f"{', '.join(bad or ['rows', 'cols'])}; write the table again with python -m rtl_models.synth"
            )
    scale = hw.array.rows * hw.array.cols / (arr["rows"] * arr["cols"])
    return AreaEstimate(
        **want,
        rows=hw.array.rows,
        cols=hw.array.cols,
        pe_cells=pe["cells"],
        pe_flip_flops=pe["flip_flops"],
        pe_transistors=pe["transistors"],
        pe_longest_path=pe["longest_path"],
        array_cells=round(arr["cells"] * scale),
        array_flip_flops=round(arr["flip_flops"] * scale),
        array_transistors=round(arr["transistors"] * scale),
        array_longest_path=arr["longest_path"],
        synthesized_rows=arr["rows"],
        synthesized_cols=arr["cols"],
        area_unit=str(doc.get("area_unit", "transistors")),
    )


def _asked(row: Mapping[str, Any]) -> str:
    """``ws w8a4 acc24 wrap``: a configuration in messages."""
    widths = f"w{row.get('w_bits')}a{row.get('a_bits')}"
    return f"{row.get('dataflow')} {widths} acc{row.get('acc_bits')} {row.get('overflow')}"
