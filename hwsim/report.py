"""Run reports: per-layer row dicts plus totals -> report.json, layers.csv, report.md, report.html, PNGs.

Place in the flow: the last step of ``hwsim compare`` (and of the other hwsim commands that
report per layer): they build a :class:`Report` (one dict per layer and a dict of totals; from
typed results, :func:`results_report` takes the columns and their help from the fields of
``hwsim.results``) and call :func:`write_report`, which writes every file
under ``reports/<run>/``, published as a whole through hwsim.output (a staging directory, then a
swap). Plots are functions ``(rows, path, title) -> path`` (the signature of hwsim.plots); pass
more in ``plots`` to add them, and a command's own files (a table of its own) in ``extra_files``.
Columns keep the order of the rows' keys.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.atomic import write_atomic
from hwsim.output import REPORT, Output, publish_directory
from hwsim.plots import layer_axis, layer_width, save_figure, subplots
from hwsim.results import Column, table

Row = dict[str, Any]
PlotFn = Callable[[Sequence[Row], Path, str], Path]


@dataclass
class Report:
    """What a run reports: a title, run metadata, one row per layer, the totals and each column's help."""

    title: str
    meta: dict[str, Any]
    rows: list[Row]
    totals: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    column_help: dict[str, str] = field(default_factory=dict)

    def columns(self) -> list[str]:
        """Every column present in any row, in the order they first appear."""
        present: dict[str, None] = {}
        for row in self.rows:
            present.update(dict.fromkeys(row))
        return list(present)


def results_report(
    title: str,
    meta: dict[str, Any],
    layers: Sequence[Any],
    totals: dict[str, Any],
    notes: Sequence[str] = (),
    columns: Sequence[Column] | None = None,
) -> Report:
    """A report of typed per-layer results (hwsim.results): rows and column help from their fields."""
    rows, help_ = table(layers, columns)
    return Report(title, meta, rows, totals, list(notes), help_)


def jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None (JSON has no inf/nan)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def fmt_value(value: Any) -> str:
    """A cell for CSV/Markdown/HTML: floats to 4 significant digits, lists joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    if isinstance(value, (list, tuple)):
        return " ".join(fmt_value(v) for v in value)
    return str(value)


def plot_error_per_layer(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Per layer: codes differing from the reference (%), max and mean |error| (LSB), SQNR (dB)."""
    rows = [r for r in rows if r.get("mismatch_rate") is not None]
    names = [str(r["name"]) for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2, ax3) = subplots(3, 1, figsize=(layer_width(len(rows)), 7.5), sharex=True)
    mismatch = [100.0 * float(r["mismatch_rate"]) for r in rows]
    ax1.bar(x, mismatch, color=["#C44E52" if v > 0 else "#8C8C8C" for v in mismatch])
    ax1.set_ylabel("codes differing (%)")
    ax1.set_title(title)
    if not any(mismatch):
        ax1.text(
            0.5,
            0.5,
            "every code equals the reference",
            transform=ax1.transAxes,
            ha="center",
            va="center",
            color="#555",
        )
    ax2.bar(x - 0.2, [float(r["max_abs_err_lsb"]) for r in rows], 0.4, color="#DD8452", label="max")
    ax2.bar(
        x + 0.2, [float(r.get("mean_abs_err_lsb") or 0.0) for r in rows], 0.4, color="#4C72B0", label="mean"
    )
    ax2.axhline(1.0, color="#555", ls=":", lw=1, label="1 LSB")
    if max((float(r["max_abs_err_lsb"]) for r in rows), default=0.0) > 20:
        ax2.set_yscale("symlog", linthresh=1)
    ax2.set_ylabel("|emulator - reference| (LSB)")
    ax2.legend(fontsize=8, loc="upper left")
    sqnr = [r.get("sqnr_db") for r in rows]
    finite = [float(v) for v in sqnr if v is not None and math.isfinite(v)]
    cap = (max(finite) + 10.0) if finite else 100.0
    values = [
        cap if (v is not None and math.isinf(v)) else (float(v) if v is not None else np.nan) for v in sqnr
    ]
    colors = ["#55A868" if (v is not None and math.isinf(v)) else "#4C72B0" for v in sqnr]
    ax3.bar(x, values, color=colors)
    for i, v in enumerate(sqnr):
        if v is not None and math.isinf(v):
            ax3.text(i, cap * 0.5, "exact", rotation=90, ha="center", va="center", fontsize=7, color="white")
    if any(v is not None and math.isinf(v) for v in sqnr):
        from matplotlib.patches import Patch

        ax3.legend(
            handles=[
                Patch(color="#4C72B0", label="SQNR"),
                Patch(color="#55A868", label="exact (no error: SQNR infinite, bar clipped)"),
            ],
            fontsize=8,
            loc="lower left",
        )
    ax3.set_ylabel("SQNR vs reference (dB)")
    for ax in (ax1, ax2, ax3):
        ax.grid(axis="y", alpha=0.3)
    layer_axis(ax3, names)
    ax3.set_xlabel("layer (requantizer output)")
    return save_figure(fig, path)


def plot_accumulator_bits(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Per layer: accumulator bits needed (worst case, observed) against the width, and overflow counts."""
    rows = [r for r in rows if r.get("min_safe_acc_bits") is not None]
    names = [str(r["name"]) for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = subplots(2, 1, figsize=(layer_width(len(rows)), 6), sharex=True)
    ax1.plot(
        x,
        [r["min_safe_acc_bits"] for r in rows],
        "v-",
        color="#DD8452",
        label="worst case (weights x input range)",
    )
    observed = [r.get("min_safe_acc_bits_observed") for r in rows]
    ax1.plot(
        x, [np.nan if v is None else v for v in observed], "o-", color="#4C72B0", label="observed on the data"
    )
    if rows:
        ax1.axhline(
            rows[0]["acc_bits"], color="#C44E52", ls="--", label=f"accumulator width ({rows[0]['acc_bits']})"
        )
    ax1.set_ylabel("accumulator bits")
    ax1.set_title(title)
    ax1.legend(fontsize=8)
    counts = [int(r.get("overflow_count") or 0) for r in rows]
    ax2.bar(x, counts, color=["#C44E52" if c else "#8C8C8C" for c in counts])
    if any(counts):
        ax2.set_yscale("symlog", linthresh=1)
    else:
        ax2.text(0.5, 0.5, "no overflow", transform=ax2.transAxes, ha="center", va="center", color="#555")
    ax2.set_ylabel("overflow events (outputs)")
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    layer_axis(ax2, names)
    ax2.set_xlabel("layer (requantizer output)")
    return save_figure(fig, path)


DEFAULT_PLOTS: dict[str, PlotFn] = {
    "error_per_layer.png": plot_error_per_layer,
    "accumulator_bits.png": plot_accumulator_bits,
}


def _markdown_table(columns: Sequence[str], rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt_value(row.get(c)).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines)


def render_markdown(report: Report, plots: Sequence[str]) -> str:
    cols = report.columns()
    out = [f"# {report.title}", ""]
    out += [f"- **{k}**: {fmt_value(v)}" for k, v in report.meta.items()]
    out += [
        "",
        "## Totals",
        "",
        _markdown_table(["total", "value"], [{"total": k, "value": v} for k, v in report.totals.items()]),
    ]
    out += ["", "## Layers", "", _markdown_table(cols, report.rows), ""]
    helped = [c for c in cols if c in report.column_help]
    if helped:
        out += ["Columns:", ""] + [f"- `{c}`: {report.column_help[c]}" for c in helped] + [""]
    if report.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(out)


def _html_table(columns: Sequence[str], rows: Sequence[Row], help_: Mapping[str, str] | None = None) -> str:
    help_ = help_ or {}
    head = "".join(f'<th title="{html.escape(help_.get(c, ""))}">{html.escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt_value(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_html(report: Report, plots: Mapping[str, bytes]) -> str:
    """One self-contained page: metadata, totals, the layer table and every PNG inlined as base64."""
    meta = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(fmt_value(v))}</li>" for k, v in report.meta.items()
    )
    totals = _html_table(["total", "value"], [{"total": k, "value": v} for k, v in report.totals.items()])
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{_b64(data)}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in plots.items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    help_items = "".join(
        f"<li><code>{html.escape(c)}</code>: {html.escape(report.column_help[c])}</li>"
        for c in report.columns()
        if c in report.column_help
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "font-size:12px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        "figure{margin:1em 0}figcaption{font-size:12px;color:#555}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>'
        f"<style>{style}</style></head><body><h1>{html.escape(report.title)}</h1><ul>{meta}</ul>"
        f"<h2>Totals</h2>{totals}<h2>Layers</h2>"
        f"{_html_table(report.columns(), report.rows, report.column_help)}"
        f"<ul>{help_items}</ul>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + f"<h2>Plots</h2>{images}</body></html>"
    )


REPORT_FILES: tuple[str, ...] = ("report.json", "layers.csv", "report.md", "report.html")


def write_report(
    report: Report,
    directory: str | os.PathLike[str] | Output,
    plots: Mapping[str, PlotFn] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> dict[str, Path]:
    """Publish the report as the directory ``directory``, whole (hwsim.output.publish_directory).

    The files (see :func:`write_report_files`) are written into a staging directory that then
    replaces ``directory``, so a reader, a concurrent run or an interrupt leaves the old report or
    the new one, never a mix. ``directory`` is a claim of :func:`hwsim.output.claim` (kind
    ``REPORT``) or a path, which the output policy checks. Returns the paths by file name.
    """
    dest = Path(directory)
    with publish_directory(directory, REPORT) as staged:
        written = write_report_files(report, staged, plots, extra_files)
    return {name: dest / path.relative_to(staged) for name, path in written.items()}


def write_report_files(
    report: Report,
    directory: str | os.PathLike[str],
    plots: Mapping[str, PlotFn] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> dict[str, Path]:
    """Write report.json, layers.csv, the PNGs, report.md, report.html and extra files under ``directory``.

    ``plots`` maps a PNG file name to a plot function (default :data:`DEFAULT_PLOTS`);
    ``extra_files`` maps a file name (no directory part) to its contents, text or bytes (e.g. a
    command's own table). Each file is written whole (:func:`write_atomic`), into a directory the
    caller publishes (a design-space report, the demo's per-model pages): use :func:`write_report`
    for a report of its own. Returns the paths by file name.
    """
    plot_fns = DEFAULT_PLOTS if plots is None else plots
    extras = dict(extra_files or {})
    for name in extras:
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(
                f"extra_files: {name!r} is not a plain file name; give a name without a directory"
            )
        if name in REPORT_FILES or name in plot_fns:
            raise ValueError(f"extra_files: {name!r} is a file the report writes itself; pick another name")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    cols = report.columns()
    doc = {
        "title": report.title,
        "meta": report.meta,
        "layers": report.rows,
        "totals": report.totals,
        "notes": report.notes,
    }
    written["report.json"] = write_atomic(
        out / "report.json", (json.dumps(jsonable(doc), indent=2) + "\n").encode()
    )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in report.rows:
        writer.writerow(
            [fmt_value(row.get(c)) if not isinstance(row.get(c), (int, str)) else row.get(c) for c in cols]
        )
    written["layers.csv"] = write_atomic(out / "layers.csv", buf.getvalue().encode())
    images: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in plot_fns.items():
            if not report.rows:
                break
            staged = fn(report.rows, Path(tmp) / name, report.title)
            images[name] = Path(staged).read_bytes()
            written[name] = write_atomic(out / name, images[name])
    written["report.md"] = write_atomic(out / "report.md", render_markdown(report, list(images)).encode())
    written["report.html"] = write_atomic(out / "report.html", render_html(report, images).encode())
    for name, data in extras.items():
        written[name] = write_atomic(out / name, data)
    return written
