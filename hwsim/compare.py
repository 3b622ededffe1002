"""Per-layer comparison of the emulator against the PyTorch reference, and the whole network's top-1.

Place in the flow: bundle/ (with reference.npz) -> hwsim.emulator -> this module (one
``hwsim.results.RequantResult`` per requantizer) -> hwsim.report.
For every codes tensor written by a requantizer it measures, against ``reference.npz``, the
exact-match rate of the codes, the |difference| in LSBs (max, mean, fraction within 1 LSB) and the
SQNR of the emulator's dequantized values against the reference float values; it names the first
layer that diverges by more than 1 LSB; and it compares predictions on the reference batch and,
when a CIFAR-10 directory is given and the reference holds ``eval_predictions``, on the whole test set.

Two views of every layer: *propagated* (the emulator runs the whole network on its own codes, so
a 1-LSB difference upstream can grow downstream) and *isolated* (the layer, with the MAC nodes
feeding it, runs on the reference's own input codes: what this layer's integer arithmetic alone
does, :func:`isolated_codes`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.bundle import Bundle, Conv2dNode, LinearNode, RequantNode, quantize_images
from hwsim.emulator import Emulation, EmulatorConfig, LayerStats, emulate, run_nodes
from hwsim.errors import UserError
from hwsim.results import RequantResult

DIVERGENCE_LSB = 1


@dataclass(frozen=True)
class LayerError:
    """Emulator codes vs reference codes of one tensor (errors in LSBs = codes)."""

    elements: int
    mismatch_rate: float
    max_abs_err_lsb: int
    mean_abs_err_lsb: float
    sqnr_db: float  # inf when the dequantized values are identical
    elements_within_1lsb: int  # elements with |error| <= 1 LSB

    @property
    def exact_match_rate(self) -> float:
        return 1.0 - self.mismatch_rate

    @property
    def within_1lsb(self) -> float:
        """Fraction of elements with ``|error| <= 1`` LSB (1.0 for an empty tensor)."""
        return self.elements_within_1lsb / self.elements if self.elements else 1.0


def sqnr_db(reference: np.ndarray, emulated: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (emu - ref)^2)`` (float64); inf: no error, -inf: no signal."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((np.asarray(emulated, dtype=np.float64) - ref) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def layer_error(
    emulated_codes: np.ndarray, reference_codes: np.ndarray, scale: float, reference_float: np.ndarray | None
) -> LayerError:
    """Compare codes; SQNR of ``codes * scale`` (float32, as the reference) against the reference floats."""
    emu = np.asarray(emulated_codes, dtype=np.int64)
    ref = np.asarray(reference_codes, dtype=np.int64)
    diff = np.abs(emu - ref)
    n = int(diff.size)
    ref_float = reference_float if reference_float is not None else ref.astype(np.float32) * np.float32(scale)
    emu_float = emu.astype(np.float32) * np.float32(scale)
    return LayerError(
        elements=n,
        mismatch_rate=float(np.count_nonzero(diff)) / n if n else 0.0,
        max_abs_err_lsb=int(diff.max()) if n else 0,
        mean_abs_err_lsb=float(diff.mean()) if n else 0.0,
        sqnr_db=sqnr_db(ref_float, emu_float),
        elements_within_1lsb=int(np.count_nonzero(diff <= 1)),
    )


def top1(predictions: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy over the labelled entries (label >= 0); ``None`` when there are none."""
    known = labels >= 0
    if not np.any(known):
        return None
    return float(np.mean(predictions[known] == labels[known]))


def _mac_inputs(bundle: Bundle, node: RequantNode) -> list[Conv2dNode | LinearNode]:
    macs = []
    for item in node.inputs:
        producer = bundle.producer(item.tensor)
        if isinstance(producer, (Conv2dNode, LinearNode)):
            macs.append(producer)
    return macs


def isolated_codes(bundle: Bundle, config: EmulatorConfig | None = None) -> dict[str, np.ndarray | None]:
    """Every requant node's codes when it, and the MAC nodes feeding it, run on the reference's own codes.

    The inputs are reference.npz's input codes and ``codes/<tensor>``; the arithmetic is the
    emulator's own (hwsim.emulator.run_nodes), so a difference from the reference cannot come from
    an upstream layer. ``None`` for a node whose input codes the reference does not hold.
    """
    ref = bundle.reference
    assert ref is not None
    known = {bundle.meta.input_tensor: ref.input_codes, **ref.codes}
    out: dict[str, np.ndarray | None] = {}
    for node in bundle.nodes:
        if not isinstance(node, RequantNode):
            continue
        macs = _mac_inputs(bundle, node)
        written = {m.output for m in macs}
        reads = [m.input for m in macs] + [t for t in node.reads if t not in written]
        if any(t not in known for t in reads):
            out[node.output] = None
            continue
        names = [m.name for m in macs] + [node.name]
        out[node.output] = run_nodes(bundle, names, {t: known[t] for t in reads}, config)[node.output]
    return out


def requant_results(
    bundle: Bundle,
    emulation: Emulation,
    errors: Mapping[str, LayerError | None],
    isolated: Mapping[str, LayerError | None] | None = None,
) -> list[RequantResult]:
    """One result per requantizer: its MAC node(s)' accumulator statistics and its errors.

    ``emulation`` gives the accumulator statistics (at its width), ``errors`` the propagated errors
    (the emulator on its own codes) and ``isolated`` those of the node run on the reference's own
    input codes (:func:`isolated_codes`), by output tensor.
    """
    isolated = isolated or {}
    rows: list[RequantResult] = []
    for node in bundle.nodes:
        if not isinstance(node, RequantNode):
            continue
        macs = _mac_inputs(bundle, node)
        stats: list[LayerStats] = [emulation.layers[m.name] for m in macs]
        has_residual = any(bundle.tensors[i.tensor].kind == "codes" for i in node.inputs)
        kind = "+".join(m.op for m in macs) or "requant"
        if has_residual:
            kind += "+add"
        if node.function == "sign":
            kind += "+sign"
        out_fmt = bundle.tensors[node.output].fmt
        first = macs[0] if macs else None
        in_fmt = bundle.tensors[first.input].fmt if first is not None else None
        observed = [s.min_safe_acc_bits_observed for s in stats if s.min_safe_acc_bits_observed is not None]
        err = errors.get(node.output)
        iso = isolated.get(node.output)
        overflow = sum(s.overflow_count for s in stats)
        acc_elements = sum(s.elements for s in stats)
        rows.append(
            RequantResult(
                name=node.name,
                type=kind,
                macs=sum(s.macs for s in stats),
                w_bits=first.weight_format.nominal_bits if first is not None else None,
                a_bits=in_fmt.nominal_bits if in_fmt is not None else None,
                acc_bits=emulation.acc_bits,
                overflow_count=overflow,
                peak_acc_abs=max((s.peak_acc_abs for s in stats), default=0),
                min_safe_acc_bits=max((s.min_safe_acc_bits_worst for s in stats), default=None),
                mismatch_rate=err.mismatch_rate if err else None,
                max_abs_err_lsb=err.max_abs_err_lsb if err else None,
                sqnr_db=err.sqnr_db if err else None,
                mac_nodes=tuple(m.name for m in macs),
                w_bits_stored=first.weight_format.bits if first is not None else None,
                out_bits=out_fmt.bits if out_fmt is not None else None,
                elements=err.elements if err else None,
                acc_elements=acc_elements,
                min_safe_acc_bits_observed=max(observed) if observed else None,
                exact_match_rate=err.exact_match_rate if err else None,
                mean_abs_err_lsb=err.mean_abs_err_lsb if err else None,
                within_1lsb=err.within_1lsb if err else None,
                isolated_mismatch_rate=iso.mismatch_rate if iso else None,
                isolated_max_abs_err_lsb=iso.max_abs_err_lsb if iso else None,
                isolated_within_1lsb=iso.within_1lsb if iso else None,
                overflow_rate=overflow / acc_elements if acc_elements else 0.0,
            )
        )
    return rows


def first_divergent_layer(
    rows: Sequence[RequantResult], threshold: int = DIVERGENCE_LSB, isolated: bool = False
) -> str | None:
    """The first layer (execution order) whose codes differ from the reference by > ``threshold`` LSB.

    ``isolated``: by ``isolated_max_abs_err_lsb`` instead of the propagated ``max_abs_err_lsb``.
    """
    for row in rows:
        err = row.isolated_max_abs_err_lsb if isolated else row.max_abs_err_lsb
        if err is not None and err > threshold:
            return row.name
    return None


def _overall_within_1lsb(errors: dict[str, LayerError | None]) -> float | None:
    """Fraction of all compared elements (every layer together) with ``|error| <= 1`` LSB."""
    known = [e for e in errors.values() if e is not None]
    total = sum(e.elements for e in known)
    return sum(e.elements_within_1lsb for e in known) / total if total else None


@dataclass
class Comparison:
    """The outcome of :func:`compare_bundle`: a result per requantizer, the totals and the emulation.

    ``errors``/``isolated``: each requantizer's errors by output tensor (None: not compared), to
    rebuild the results at another accumulator width (:func:`requant_results`).
    """

    title: str
    meta: dict[str, Any]
    layers: list[RequantResult]
    totals: dict[str, Any]
    notes: list[str]
    emulation: Emulation
    errors: dict[str, LayerError | None]
    isolated: dict[str, LayerError | None]


def _reference_predictions(bundle: Bundle) -> np.ndarray:
    ref = bundle.reference
    assert ref is not None
    out = bundle.meta.output
    if out in ref.codes:
        return np.argmax(ref.codes[out], axis=1)
    if out in ref.floats:
        return np.argmax(ref.floats[out], axis=1)
    raise UserError(
        f"{bundle.path}/reference.npz: neither codes/{out} nor float/{out} is present; expected the "
        "logits of the reference batch; re-export the bundle with its reference"
    )


def evaluate_test_set(
    bundle: Bundle, data_dir: Path, config: EmulatorConfig, batch_size: int = 256, progress: bool = False
) -> dict[str, Any]:
    """Emulate the whole CIFAR-10 test split; top-1 vs labels and agreement with ``eval_predictions``."""
    from hwsim.cifar10 import load_cifar10

    ref = bundle.reference
    assert ref is not None and ref.eval_predictions is not None and ref.eval_labels is not None
    images, labels = load_cifar10(data_dir, "test")
    if labels.shape != ref.eval_labels.shape:
        raise UserError(
            f"{data_dir}: the test split has {labels.shape[0]} images but reference.npz's "
            f"eval_predictions cover {ref.eval_labels.shape[0]}; expected the same test set the "
            "export evaluated; point --data at that directory"
        )
    if not np.array_equal(labels, ref.eval_labels):
        raise UserError(
            f"{data_dir}: the test labels differ from reference.npz's eval_labels; expected the "
            "same test set, in the same order, as the export evaluated; point --data at it"
        )
    run = emulate(
        bundle, quantize_images(images, bundle), config, keep=False, batch_size=batch_size, progress=progress
    )
    return {
        "images": int(labels.shape[0]),
        "top1_reference": top1(ref.eval_predictions, labels),
        "top1_emulator": top1(run.predictions, labels),
        "top1_agreement": float(np.mean(run.predictions == ref.eval_predictions)) if labels.size else None,
    }


def compare_bundle(
    bundle: Bundle,
    config: EmulatorConfig | None = None,
    data_dir: Path | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> Comparison:
    """Emulate the reference batch (and the test set when ``data_dir`` is given) and build the report."""
    config = config or EmulatorConfig()
    ref = bundle.reference
    if ref is None:
        raise UserError(
            f"{bundle.path}: no reference.npz; expected one for hwsim compare (qat export writes it); "
            "re-export the bundle with a reference batch, or use hwsim emulate"
        )
    run = emulate(bundle, ref.input_codes, config, keep=True, batch_size=batch_size, progress=progress)
    alone = isolated_codes(bundle, config)
    errors: dict[str, LayerError | None] = {}
    isolated: dict[str, LayerError | None] = {}
    missing: list[str] = []
    for node in bundle.nodes:
        if isinstance(node, RequantNode):
            spec = bundle.tensors[node.output]
            if node.output in ref.codes:
                errors[node.output] = layer_error(
                    run.tensors[node.output],
                    ref.codes[node.output],
                    float(spec.scale),
                    ref.floats.get(node.output),
                )
                codes = alone[node.output]
                isolated[node.output] = (
                    None
                    if codes is None
                    else layer_error(
                        codes, ref.codes[node.output], float(spec.scale), ref.floats.get(node.output)
                    )
                )
            else:
                errors[node.output] = isolated[node.output] = None
                missing.append(node.output)
    rows = requant_results(bundle, run, errors, isolated)
    ref_pred = _reference_predictions(bundle)
    batch = {
        "images": ref.images,
        "top1_reference": top1(ref_pred, ref.labels),
        "top1_emulator": top1(run.predictions, ref.labels),
        "top1_agreement": float(np.mean(run.predictions == ref_pred)),
    }
    totals: dict[str, Any] = {
        "macs_per_image": bundle.total_macs,
        "overflow_count": sum(s.overflow_count for s in run.layers.values()),
        "layers_exact": sum(1 for r in rows if r.mismatch_rate == 0.0),
        "layers_compared": sum(1 for r in rows if r.mismatch_rate is not None),
        "first_divergent_layer": first_divergent_layer(rows),
        "max_abs_err_lsb": max(
            (r.max_abs_err_lsb for r in rows if r.max_abs_err_lsb is not None), default=None
        ),
        "within_1lsb": _overall_within_1lsb(errors),
        "isolated_within_1lsb": _overall_within_1lsb(isolated),
        "isolated_max_abs_err_lsb": max(
            (r.isolated_max_abs_err_lsb for r in rows if r.isolated_max_abs_err_lsb is not None),
            default=None,
        ),
        "first_isolated_divergent_layer": first_divergent_layer(rows, isolated=True),
        "reference_batch_images": batch["images"],
        "reference_batch_top1_reference": batch["top1_reference"],
        "reference_batch_top1_emulator": batch["top1_emulator"],
        "reference_batch_top1_agreement": batch["top1_agreement"],
    }
    source = f"reference batch ({batch['images']} images)"
    headline = batch
    notes: list[str] = []
    if data_dir is not None:
        if ref.eval_predictions is None:
            notes.append(
                "--data was given but reference.npz has no eval_predictions: the test set was not run"
            )
        else:
            test = evaluate_test_set(bundle, data_dir, config, batch_size, progress)
            totals.update({f"test_set_{k}": v for k, v in test.items()})
            source, headline = f"test set ({test['images']} images)", test
    totals["top1_source"] = source
    totals["top1_reference"] = headline["top1_reference"]
    totals["top1_emulator"] = headline["top1_emulator"]
    totals["top1_agreement"] = headline["top1_agreement"]
    if missing:
        notes.append(f"reference.npz holds no codes for {', '.join(missing)}: not compared")
    notes.append(
        f"first layer diverging by more than {DIVERGENCE_LSB} LSB: "
        f"{totals['first_divergent_layer'] or 'none'} (propagated), "
        f"{totals['first_isolated_divergent_layer'] or 'none'} (isolated)"
    )
    notes.append(
        "propagated errors (mismatch_rate, max_abs_err_lsb, within_1lsb) come from the emulator running "
        "the whole network on its own codes, so a 1-LSB difference upstream can grow downstream; "
        "isolated errors (isolated_*) come from running each layer (its requantizer and the MAC nodes "
        "feeding it) on the reference's own input codes, so they measure that layer's integer "
        "arithmetic alone"
    )
    meta = {
        "bundle": str(bundle.path),
        "model": bundle.meta.model,
        "acc_bits": run.acc_bits,
        "bundle_acc_bits": bundle.meta.acc_bits,
        "overflow": config.overflow,
        "reference_device": ref.device,
    }
    title = f"hwsim compare: {bundle.meta.model or Path(str(bundle.path)).name}"
    return Comparison(title, meta, rows, totals, notes, run, errors, isolated)
