"""The end-to-end demo: every bundled model emulated, compared, simulated, swept; a report each, an index.

Place in the flow: ``hwsim demo`` calls :func:`run_demo`. It takes the bundles that
``hwsim.pretrained`` lists (exported by ``qat export``, shipped in the package), and for each runs
the same library functions as the single commands: ``hwsim.compare.compare_bundle`` (the emulator
against the PyTorch reference, per layer), ``hwsim.emulator.emulate`` at each array's accumulator
width (overflow), ``hwsim.simulate.simulate_bundle`` on each hardware configuration (cycles,
memory; the array model executes the folds of ``sim_images`` images and must equal the emulator)
and ``hwsim.sweep.sweep_bundle`` (accumulator width, and w_bits/a_bits on the primary model). It
writes one report per model with ``hwsim.report.write_report_files`` and an index page comparing them
(``index.md``, a self-contained ``index.html``, ``index.json`` and PNGs from ``hwsim.demo_plots``).

What runs where is chosen to fit the budget (the whole demo, ~11 models, in under 3 minutes on 2
cores) and is written on the index page with the time each step took: compare on the whole
reference batch; the array model on ``sim_images`` images; for every model, an accumulator sweep
of the whole network (every accumulator at one width, ``acc_widths``) on ``sweep_images`` images;
the per-layer sweeps (acc_bits, w_bits, a_bits: one layer narrowed at a time) on the primary model
only.
Each model's comparison and each sweep is one task of hwsim.execute (``executor``: this process,
a local pool of ``jobs`` processes, or Dask); an interrupted demo keeps the finished tasks
(hwsim.journal) and ``resume`` runs only the rest. Everything is written to a temporary
directory next to ``out`` and renamed into place at the end, so ``out`` holds either the previous
demo or the whole new one.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hwsim import demo_plots, plots
from hwsim.atomic import write_atomic
from hwsim.bundle import Bundle, load_bundle, quantize_images
from hwsim.compare import compare_bundle, requant_results, top1
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.execute import ExecutorConfig, run_tasks
from hwsim.hwconfig import ArrayConfig, HardwareConfig
from hwsim.journal import digest, journal_for
from hwsim.output import claim, publish_directory, register_kind, safe_name
from hwsim.pretrained import BUNDLES_DIR, PretrainedModel, list_bundles, primary_model
from hwsim.report import Row, fmt_value, jsonable, plot_error_per_layer, results_report, write_report_files
from hwsim.results import Column, JoinedLayer, MacLayerResult, RequantResult, join_layers, table, to_data
from hwsim.simulate import simulate_bundle
from hwsim.sweep import SweepResult, default_jobs, sweep_bundle

# The hardware the demo simulates: the default 16x16 weight-stationary array with 24-bit wrapping
# accumulators (= configs/hw/ws_16x16.yaml) and the same array output-stationary (= os_16x16.yaml).
# Built here so that the demo runs from an installed package without the repository's configs/.
DEMO_HW: tuple[HardwareConfig, ...] = (
    HardwareConfig(name="ws_16x16"),
    HardwareConfig(array=ArrayConfig(16, 16, "os"), name="os_16x16"),
)
INDEX_TITLE = "# hwsim demo"  # the first line of index.md starts so
ACC_WIDTHS: tuple[int, ...] = tuple(range(8, 33, 2))
PRECISION_WIDTHS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
PRECISION_SCOPES: tuple[str, ...] = ("primary", "all", "none")
INDEX_FILES: tuple[str, ...] = ("index.md", "index.html", "index.json")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs: which models, on what, at which widths; validated on construction."""

    out: Path = Path("reports/demo")
    models: tuple[str, ...] | None = None  # None: every bundled model
    bundles_dir: Path | None = None  # None: the package's hwsim/pretrained/bundles
    data: Path | None = None  # a CIFAR-10 directory: also emulate its test split
    test_images: int | None = None  # with data: the first N test images (None: all)
    hw: tuple[HardwareConfig, ...] = DEMO_HW
    sim_images: int = 1
    acc_widths: tuple[int, ...] = ACC_WIDTHS
    precision_widths: tuple[int, ...] = PRECISION_WIDTHS
    precision_scope: str = "primary"
    sweep_images: int = 16
    threshold: float = 0.99
    jobs: int = field(default_factory=default_jobs)
    # where the tasks run (hwsim.execute); None: ``jobs`` local processes
    executor: ExecutorConfig | None = None
    resume: bool = False  # take the tasks an interrupted run finished (hwsim.journal)
    progress: bool = True
    markdown_only: bool = False  # keep only the .md and .png files (a report to commit to git)
    force: bool = False  # replace config.out even when it is not an earlier demo report

    def __post_init__(self) -> None:
        def positive(name: str, value: object) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--{name.replace('_', '-')} {value!r}: expected a positive integer")

        for name in ("sim_images", "sweep_images", "jobs"):
            positive(name, getattr(self, name))
        if self.test_images is not None:
            positive("test_images", self.test_images)
        if not self.hw:
            raise UserError("hardware: give at least one configuration")
        labels = [h.label for h in self.hw]
        if len(set(labels)) != len(labels):
            raise UserError(f"hardware: configuration names {labels} repeat; give each a different name")
        for name, widths, lo, hi in (
            ("acc-widths", self.acc_widths, 1, 64),
            ("precision-widths", self.precision_widths, 2, 16),
        ):
            if not widths or any(
                isinstance(b, bool) or not isinstance(b, int) or not lo <= b <= hi for b in widths
            ):
                raise UserError(f"--{name} {list(widths)}: expected widths in {lo}..{hi}")
            object.__setattr__(self, name.replace("-", "_"), tuple(sorted(set(widths))))
        if self.precision_scope not in PRECISION_SCOPES:
            raise UserError(
                f"--precision-sweep {self.precision_scope!r}: expected one of {', '.join(PRECISION_SCOPES)}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"--threshold {self.threshold}: expected a fraction in [0, 1]")
        if self.executor is None:
            object.__setattr__(self, "executor", ExecutorConfig(workers=self.jobs))

    @property
    def where(self) -> ExecutorConfig:
        """The executor of the tasks (set on construction)."""
        assert self.executor is not None
        return self.executor


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote: the index, each model's summary and report, the time of each step."""

    index: Path
    summaries: list[dict[str, Any]]
    seconds: float
    step_seconds: dict[str, float]


# ----------------------------------------------------------------------------------------------
# Choosing the models
# ----------------------------------------------------------------------------------------------


def select_models(config: DemoConfig) -> tuple[list[PretrainedModel], list[PretrainedModel]]:
    """``(models to run, models to sweep w_bits/a_bits on)``; an unknown ``--models`` name is an error."""
    available = list_bundles(config.bundles_dir)
    if not available:
        where = config.bundles_dir or "the package"
        raise UserError(
            f"{where}: no bundled models (no <name>/graph.yaml); add some with hwsim.pretrained.pack"
        )
    names = [m.name for m in available]
    if config.models:
        unknown = [m for m in config.models if m not in names]
        if unknown:
            raise UserError(
                f"--models: no bundled model named {unknown[0]!r}; bundled models: {', '.join(names)}"
            )
        chosen = [m for m in available if m.name in config.models]
    else:
        chosen = available
    if config.precision_scope == "none":
        return chosen, []
    if config.precision_scope == "all":
        return chosen, chosen
    primary = primary_model(chosen, config.bundles_dir)
    return chosen, [primary] if primary is not None else []


# ----------------------------------------------------------------------------------------------
# One model (runs in a worker process)
# ----------------------------------------------------------------------------------------------

_TEST_SETS: dict[tuple[str, int | None], tuple[np.ndarray, np.ndarray]] = {}  # per process


def _test_set(data: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    key = (str(data), limit)
    if key not in _TEST_SETS:
        from hwsim.cifar10 import load_cifar10

        images, labels = load_cifar10(data, "test")
        _TEST_SETS[key] = (images[:limit], labels[:limit]) if limit else (images, labels)
    return _TEST_SETS[key]


def evaluate_test_set(bundle: Bundle, data: Path, limit: int | None) -> tuple[dict[str, Any], list[str]]:
    """The emulator's top-1 on (the first ``limit`` images of) ``data``'s test split; PyTorch's where known.

    PyTorch's top-1 and the agreement come from reference.npz's ``eval_predictions`` when their
    labels equal this test set's (same images, same order); otherwise they are left out and a note
    says why.
    """
    images, labels = _test_set(data, limit)
    run = emulate(bundle, quantize_images(images, bundle), EmulatorConfig(), keep=False)
    n = int(labels.shape[0])
    out: dict[str, Any] = {
        "images": n,
        "top1_reference": None,
        "top1_emulator": top1(run.predictions, labels),
        "top1_agreement": None,
    }
    ref = bundle.reference
    notes: list[str] = []
    if ref is not None and ref.eval_predictions is not None and ref.eval_labels is not None:
        if ref.eval_labels.shape[0] >= n and np.array_equal(ref.eval_labels[:n], labels):
            out["top1_reference"] = top1(ref.eval_predictions[:n], labels)
            out["top1_agreement"] = float(np.mean(run.predictions == ref.eval_predictions[:n]))
        else:
            notes.append(
                f"the test set of {data} is not the one the export evaluated (labels differ): PyTorch top-1 "
                "and agreement on it are not available, only the emulator's top-1"
            )
    else:
        notes.append("reference.npz has no eval_predictions: PyTorch top-1 on the test set is not available")
    return out, notes


def weight_bits(bundle: Bundle) -> dict[str, int]:
    """Weights of the MAC layers: count, and total bits at the nominal and at the stored widths."""
    count = nominal = stored = 0
    for node in bundle.mac_nodes:
        n = int(node.weight.size)
        count += n
        nominal += n * int(node.weight_format.nominal_bits or node.weight_format.bits)
        stored += n * int(node.weight_format.bits)
    return {"weights": count, "weight_bits_nominal": nominal, "weight_bits_stored": stored}


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (reports stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _png(fn: Callable[[Path], Path]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(fn(Path(tmp) / "plot.png")).read_bytes()


def _hw_key(hw: HardwareConfig) -> tuple[int, str]:
    return hw.pe.acc_bits, hw.pe.overflow


def _timed(seconds: dict[str, float], step: str, start: float) -> float:
    now = time.perf_counter()
    seconds[step] = seconds.get(step, 0.0) + now - start
    return now


def network_acc_sweep(
    bundle: Bundle,
    codes: np.ndarray,
    baseline: np.ndarray,
    needed: dict[str, int | None],
    widths: Sequence[int],
    overflow: str,
) -> list[dict[str, Any]]:
    """Every accumulator of the network at each width: top-1 agreement with the unmodified emulator, overflow.

    ``baseline``: the unmodified emulator's predictions on ``codes``; ``needed``: each MAC layer's
    observed accumulator need on a superset of ``codes``. A width that holds every layer's need
    changes no value, so that point is the baseline itself (agreement 1, no overflow) and is not run.
    """
    points = []
    most = max((v for v in needed.values() if v is not None), default=1)
    for bits in widths:
        if bits >= most:
            points.append(
                {"bits": bits, "agreement": 1.0, "overflowing_layers": 0, "overflow_rate": 0.0, "run": False}
            )
            continue
        run = emulate(bundle, codes, EmulatorConfig(bits, overflow), keep=False)
        changed = sum(s.overflow_count for s in run.layers.values())
        total = sum(s.elements for s in run.layers.values())
        points.append(
            {
                "bits": bits,
                "agreement": float(np.mean(run.predictions == baseline)),
                "overflowing_layers": sum(1 for s in run.layers.values() if s.overflow_count),
                "overflow_rate": changed / total if total else 0.0,
                "run": True,
            }
        )
    return points


def run_model(model: PretrainedModel, config: DemoConfig) -> dict[str, Any]:
    """Compare, overflow, simulate and sweep one model; rows, totals, notes and rendered PNGs (as bytes)."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    bundle = load_bundle(model.path)
    ref = bundle.reference
    if ref is None:
        raise UserError(
            f"{model.path}: the bundled model '{model.name}' has no reference.npz; the demo compares "
            "against it; re-pack the bundle from a qat export with its reference"
        )
    t = _timed(seconds, "load", t)
    comparison = compare_bundle(bundle)
    cmp_totals = comparison.totals
    notes: list[str] = []
    test: dict[str, Any] | None = None
    if config.data is not None:
        test, test_notes = evaluate_test_set(bundle, config.data, config.test_images)
        notes += test_notes
    t = _timed(seconds, "compare", t)

    # Overflow at each array's accumulator width, over the whole reference batch.
    ref_pred = np.argmax(ref.codes[bundle.meta.output], axis=1) if bundle.meta.output in ref.codes else None
    at_hw: dict[tuple[int, str], Any] = {}
    for hw in config.hw:
        if _hw_key(hw) not in at_hw:
            at_hw[_hw_key(hw)] = emulate(
                bundle, ref.input_codes, EmulatorConfig(hw.pe.acc_bits, hw.pe.overflow), keep=False
            )
    t = _timed(seconds, "overflow", t)

    sims = [simulate_bundle(bundle, hw, ref.input_codes[: config.sim_images]) for hw in config.hw]
    t = _timed(seconds, "simulate", t)

    k = min(config.sweep_images, ref.images)
    if k < config.sweep_images:
        notes.append(
            f"--sweep-images {config.sweep_images}: the reference batch holds {ref.images} images; "
            f"the sweeps ran on all {k}"
        )
    needed = {name: st.min_safe_acc_bits_observed for name, st in comparison.emulation.layers.items()}
    network = network_acc_sweep(
        bundle,
        ref.input_codes[:k],
        comparison.emulation.predictions[:k],
        needed,
        config.acc_widths,
        config.hw[0].pe.overflow,
    )
    t = _timed(seconds, "acc_sweep", t)

    hw0 = config.hw[0]
    # compare's rows with the accumulator statistics at the first configuration's width, each with
    # the cost of its MAC nodes on every configuration
    requants = requant_results(bundle, at_hw[_hw_key(hw0)], comparison.errors, comparison.isolated)
    order = [n.name for n in bundle.nodes]
    layers = join_layers(requants, [sim.rows for sim in sims], _hw_pes(config), order)
    rows, _ = table(layers, JoinedLayer.columns(_labels(config)))
    pools = [r.name for r in sims[0].rows if r.type == "maxpool"]
    if pools:
        notes.append(
            f"maxpool rows ({', '.join(pools)}): the vector unit's cycles (docs/dataflow.md); no MACs, "
            "no accumulator, not compared (compare's rows are the requantizers)"
        )

    totals: dict[str, Any] = {
        "top1_source": cmp_totals["top1_source"],
        "top1_reference": cmp_totals["top1_reference"],
        "top1_emulator": cmp_totals["top1_emulator"],
        "top1_agreement": cmp_totals["top1_agreement"],
    }
    if test is not None:
        totals.update({f"test_set_{k}": v for k, v in test.items()})
    for key in (
        "layers_exact",
        "layers_compared",
        "max_abs_err_lsb",
        "within_1lsb",
        "first_divergent_layer",
        "isolated_max_abs_err_lsb",
        "reference_batch_images",
    ):
        if key in cmp_totals:
            totals[key] = cmp_totals[key]
    if ref.eval_predictions is not None and ref.eval_labels is not None:
        totals["export_eval_images"] = int(ref.eval_labels.shape[0])
        totals["export_eval_top1_pytorch"] = top1(ref.eval_predictions, ref.eval_labels)
    totals["bundle_acc_bits"] = bundle.meta.acc_bits
    for hw, sim in zip(config.hw, sims, strict=True):
        run = at_hw[_hw_key(hw)]
        totals[f"latency_us@{hw.label}"] = sim.totals["latency_us"]
        totals[f"cycles@{hw.label}"] = sim.totals["cycles"]
        totals[f"utilization@{hw.label}"] = sim.totals["utilization"]
        totals[f"energy_nj@{hw.label}"] = sim.totals["energy_nj"]
        totals[f"edp_nj_us@{hw.label}"] = sim.totals["edp_nj_us"]
        totals[f"overflowing_layers@{hw.label}"] = [n for n, s in run.layers.items() if s.overflow_count]
        if ref_pred is not None:
            totals[f"agreement@{hw.label}"] = float(np.mean(run.predictions == ref_pred))
        totals[f"array_value_mismatches@{hw.label}"] = sim.totals["array_value_mismatches"]
    totals["min_safe_acc_bits"] = max(r.min_safe_acc_bits or 0 for r in requants)
    totals["min_safe_acc_bits_observed"] = max(
        (r.min_safe_acc_bits_observed for r in requants if r.min_safe_acc_bits_observed is not None),
        default=None,
    )
    safe = [p["bits"] for p in network if p["agreement"] >= config.threshold]
    # the narrowest width from which every wider swept one keeps the agreement
    minimum = None
    for p in reversed(network):
        if p["agreement"] < config.threshold:
            break
        minimum = p["bits"]
    totals["min_acc_bits_swept"] = minimum if safe else None
    totals["acc_sweep_images"] = k
    totals["acc_sweep"] = network
    totals.update(weight_bits(bundle))
    mismatched = [h.label for h in config.hw if totals[f"array_value_mismatches@{h.label}"]]
    if mismatched:
        notes.append(
            f"DEFECT: the array model's values differ from the emulator's on {', '.join(mismatched)} "
            "(array_value_mismatches); please report it"
        )

    title = f"{model.title}"
    pngs: dict[str, bytes] = {
        "error_per_layer.png": _png(
            lambda p: plot_error_per_layer(
                table(comparison.layers)[0], p, f"{title}: emulator vs PyTorch, per layer"
            )
        ),
        "latency.png": _png(
            lambda p: plots.plot_latency(rows, p, f"{title} on {hw0.label}: cycles per layer")
        ),
        "energy.png": _png(lambda p: plots.plot_energy(rows, p, f"{title} on {hw0.label}: energy per layer")),
        "overflow.png": _png(
            lambda p: plots.plot_overflow(
                rows, p, f"{title}: accumulators at {hw0.pe.acc_bits} bits ({hw0.pe.overflow})"
            )
        ),
        "acc_sweep.png": _png(
            lambda p: demo_plots.plot_acc_sweep(
                network,
                hw0,
                config.threshold,
                p,
                f"{title}: every accumulator narrowed to the same width ({k} reference images)",
            )
        ),
    }
    _timed(seconds, "plots", t)
    return {
        "name": model.name,
        "requants": [to_data(r) for r in requants],
        "layers": [[to_data(r) for r in sim.rows] for sim in sims],
        "order": order,
        "totals": totals,
        "notes": notes,
        "pngs": pngs,
        "seconds": seconds,
        "meta": {
            "bundle": _shown_path(model.path),
            "model": bundle.meta.model,
            "method": model.method,
            "bits": model.bits_label,
            "bundle_acc_bits": bundle.meta.acc_bits,
            "hardware": ", ".join(h.label for h in config.hw),
            "reference_device": ref.device,
        },
    }


def run_precision(model: PretrainedModel, what: str, config: DemoConfig) -> dict[str, Any]:
    """One w_bits or a_bits sweep of ``model``: each layer's smallest safe width and the heatmap PNG."""
    start = time.perf_counter()
    bundle = load_bundle(model.path)
    ref = bundle.reference
    assert ref is not None
    k = min(config.sweep_images, ref.images)
    widths = list(config.precision_widths)
    if what == "acc_bits":  # the widths around where this network's accumulators start to overflow
        first = emulate(bundle, ref.input_codes[:k], EmulatorConfig(), keep=False)
        needs = [s.min_safe_acc_bits_observed or 1 for s in first.layers.values()]
        widths = [b for b in config.acc_widths if min(needs) - 6 <= b <= max(needs) + 1] or [max(needs)]
    result: SweepResult = sweep_bundle(
        bundle,
        what,
        widths,
        ref.input_codes[:k],
        labels=ref.labels[:k],
        reference_predictions=None,  # the unmodified emulator: what narrowing alone changes
        threshold=config.threshold,
        overflow=config.hw[0].pe.overflow,
        jobs=1,
    )
    label = {"w_bits": "weights", "a_bits": "input activations", "acc_bits": "accumulators"}[what]
    png = _png(
        lambda p: plots.plot_heatmap(
            result.grid("agreement"),
            result.layers,
            result.widths,
            p,
            f"{model.title}: top-1 agreement with the unmodified network,\none layer's {label} "
            f"narrowed ({k} reference images)",
            "top-1 agreement",
            0,
            1,
        )
    )
    return {
        "name": model.name,
        "what": what,
        "min_bits": result.min_bits(),
        "widths": result.widths,
        "images": k,
        "png": png,
        "seconds": {f"{what}_sweep": time.perf_counter() - start},
    }


# ----------------------------------------------------------------------------------------------
# Per-model report
# ----------------------------------------------------------------------------------------------


def write_model_report(
    model: PretrainedModel,
    part: dict[str, Any],
    precision: list[dict[str, Any]],
    config: DemoConfig,
    directory: Path,
) -> None:
    requants = [RequantResult.from_data(r) for r in part["requants"]]
    pngs: dict[str, bytes] = dict(part["pngs"])
    notes: list[str] = list(part["notes"])
    totals = dict(part["totals"])
    hw0 = config.hw[0]
    notes = [
        "rows are the requantizers (as in hwsim compare), each with the MAC node(s) feeding it (mac_nodes); "
        "cycles, latency_us, utilization, bound and the energy columns are on "
        f"{hw0.label} ({hw0.describe()}, "
        f"{hw0.clock_mhz:g} MHz), per image, summed over those MAC nodes; "
        + ", ".join(f"latency_us@{h.label}" for h in config.hw[1:])
        + " the same on the other configuration(s)",
        f"error columns (mismatch_rate .. sqnr_db): the emulator at the bundle's accumulator width "
        f"({totals['bundle_acc_bits']} bits) against the PyTorch reference on "
        f"{totals.get('reference_batch_images')} reference images",
        f"overflow columns (overflow_count, peak_acc_abs, overflow_rate): the emulator at "
        f"{hw0.pe.acc_bits}-bit accumulators ({hw0.pe.overflow}) on the same images",
        f"the array model executed every fold of {config.sim_images} image(s) on each configuration; "
        "array_value_mismatches@<hw> in the totals counts its values that differ from the "
        "emulator's (0: equal)",
        f"accumulator sweep (acc_sweep.png, totals 'acc_sweep'): every accumulator at one width, "
        f"{', '.join(map(str, config.acc_widths))} bits, {totals['acc_sweep_images']} reference "
        "images; agreement "
        "is with the unmodified integer network; widths holding every sum seen change nothing and "
        "are not run",
        *notes,
    ]
    for p in precision:
        widths = [[p["min_bits"].get(m) for m in r.mac_nodes] for r in requants]
        requants = [
            replace(r, **{f"min_{p['what']}": None if not v or None in v else max(v)})
            for r, v in zip(requants, widths, strict=True)
        ]
        pngs[f"sensitivity_{p['what']}.png"] = p["png"]
        notes.append(
            f"{p['what']} sweep (sensitivity_{p['what']}.png): each MAC layer alone narrowed to "
            f"{', '.join(map(str, p['widths']))} bits on {p['images']} reference images; "
            f"min_{p['what']}: the "
            "narrowest width from which every wider one keeps top-1 agreement >= "
            f"{config.threshold} with the "
            "unmodified network (empty: none does)"
        )
    plot_fns = {name: _writer(data) for name, data in pngs.items()}
    sims = [[MacLayerResult.from_data(r) for r in sim] for sim in part["layers"]]
    layers = join_layers(requants, sims, _hw_pes(config), part["order"])
    title = f"hwsim demo: {model.title} ({model.name})"
    columns = JoinedLayer.columns(_labels(config))
    report = results_report(title, part["meta"], layers, totals, notes, columns)
    write_report_files(report, directory, plot_fns)


def _labels(config: DemoConfig) -> list[str]:
    return [h.label for h in config.hw]


def _hw_pes(config: DemoConfig) -> list[tuple[str, int]]:
    """Each configuration's label and PEs, as :func:`hwsim.results.join_layers` takes them."""
    return [(h.label, h.array.pes) for h in config.hw]


def _writer(data: bytes) -> Callable[[Sequence[Row], Path, str], Path]:
    def write(rows: Sequence[Row], path: Path, title: str) -> Path:
        Path(path).write_bytes(data)
        return Path(path)

    return write


# ----------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DemoInputs:
    """What every task of the demo reads: the configuration and the models by name."""

    config: DemoConfig
    models: dict[str, PretrainedModel]


def demo_task(inputs: _DemoInputs, task: tuple[str, str, str]) -> dict[str, Any]:
    """One task of the demo (hwsim.execute): ``("model", name, "")`` compares and simulates a model,
    ``("precision", name, what)`` runs one of its sweeps."""
    kind, name, arg = task
    model = inputs.models[name]
    if kind == "model":
        return run_model(model, inputs.config)
    return run_precision(model, arg, inputs.config)


def _fingerprint(config: DemoConfig, models: list[PretrainedModel]) -> str:
    """What the demo's tasks depend on: every option that reaches them and the bundles' bytes."""
    options = replace(config, out=Path(), progress=False, force=False, jobs=1, executor=None, resume=False)
    files = [
        (str(p.relative_to(m.path)), p.read_bytes())
        for m in models
        for p in sorted(m.path.rglob("*"))
        if p.is_file()
    ]
    return digest("demo", options, [m.name for m in models], files)


def _looks_like_demo(path: Path) -> bool:
    """A demo report written before output markers: an index.md that the demo wrote."""
    try:
        with (path / "index.md").open(encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first.startswith(INDEX_TITLE)


DEMO = register_kind("demo", recognize=_looks_like_demo)
"""The output kind of the demo's --out directory (hwsim.output)."""


def run_demo(config: DemoConfig) -> DemoResult:
    """Run the demo (see the module docstring) and write ``config.out``; returns the index and summaries."""
    start = time.perf_counter()
    plots.pyplot()  # imported once here: the forked workers that draw the models' plots inherit it
    models, precision_models = select_models(config)
    tasks: list[tuple[str, str, str]] = [
        ("precision", m.name, what) for m in precision_models for what in ("acc_bits", "w_bits", "a_bits")
    ] + [
        ("model", m.name, "") for m in models
    ]  # the long sweeps first, so no worker is left with one at the end
    by_name = {m.name: m for m in [*models, *precision_models]}
    out = claim(
        config.out,
        DEMO,
        flag="--out",
        force=config.force,
        inputs=(config.bundles_dir or BUNDLES_DIR, config.data),
    )
    with (
        journal_for(
            out, _fingerprint(config, list(by_name.values())), resume=config.resume, what="hwsim demo"
        ) as journal,
        publish_directory(out, DEMO) as staged,
    ):
        results = run_tasks(
            demo_task,
            _DemoInputs(config, by_name),
            tasks,
            config.where,
            journal=journal,
            desc="hwsim demo",
            progress=config.progress,
        )
        bar = tqdm(total=1, desc="hwsim demo: writing reports", unit="step", disable=not config.progress)
        try:
            step_seconds: dict[str, float] = {}
            for r in results:
                assert r is not None
                for step, s in r["seconds"].items():
                    step_seconds[step] = step_seconds.get(step, 0.0) + s
            summaries: list[dict[str, Any]] = []
            for i, (kind, name, _) in enumerate(tasks):
                if kind != "model":
                    continue
                model = by_name[name]
                part = results[i]
                assert part is not None
                precision = [r for r in results if r is not None and "what" in r and r["name"] == model.name]
                directory = staged / safe_name(model.name, f"{model.path}: the bundle's directory name")
                write_model_report(model, part, precision, config, directory)
                summaries.append(_summary(model, part, precision))
            elapsed = time.perf_counter() - start
            write_index(staged, summaries, config, step_seconds, elapsed, [m.name for m in precision_models])
            if config.markdown_only:
                for path in staged.rglob("*"):
                    if path.is_file() and path.suffix not in (".md", ".png"):
                        path.unlink()
            bar.update()
        finally:
            bar.close()
    return DemoResult(config.out / "index.md", summaries, time.perf_counter() - start, step_seconds)


def _summary(model: PretrainedModel, part: dict[str, Any], precision: list[dict[str, Any]]) -> dict[str, Any]:
    t = part["totals"]
    out: dict[str, Any] = {
        "name": model.name,
        "title": model.title,
        "method": model.method,
        "bits": model.bits_label,
        "manifest_top1_pytorch": model.top1_pytorch,
        "report": f"{model.name}/report.md",
        **t,
    }
    for p in precision:
        values = [v for v in p["min_bits"].values()]
        out[f"min_{p['what']}"] = None if any(v is None for v in values) else max(values)
    return out


# ----------------------------------------------------------------------------------------------
# The index page
# ----------------------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.1f} %"


def _kib(bits: int) -> str:
    return f"{bits / 8 / 1024:.1f}"


def index_table(summaries: Sequence[dict[str, Any]], config: DemoConfig) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the index's model table (Markdown links to each report)."""
    hw_labels = [h.label for h in config.hw]
    hw0 = config.hw[0]
    header = [
        "model",
        "method",
        "bits",
        "top-1 PyTorch",
        "top-1 emulator",
        "agreement",
        "layers exact",
        "max err (LSB)",
        *[f"latency {h} (us)" for h in hw_labels],
        *[f"energy {h} (uJ)" for h in hw_labels],
        f"overflowing layers @{hw0.pe.acc_bits} b",
        "min safe acc (worst / seen / swept)",
        "weights (KiB, nominal / stored)",
    ]
    cells = []
    for s in summaries:
        value = s["min_acc_bits_swept"]
        swept = f"> {max(config.acc_widths)}" if value is None else str(value)
        cells.append(
            [
                f"[{s['title']}]({s['report']})",
                s["method"],
                s["bits"],
                _pct(s["top1_reference"]),
                _pct(s["top1_emulator"]),
                _pct(s["top1_agreement"]),
                f"{s.get('layers_exact', '')}/{s.get('layers_compared', '')}",
                fmt_value(s.get("max_abs_err_lsb")),
                *[f"{s[f'latency_us@{h}']:.1f}" for h in hw_labels],
                *[f"{s[f'energy_nj@{h}'] / 1000:.1f}" for h in hw_labels],
                str(len(s[f"overflowing_layers@{hw0.label}"])),
                f"{s['min_safe_acc_bits']} / {fmt_value(s['min_safe_acc_bits_observed'])} / {swept}",
                f"{_kib(s['weight_bits_nominal'])} / {_kib(s['weight_bits_stored'])}",
            ]
        )
    return header, cells


def _md_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def _scope_lines(
    config: DemoConfig, summaries: Sequence[dict[str, Any]], precision_names: Sequence[str]
) -> list[str]:
    first = summaries[0] if summaries else {}
    ref_images = first.get("reference_batch_images", "?")
    hw = ", ".join(
        f"{h.label} ({h.describe()}, {h.clock_mhz:g} MHz, DRAM {h.dram_bytes_per_cycle:g} B/cycle)"
        for h in config.hw
    )
    lines = [
        f"- **every model**: emulator vs PyTorch on the whole reference batch ({ref_images} images); "
        f"overflow at each array's accumulator width on the same images; cycles and memory on {hw}, "
        f"with the array model executing every fold of {config.sim_images} image(s) (values checked equal "
        f"to the emulator's); accumulator-width sweep of the whole network (every accumulator at one "
        f"width) at {', '.join(map(str, config.acc_widths))} bits on {config.sweep_images} images",
    ]
    if precision_names:
        lines.append(
            "- **reduced scope**: the per-layer sweeps (one MAC layer narrowed at a time: acc_bits around "
            "the widths the network needs; w_bits and a_bits at "
            f"{', '.join(map(str, config.precision_widths))} bits; {config.sweep_images} images) run on "
            f"{', '.join(precision_names)} only "
            "(`--precision-sweep all` runs them on every model)"
        )
    else:
        lines.append("- the per-layer sweeps were not run (`--precision-sweep none`)")
    if config.data is not None:
        n = config.test_images or "all"
        lines.append(f"- **test set**: the emulator on {n} test images of {config.data}")
    return lines


def _label_lines(config: DemoConfig, summaries: Sequence[dict[str, Any]]) -> list[str]:
    first = summaries[0] if summaries else {}
    source = first.get("top1_source", "reference batch")
    labelled = all(s.get("top1_reference") is not None for s in summaries)
    lines = [
        f"- top-1 columns are on the {source}"
        + ("" if labelled else "; empty where the images carry no labels")
    ]
    if config.data is None:
        lines += [
            "- **figures that need a labelled data set** (run with `--data DIR` or `CIFAR10_DIR=DIR`): the "
            "emulator's top-1 on the CIFAR-10 test split; without one, top-1 is measured only on the "
            "reference batch the export recorded (labels stored in reference.npz), which is too small for an "
            "accuracy figure: read it as a sanity check",
            "- agreement (same top-1 class as the PyTorch model), per-layer errors, overflow, latency, "
            "accumulator widths and model size need no labels",
        ]
        evals = [s for s in summaries if s.get("export_eval_top1_pytorch") is not None]
        if evals:
            lines.append(
                "- PyTorch top-1 on the export's evaluation set (recorded in reference.npz, no "
                "images needed): "
                + ", ".join(f"{s['title']} {_pct(s['export_eval_top1_pytorch'])}" for s in evals)
                + f" ({evals[0]['export_eval_images']} images)"
            )
    return lines


def write_index(
    directory: Path,
    summaries: list[dict[str, Any]],
    config: DemoConfig,
    step_seconds: dict[str, float],
    elapsed: float,
    precision_names: Sequence[str],
) -> Path:
    """index.md, index.html (PNGs inlined), index.json and the comparison PNGs under ``directory``."""
    pngs: dict[str, Path] = {}
    for name, fn in demo_plots.INDEX_PLOTS.items():
        pngs[name] = fn(summaries, config, directory / name)
    header, cells = index_table(summaries, config)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(step_seconds.items(), key=lambda kv: -kv[1]))
    md = [
        INDEX_TITLE + ": bundled quantized ResNet20s on a MAC-array model",
        "",
        f"{len(summaries)} models, each exported to integers, emulated bit-accurately, compared "
        "layer by layer "
        "with its PyTorch model, simulated on the hardware below and swept for accumulator width. "
        "Each model's own report is linked from its name.",
        "",
        _md_table(header, cells),
        "",
        "## What ran",
        "",
        *_scope_lines(config, summaries, precision_names),
        f"- time: {elapsed:.0f} s wall, tasks on {config.where.describe()}; per step, summed over "
        f"models (CPU-side): {steps}",
        "",
        "## Reading the numbers",
        "",
        *_label_lines(config, summaries),
        "- top-1 PyTorch / emulator: the fraction of images whose top class is the label; agreement: the "
        "fraction where the emulator's top class equals the PyTorch model's",
        "- layers exact: layers whose every output code equals PyTorch's; max err: the largest |difference| "
        "of any output code, in LSBs, the 16-bit logits included, with the emulator running on its own "
        "codes so that 1-LSB differences (the float/integer boundary docs/export-format.md documents) "
        "propagate; each report's isolated_max_abs_err_lsb gives every layer's own arithmetic alone",
        f"- overflowing layers: MAC layers whose accumulator wraps at {config.hw[0].pe.acc_bits} bits on the "
        "reference batch; min safe acc: the narrowest accumulator that can never overflow (worst case "
        "over any input), that held every sum seen, and the narrowest swept width keeping top-1 "
        f"agreement >= {config.threshold} in every layer",
        "- weights: the MAC layers' weights at their nominal width (the method's) and at their stored "
        "width (the codes' storage format, wider for odd/binary/ternary lattices); KiB = 1024 bytes",
        "- latency: per image (batch 1), microseconds at the configuration's clock",
        "- energy: per image (batch 1), microjoules: compute, on-chip buffers, DRAM and static energy from "
        "the configuration's technology table; a first-order estimate (docs/energy.md), for comparing "
        "models and configurations, not a measured figure",
        "",
        "## Plots",
        "",
        *[f"![{n}]({n})" for n in pngs],
        "",
        "Columns of every report.json / layers.csv: see reports/README.md.",
        "",
    ]
    write_atomic(directory / "index.md", "\n".join(md))
    write_atomic(directory / "index.html", _index_html(header, cells, md, pngs))
    doc = {
        "models": summaries,
        "hardware": [h.label for h in config.hw],
        "acc_widths": list(config.acc_widths),
        "precision_widths": list(config.precision_widths),
        "precision_models": list(precision_names),
        "sweep_images": config.sweep_images,
        "sim_images": config.sim_images,
        "threshold": config.threshold,
        "data": str(config.data) if config.data else None,
        "seconds": elapsed,
        "step_seconds": step_seconds,
    }
    write_atomic(directory / "index.json", json.dumps(jsonable(doc), indent=2) + "\n")
    return directory / "index.md"


def _index_html(
    header: Sequence[str], cells: Sequence[Sequence[str]], md: Sequence[str], pngs: dict[str, Path]
) -> str:
    import re

    def cell(text: str) -> str:
        m = re.fullmatch(r"\[(.*)\]\((.*)/report\.md\)", text)
        if m:
            return f'<a href="{html.escape(m.group(2))}/report.html">{html.escape(m.group(1))}</a>'
        return html.escape(text)

    table = (
        "<table><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in cells)
        + "</tbody></table>"
    )
    body: list[str] = []
    for line in md:
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            text = html.escape(line[2:])
            text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
            text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
            body.append(f"<li>{text}</li>")
        elif line.startswith("| ") or line.startswith("|---") or line.startswith("!["):
            if line.startswith("| model"):
                body.append(table)
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    images = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode("ascii")}"><figcaption>{html.escape(n)}</figcaption></figure>'
        for n, p in pngs.items()
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}table{border-collapse:"
        "collapse;font-size:12px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        "figure{margin:1em 0}figcaption{font-size:12px;color:#555}"
    )
    joined = re.sub(r"((?:<li>.*?</li>)+)", r"<ul>\1</ul>", "".join(body)).replace(
        "<h2>Plots</h2>", "<h2>Plots</h2>" + images
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>hwsim demo</title>'
        f"<style>{style}</style></head><body>{joined}</body></html>"
    )


# ----------------------------------------------------------------------------------------------
# reports/README.md
# ----------------------------------------------------------------------------------------------

# The totals of a demo report (report.json "totals", report.md "Totals"); "@HW" stands for a configuration.
DEMO_TOTALS_HELP: dict[str, str] = {
    "top1_source": "the images the top1_* figures are measured on (reference batch, or the test set "
    "with --data)",
    "top1_reference": "top-1 of the PyTorch model (fraction; null without labels)",
    "top1_emulator": "top-1 of the integer emulator at the bundle's accumulator width",
    "top1_agreement": "fraction of images where the emulator's top-1 class equals the PyTorch model's",
    "test_set_*": "with --data: images, top1_reference, top1_emulator, top1_agreement on the test split",
    "layers_exact": "layers whose every output code equals the reference",
    "layers_compared": "layers with reference codes to compare",
    "max_abs_err_lsb": "largest |emulator - reference| of any output code (LSB)",
    "within_1lsb": "fraction of all compared output codes within 1 LSB of the reference",
    "first_divergent_layer": "first layer (execution order) differing by more than 1 LSB",
    "isolated_max_abs_err_lsb": "max_abs_err_lsb with every layer run alone on the reference's input codes",
    "reference_batch_images": "images in the bundle's reference batch",
    "export_eval_images": "images of the evaluation set the export ran the PyTorch model on",
    "export_eval_top1_pytorch": "the PyTorch model's top-1 on that set, as recorded by the export",
    "bundle_acc_bits": "accumulator width the export proved safe (graph.yaml acc_bits)",
    "latency_us@HW": "latency per image on configuration HW (microseconds)",
    "cycles@HW": "cycles per image on HW",
    "utilization@HW": "PE utilization on HW (0..1)",
    "energy_nj@HW": "energy per image on HW (nJ): compute + buffers + DRAM + static, a first-order "
    "estimate (docs/energy.md)",
    "edp_nj_us@HW": "energy-delay product per image on HW: energy_nj x latency_us (nJ x us)",
    "overflowing_layers@HW": "MAC layers whose accumulator overflows at HW's width on the reference batch",
    "agreement@HW": "top-1 agreement with the PyTorch model at HW's accumulator width",
    "array_value_mismatches@HW": "values of the array model differing from the emulator's (0: equal)",
    "min_safe_acc_bits": "widest layer's worst-case accumulator need (never overflows)",
    "min_safe_acc_bits_observed": "widest layer's accumulator need on the reference batch",
    "min_acc_bits_swept": "narrowest swept width, for every accumulator at once, from which every wider one "
    "keeps top-1 agreement >= the threshold with the unmodified network",
    "acc_sweep_images": "images per point of the accumulator sweep",
    "acc_sweep": "the accumulator sweep: per width, agreement, overflowing layers, overflow rate, "
    "and whether "
    "it ran (false: the width holds every sum seen, so the point equals the unmodified network)",
    "weights": "weight codes in the conv and fc layers",
    "weight_bits_nominal": "sum over layers of weights x nominal width",
    "weight_bits_stored": "sum over layers of weights x stored width",
}


def _column_table(columns: Sequence[Column]) -> list[str]:
    return [
        "| column | unit | meaning |",
        "|---|---|---|",
        *[f"| `{c.name}` | {c.unit} | {c.help.replace('|', '/')} |" for c in columns],
    ]


def reports_readme() -> str:
    """The text of reports/README.md: every column (from hwsim.results' fields) and total of the reports."""
    lines = [
        "# Reports",
        "",
        "Every hwsim command that reports per layer writes a directory with `report.json` (meta, layers, "
        "totals, notes), `layers.csv` (the layers), `report.md`, a self-contained `report.html` and PNG "
        "plots. `hwsim demo` writes one such directory per model and an index (`index.md`, `index.html`, "
        "`index.json`) comparing them. `example/` is the output of `hwsim demo --out reports/example` "
        "on the bundled models (Markdown and PNGs only); other runs here are not kept in git.",
        "",
        "This page is generated from the fields of `hwsim.results` and from `hwsim.demo` (regenerate it "
        "with "
        "`.venv/bin/python -c \"from hwsim.demo import reports_readme; print(reports_readme(), end='')\" "
        "> reports/README.md`; a test checks that it is current).",
        "",
        "## Per-layer columns (report.json `layers`, layers.csv)",
        "",
        "Empty cells (null in JSON) mean not measured; a column empty in every row is left out; `inf` SQNR "
        "is null in JSON.",
        "",
        "### A MAC layer: `hwsim simulate` (`hwsim.results.MacLayerResult`)",
        "",
        "A row per conv2d/linear node (the array) and per maxpool (the vector unit), per inference of "
        "`--batch` images; the error columns are those of the requantizer the layer feeds.",
        "",
        *_column_table(MacLayerResult.columns()),
        "",
        "### A requantizer: `hwsim compare`, `hwsim demo` (`hwsim.results.RequantResult`)",
        "",
        "A row per requantizer (named as in the PyTorch model). In `hwsim demo` reports the cycle and "
        "energy columns are those of the MAC node(s) feeding it (`mac_nodes`) together, on the first "
        "hardware configuration, per image; a column ending in `@HW` is the same figure on hardware "
        "configuration `HW`; a maxpool gets a row of its own.",
        "",
        *_column_table(JoinedLayer.columns(["", "HW"])),
        "",
        "## Totals of a demo report (report.json `totals`)",
        "",
        "| total | meaning |",
        "|---|---|",
        *[f"| `{k}` | {v.replace('|', '/')} |" for k, v in DEMO_TOTALS_HELP.items()],
        "",
        "## index.json (hwsim demo)",
        "",
        "`models`: one entry per model with its name, title, method, bits, the manifest's PyTorch top-1 "
        "(`manifest_top1_pytorch`), the path of its report and every total above; the other keys record "
        "what ran (hardware, sweep widths and images, threshold, data) and the seconds it took, per step.",
        "",
    ]
    return "\n".join(lines)
