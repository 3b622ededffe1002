"""PNG plots of the array model: latency, energy, utilization, overflow, error, roofline, design space.

Place in the flow: ``hwsim simulate`` and ``hwsim sweep`` hand their per-layer rows (dicts, as
in ``report.json``) to these functions, which write one PNG each under ``reports/<run>/`` and
return its path; ``hwsim.report`` embeds them in ``report.html``. matplotlib's Agg backend only.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.atomic import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Row = dict[str, Any]
COLORS = {"compute": "#4C72B0", "preload": "#8172B2", "fill_drain": "#DD8452", "stall": "#C44E52"}


@functools.cache
def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend, imported on the first plot rather than with hwsim:
    matplotlib takes most of a command's start-up (about 0.9 s of 1.6 s for ``hwsim --help``), and
    most commands draw nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """``plt.subplots(...)`` (see :func:`pyplot`): where every plot of hwsim gets its figure."""
    return pyplot().subplots(*args, **kwargs)


def png_bytes(fig: Figure, dpi: int = 110, metadata: dict[str, str] | None = None) -> bytes:
    """``fig`` rendered to PNG (tight bounding box, optional PNG text ``metadata``), then closed.

    The tight box is measured here and handed to ``savefig``, which then draws the figure once;
    given ``bbox_inches="tight"`` it draws it twice (the first time only to measure). The bytes
    are the same (tests/hwsim/test_plots.py); the plots take a fifth less time.
    """
    fig.set_dpi(dpi)
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(pyplot().rcParams["savefig.pad_inches"])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=box, metadata=metadata)
    pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` to PNG at ``path`` atomically and close it (every plot of hwsim is saved here)."""
    return write_atomic(path, png_bytes(fig))


def layer_axis(ax: Axes, names: Sequence[str]) -> None:
    """The x axis of a per-layer plot: one tick per layer, its name slanted."""
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)


def layer_width(n: int) -> float:
    """The width (inches) of a per-layer plot of ``n`` layers."""
    return max(7.0, 0.38 * n + 2)


def plot_latency(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Stacked cycles per layer: compute, preload, fill/drain, memory stall."""
    names = [r["name"] for r in rows]
    fig, ax = subplots(figsize=(layer_width(len(rows)), 4.2))
    bottom = np.zeros(len(rows))
    for key, label in (
        ("compute_cycles", "compute"),
        ("preload_cycles", "preload"),
        ("fill_drain_cycles", "fill_drain"),
        ("stall_cycles", "stall"),
    ):
        values = np.array([r.get(key) or 0 for r in rows], dtype=float)  # empty: no MAC node (no cost)
        ax.bar(range(len(rows)), values, bottom=bottom, color=COLORS[label], label=label.replace("_", "/"))
        bottom += values
    layer_axis(ax, names)
    ax.set_ylabel("cycles per inference")
    ax.set_title(title)
    ax.set_ylim(0, max(float(bottom.max()), 1.0) * 1.18)  # headroom: the legend never covers a bar
    ax.legend(fontsize=8, ncols=4, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


ENERGY_PARTS = (
    ("compute_energy_nj", "compute (MACs)", "#4C72B0"),
    ("buffer_energy_nj", "on-chip buffers", "#55A868"),
    ("dram_energy_nj", "DRAM", "#C44E52"),
    ("static_energy_nj", "static (leakage)", "#8C8C8C"),
)


def plot_energy(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Stacked energy per layer: compute, on-chip buffers, DRAM, static (first-order, hwsim.energy)."""
    names = [r["name"] for r in rows]
    fig, ax = subplots(figsize=(layer_width(len(rows)), 4.2))
    bottom = np.zeros(len(rows))
    for key, label, color in ENERGY_PARTS:
        values = np.array([r.get(key) or 0 for r in rows], dtype=float) / 1000.0  # empty: no MAC node
        ax.bar(range(len(rows)), values, bottom=bottom, color=color, label=label)
        bottom += values
    layer_axis(ax, names)
    ax.set_ylabel("energy per inference (uJ)")
    ax.set_title(f"{title}\n(first-order estimate, docs/energy.md; total {bottom.sum():.1f} uJ)", fontsize=9)
    ax.set_ylim(0, max(float(bottom.max()), 1e-6) * 1.18)  # headroom: the legend never covers a bar
    ax.legend(fontsize=8, ncols=4, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_utilization(rows: Sequence[Row], path: Path, title: str) -> Path:
    """PE utilization per layer: of the array's own cycles, and with memory stalls."""
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = subplots(figsize=(layer_width(len(rows)), 3.8))
    ax.bar(x - 0.2, [100 * r["array_utilization"] for r in rows], 0.4, label="array cycles", color="#4C72B0")
    ax.bar(x + 0.2, [100 * r["utilization"] for r in rows], 0.4, label="with stalls", color="#55A868")
    layer_axis(ax, names)
    ax.set_ylim(0, 100)
    ax.set_ylabel("PE utilization (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_overflow(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Overflowed outputs per layer (fraction), with each layer's accumulator need against the width."""
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = subplots(2, 1, figsize=(layer_width(len(rows)), 6), sharex=True)
    rates = [100 * r.get("overflow_rate", 0.0) for r in rows]
    ax1.bar(x, rates, color=["#C44E52" if v > 0 else "#8C8C8C" for v in rates])
    ax1.set_ylabel("outputs overflowed (%)")
    ax1.set_title(title)
    ax1.grid(axis="y", alpha=0.3)
    if not any(rates):
        ax1.set_ylim(0, 1)
        ax1.text(0.5, 0.5, "no overflow", transform=ax1.transAxes, ha="center", va="center", color="#555")
    ax2.plot(
        x,
        [r["min_safe_acc_bits"] for r in rows],
        "v-",
        label="worst case (weights x input range)",
        color="#DD8452",
    )
    ax2.plot(
        x,
        [r.get("min_safe_acc_bits_observed", np.nan) for r in rows],
        "o-",
        label="observed on the data",
        color="#4C72B0",
    )
    width = next((r["acc_bits"] for r in rows if r.get("acc_bits") is not None), 0)  # maxpool rows: None
    ax2.axhline(width, color="#C44E52", ls="--", label="accumulator width")
    ax2.set_ylabel("accumulator bits")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    layer_axis(ax2, names)
    return save_figure(fig, path)


def plot_error(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Per layer: SQNR against the reference (dB) and the rate of mismatching codes."""
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, ax1 = subplots(figsize=(layer_width(len(rows)), 4))
    sqnr = [r.get("sqnr_db") for r in rows]
    finite = [v if v is not None and math.isfinite(v) else np.nan for v in sqnr]
    ax1.bar(x, finite, color="#4C72B0", label="SQNR (dB)")
    exact = [i for i, v in enumerate(sqnr) if v is not None and math.isinf(v)]
    top = np.nanmax(finite) if not np.all(np.isnan(finite)) else 60.0
    for i in exact:
        ax1.text(i, top * 0.05 if top > 0 else 1, "exact", rotation=90, ha="center", fontsize=7)
    ax1.set_ylabel("SQNR vs reference (dB)")
    ax2 = ax1.twinx()
    ax2.plot(
        x, [100 * (r.get("mismatch_rate") or 0.0) for r in rows], "o-", color="#C44E52", label="mismatch %"
    )
    ax2.set_ylabel("codes differing (%)")
    layer_axis(ax1, names)
    ax1.set_title(title)
    ax1.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_heatmap(
    values: np.ndarray,
    layers: Sequence[str],
    widths: Sequence[int],
    path: Path,
    title: str,
    label: str,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """A layer x bit-width heatmap (e.g. top-1 agreement after re-quantizing one layer)."""
    fig, ax = subplots(figsize=(2.2 + 0.7 * len(widths), 1.2 + 0.3 * len(layers)))
    shown = np.where(np.isfinite(values), values, np.nan)  # inf (identical output) is drawn as "="
    im = ax.imshow(shown, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(widths)))
    ax.set_xticklabels([str(w) for w in widths])
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels(layers, fontsize=7)
    ax.set_xlabel("width of the swept layer (bits)")
    ax.set_title(title, fontsize=10)
    finite = shown[np.isfinite(shown)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if np.isfinite(v):
                dark = hi == lo or (v - lo) < 0.5 * (hi - lo)
                ax.text(
                    j,
                    i,
                    f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if dark else "black",
                )
            elif np.isinf(v):
                ax.text(j, i, "=", ha="center", va="center", fontsize=8, color="#444")
    fig.colorbar(im, ax=ax, label=label)
    return save_figure(fig, path)


# Label offsets (points) tried in turn around a marker; the first that overlaps no earlier label wins.
_LABEL_OFFSETS = [(5, 3), (5, -9), (-5, 3), (-5, -9), (5, 12), (5, -18), (-5, 12), (-5, -18),
                  (5, 21), (5, -27), (-5, 21), (-5, -27)]  # fmt: skip


def _place_labels(ax: Any, labels: Sequence[tuple[tuple[float, float], str]]) -> None:
    """Annotate each point with its text where it overlaps no label placed before it (greedy)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    for xy, text in labels:
        for dx, dy in _LABEL_OFFSETS:
            ann = ax.annotate(text, xy, fontsize=6, alpha=0.85, xytext=(dx, dy), textcoords="offset points",
                              ha="left" if dx > 0 else "right")  # fmt: skip
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            ann.remove()
        else:  # every place is taken: keep the first, overlapping
            ann = ax.annotate(text, xy, fontsize=6, alpha=0.85, xytext=_LABEL_OFFSETS[0],
                              textcoords="offset points")  # fmt: skip
            box = ann.get_window_extent(renderer)
        placed.append(box)


def plot_roofline(rows: Sequence[Row], pes: int, bytes_per_cycle: float, path: Path, title: str) -> Path:
    """Roofline: MACs/cycle against MACs per DRAM byte, one point per MAC layer (rows of no MACs left out)."""
    rows = [r for r in rows if r["macs"]]
    ai = np.array([r["arithmetic_intensity"] for r in rows], dtype=float)
    perf = np.array([r["macs"] / r["cycles"] for r in rows], dtype=float)
    fig, ax = subplots(figsize=(6.5, 4.5))
    lo = max(1e-2, float(np.nanmin(ai)) / 4) if len(ai) else 0.1
    hi = float(np.nanmax(ai[np.isfinite(ai)])) * 4 if np.isfinite(ai).any() else 100.0
    xs = np.logspace(math.log10(lo), math.log10(max(hi, pes / bytes_per_cycle * 4)), 200)
    ax.plot(xs, np.minimum(pes, xs * bytes_per_cycle), color="black", lw=1.5, label="roof")
    for bound, color in (("compute", "#4C72B0"), ("memory", "#C44E52")):
        mask = np.array([r["bound"] == bound for r in rows], dtype=bool)
        if mask.any():
            ax.scatter(ai[mask], perf[mask], c=color, s=22, zorder=3, label=f"{bound}-bound layer")
    # Layers of the same shape sit on the same point: label each point once, naming how many share it.
    groups: dict[tuple[float, float], list[str]] = {}
    for a, p, r in zip(ai, perf, rows, strict=True):
        if np.isfinite(a) and np.isfinite(p) and a > 0 and p > 0:
            groups.setdefault((round(math.log10(a), 2), round(math.log10(p), 2)), []).append(r["name"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    labels = [
        ((10**la, 10**lp), names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} alike)")
        for (la, lp), names in sorted(groups.items(), key=lambda g: -g[0][1])
    ]
    _place_labels(ax, labels)
    ax.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
    ax.set_ylabel("MACs per cycle")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def plot_design_space(summaries: Sequence[Row], path: Path, title: str) -> Path:
    """Total latency and utilization per hardware configuration."""
    labels = [s["hw"] for s in summaries]
    x = np.arange(len(summaries))
    fig, ax1 = subplots(figsize=(max(6.0, 0.8 * len(summaries) + 2), 4.2))
    ax1.bar(x, [s["latency_us"] for s in summaries], color="#4C72B0")
    ax1.set_ylabel("latency per inference (us)")
    ax2 = ax1.twinx()
    ax2.plot(x, [100 * s["utilization"] for s in summaries], "o-", color="#DD8452")
    ax2.set_ylabel("PE utilization (%)")
    ax2.set_ylim(0, 100)
    ax1.set_xticks(x)
    ax1.set_xticklabels(labels, rotation=40, ha="right", fontsize=8)
    ax1.set_title(title)
    ax1.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_pareto(points: Sequence[Row], path: Path, title: str, cost_label: str, floor: float) -> Path:
    """Cost vs measured top-1 agreement of each candidate (``label``, ``cost``, ``agreement``,
    ``kind``: ``assignment``, ``try`` (rejected or superseded), ``baseline``); the floor as a line."""
    fig, ax = subplots(figsize=(7.5, 4.8))
    style = {
        "try": {"marker": "o", "facecolors": "none", "edgecolors": "#999999", "s": 36},
        "baseline": {"marker": "s", "color": "#4C72B0", "s": 44},
        "assignment": {"marker": "*", "color": "#C44E52", "s": 180},
    }
    for kind, st in style.items():
        chosen = [p for p in points if p["kind"] == kind]
        if chosen:
            ax.scatter(
                [p["cost"] for p in chosen], [p["agreement"] for p in chosen], label=kind, zorder=3, **st
            )
    _place_labels(ax, [((p["cost"], p["agreement"]), p["label"]) for p in points if p["kind"] != "try"])
    ax.axhline(floor, color="#C44E52", lw=0.8, ls="--", label=f"floor {floor:g}")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("top-1 agreement (measured, whole network)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
