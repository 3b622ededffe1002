"""PNG plots of hwsim demo: the bundled models side by side (accuracy, latency, accumulators, size).

Place in the flow: ``hwsim.demo.write_index`` hands the index plots (:data:`INDEX_PLOTS`) one
summary dict per model (the totals of its report plus its name, title, method and bits) and the
demo's configuration; ``hwsim.demo.run_model`` draws one model's accumulator sweep
(:func:`plot_acc_sweep`). Each writes one PNG and returns its path. matplotlib's Agg backend only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.plots import save_figure, subplots

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from hwsim.demo import DemoConfig

Summary = dict[str, Any]
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#8172B2", "#C44E52", "#937860")


def _models_axis(ax: Axes, summaries: Sequence[Summary]) -> None:
    labels = [str(s["title"]) for s in summaries]
    ax.set_xticks(range(len(labels)))
    rotate = len(labels) > 5 or max((len(lb) for lb in labels), default=0) > 12
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)


def _width(n: int) -> float:
    return max(6.5, 0.75 * n + 2.5)


def _bars(ax: Axes, series: Sequence[tuple[str, Sequence[float | None]]], fmt: str) -> None:
    """Grouped bars, one group per model, value printed above each bar; None is drawn as 'n/a'."""
    n = len(series)
    width = 0.8 / n
    for j, (label, values) in enumerate(series):
        x = np.arange(len(values)) - 0.4 + width * (j + 0.5)
        heights = [np.nan if v is None else float(v) for v in values]
        ax.bar(x, heights, width * 0.95, label=label, color=PALETTE[j % len(PALETTE)])
        for xi, v in zip(x, values, strict=True):
            text = "n/a" if v is None else fmt.format(v)
            y = 0.0 if v is None else float(v)
            ax.annotate(
                text,
                (xi, y),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6.5,
                rotation=90 if n > 2 else 0,
                color="#333",
            )


def plot_accuracy(summaries: Sequence[Summary], config: DemoConfig, path: Path) -> Path:
    """Top-1 of PyTorch and of the emulator (where labels exist) and their agreement, per model (%)."""
    source = summaries[0].get("top1_source", "reference batch") if summaries else ""

    def pct(key: str) -> list[float | None]:
        return [None if s.get(key) is None else 100.0 * float(s[key]) for s in summaries]

    fig, ax = subplots(figsize=(_width(len(summaries)), 4.4))
    _bars(
        ax,
        [
            ("top-1, PyTorch model", pct("top1_reference")),
            ("top-1, integer emulator", pct("top1_emulator")),
            ("agreement (same top-1 class)", pct("top1_agreement")),
        ],
        "{:.1f}",
    )
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("percent of images (%)")
    title = f"Accuracy and agreement on the {source}"
    if config.data is None:
        title += "\n(top-1 needs labelled images: the reference batch is small; pass --data for the test set)"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper center", ncols=3, frameon=False, bbox_to_anchor=(0.5, -0.28))
    ax.grid(axis="y", alpha=0.3)
    _models_axis(ax, summaries)
    return save_figure(fig, path)


def plot_latency(summaries: Sequence[Summary], config: DemoConfig, path: Path) -> Path:
    """Total latency per image on each hardware configuration, per model (microseconds)."""
    fig, ax = subplots(figsize=(_width(len(summaries)), 4.2))
    series = [
        (f"{h.label} ({h.describe()}, {h.clock_mhz:g} MHz)", [s[f"latency_us@{h.label}"] for s in summaries])
        for h in config.hw
    ]
    _bars(ax, series, "{:.0f}")
    top = max((v for _, values in series for v in values), default=1.0)
    ax.set_ylim(0, top * 1.3)
    ax.set_ylabel("latency per image (us)")
    ax.set_title("Latency of one image (batch 1), all layers", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", ncols=len(series), frameon=False, bbox_to_anchor=(0.5, -0.28))
    ax.grid(axis="y", alpha=0.3)
    _models_axis(ax, summaries)
    return save_figure(fig, path)


def plot_accumulators(summaries: Sequence[Summary], config: DemoConfig, path: Path) -> Path:
    """Accumulator widths each model needs (worst case, seen, swept) against the array's, and "
    "overflowing layers."""
    from matplotlib.ticker import MaxNLocator

    hw = config.hw[0]
    x = np.arange(len(summaries))
    fig, (ax1, ax2) = subplots(
        2, 1, figsize=(_width(len(summaries)), 6.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    ax1.plot(
        x - 0.18,
        [s["min_safe_acc_bits"] for s in summaries],
        "v",
        ms=8,
        color="#DD8452",
        label="never overflows (worst case over any input)",
    )
    ax1.plot(
        x,
        [s["min_safe_acc_bits_observed"] for s in summaries],
        "o",
        ms=7,
        color="#4C72B0",
        label="holds every sum seen (reference batch)",
    )
    swept = [s["min_acc_bits_swept"] for s in summaries]
    ax1.plot(
        x + 0.18,
        [np.nan if v is None else v for v in swept],
        "s",
        ms=6,
        color="#55A868",
        label=f"keeps top-1 agreement >= {config.threshold:g} (swept)",
    )
    for xi, v in zip(x, swept, strict=True):
        if v is None:
            ax1.annotate(
                f"> {max(config.acc_widths)}",
                (xi + 0.18, max(config.acc_widths)),
                ha="center",
                fontsize=7,
                color="#55A868",
                xytext=(0, 4),
                textcoords="offset points",
            )
    ax1.axhline(
        hw.pe.acc_bits,
        color="#C44E52",
        ls="--",
        lw=1.2,
        label=f"{hw.label} accumulator ({hw.pe.acc_bits} bits)",
    )
    ax1.set_ylabel("accumulator width (bits)")
    ax1.set_title("Accumulator width each model needs (widest layer)", fontsize=9)
    ax1.legend(fontsize=7.5, loc="upper center", ncols=2, frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.0))
    ax1.grid(alpha=0.3)
    shown = [s["min_safe_acc_bits_observed"] or hw.pe.acc_bits for s in summaries]
    shown += [v for v in swept if v is not None]
    lo = min(shown + [hw.pe.acc_bits])
    hi = max([s["min_safe_acc_bits"] for s in summaries] + [hw.pe.acc_bits])
    ax1.set_ylim(lo - 2.5, hi + 2.5)
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    counts = [len(s[f"overflowing_layers@{hw.label}"]) for s in summaries]
    ax2.bar(x, counts, 0.5, color=["#C44E52" if c else "#8C8C8C" for c in counts])
    for xi, c in zip(x, counts, strict=True):
        ax2.annotate(str(c), (xi, c), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    ax2.set_ylim(0, max(counts + [1]) * 1.35)
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylabel(f"layers overflowing\nat {hw.pe.acc_bits} bits")
    ax2.grid(axis="y", alpha=0.3)
    _models_axis(ax2, summaries)
    fig.subplots_adjust(hspace=0.55)
    return save_figure(fig, path)


def plot_size(summaries: Sequence[Summary], config: DemoConfig, path: Path) -> Path:
    """Weight memory of each model at the nominal and at the stored widths (KiB)."""
    fig, ax = subplots(figsize=(_width(len(summaries)), 4.2))
    kib = 8 * 1024
    _bars(
        ax,
        [
            ("nominal width (the method's bits)", [s["weight_bits_nominal"] / kib for s in summaries]),
            ("stored width (the codes' storage format)", [s["weight_bits_stored"] / kib for s in summaries]),
        ],
        "{:.0f}",
    )
    top = max((s["weight_bits_stored"] / kib for s in summaries), default=1.0)
    ax.set_ylim(0, top * 1.25)
    ax.set_ylabel("weights (KiB)")
    ax.set_title("Model size: weights of the conv and fc layers", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", ncols=2, frameon=False, bbox_to_anchor=(0.5, -0.28))
    ax.grid(axis="y", alpha=0.3)
    _models_axis(ax, summaries)
    return save_figure(fig, path)


INDEX_PLOTS: dict[str, Callable[[Sequence[Summary], DemoConfig, Path], Path]] = {
    "index_accuracy.png": plot_accuracy,
    "index_latency.png": plot_latency,
    "index_accumulators.png": plot_accumulators,
    "index_size.png": plot_size,
}


def plot_acc_sweep(
    points: Sequence[dict[str, Any]], hw: Any, threshold: float, path: Path, title: str
) -> Path:
    """One model, every accumulator at one width: top-1 agreement (%) and overflowing layers "
    "against the width."""
    bits = [p["bits"] for p in points]
    fig, ax1 = subplots(figsize=(7.0, 3.8))
    ax1.plot(bits, [100 * p["agreement"] for p in points], "o-", color="#4C72B0", label="top-1 agreement (%)")
    ax1.axhline(100 * threshold, color="#4C72B0", ls=":", lw=1, label=f"threshold ({100 * threshold:g} %)")
    ax1.axvline(hw.pe.acc_bits, color="#C44E52", ls="--", lw=1.2, label=f"{hw.label}: {hw.pe.acc_bits} bits")
    ax1.set_ylim(-3, 108)
    ax1.set_xlabel("accumulator width of every layer (bits)")
    ax1.set_ylabel("top-1 agreement with the\nunmodified network (%)")
    ax1.set_xticks(bits)
    ax2 = ax1.twinx()
    ax2.bar(
        bits,
        [p["overflowing_layers"] for p in points],
        0.8,
        color="#DD8452",
        alpha=0.35,
        label="layers overflowing",
    )
    ax2.set_ylabel("layers overflowing", color="#A0522D")
    ax2.set_ylim(0, max([p["overflowing_layers"] for p in points] + [1]) * 1.15)
    ax1.set_zorder(ax2.get_zorder() + 1)
    ax1.patch.set_visible(False)
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax1.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax1.legend(
        handles, labels, fontsize=7.5, loc="upper center", ncols=4, frameon=False, bbox_to_anchor=(0.5, -0.2)
    )
    ax1.set_title(title, fontsize=9)
    ax1.grid(alpha=0.3)
    return save_figure(fig, path)
