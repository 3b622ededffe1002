"""Bit-width sensitivity: re-quantize one layer at a time and measure what the network's output loses.

Place in the flow: ``hwsim sweep`` calls :func:`sweep_bundle`; it rewrites the bundle in memory
(never on disk) and runs the emulator (``hwsim.emulator``) on the rewritten graph, so every
number comes from the same integer arithmetic as ``hwsim emulate``. Plots and tables come from
``hwsim.plots`` and ``hwsim.report``.

What "re-quantize layer L at ``b`` bits" means (everything stays in integers, in the layer's
original units, so the requantizers after L need no change):

* ``w_bits``: per output channel ``c``, drop ``d_c`` low bits of the weight codes with round half
  up and clamp to the symmetric ``b``-bit range: ``w' = clamp(round_shift(w, d_c), ±(2^(b-1)-1)) << d_c``,
  where ``d_c`` is the smallest shift that fits ``max|w_c|`` into ``b`` bits (0 leaves it unchanged).
* ``a_bits``: the same on L's input codes, per tensor, with ``d = bits - b`` of the input's
  format; only L sees the narrowed input (two requantizers inserted before L:
  ``clamp(round_shift(x, d), b bits)``, then ``<< d``).
* ``acc_bits``: L's accumulator wraps to ``b`` bits (two requantizers after L compute
  ``x - 2^b * round_shift(x, b)``, the two's-complement wrap), the others keep the bundle's
  width. The overflow rate is the fraction of L's exact sums outside ``b`` bits. Models ``wrap``.

Metrics per (layer, width), on the same images: output SQNR of the logits codes against the
unmodified network's, top-1 agreement with the reference predictions (the PyTorch model's when
the bundle has a reference, else the unmodified emulator's) and top-1 accuracy when labels exist.
Runs start from the latest single-tensor cut of the graph before L (a block input), with that
tensor taken from the unmodified run, so only the part of the network that can change is re-run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.fixed import round_shift
from hwsim.ir import (
    Bundle,
    CodeFormat,
    Conv2dNode,
    LinearNode,
    MacNode,
    Node,
    RequantInput,
    RequantNode,
    TensorSpec,
)

WHATS: tuple[str, ...] = ("w_bits", "a_bits", "acc_bits")
DEFAULT_RANGES = {"w_bits": (2, 8), "a_bits": (2, 8), "acc_bits": (8, 24)}
CHUNK = 32  # images per emulation call while collecting the unmodified run's tensors


@dataclass
class SweepPoint:
    """One layer re-quantized at one width."""

    layer: str
    bits: int
    changed: bool
    sqnr_db: float
    agreement: float
    top1: float | None
    overflow_rate: float | None = None


@dataclass
class SweepResult:
    what: str
    widths: list[int]
    layers: list[str]
    points: list[SweepPoint]
    threshold: float
    baseline: dict[str, Any] = field(default_factory=dict)

    def grid(self, metric: str) -> np.ndarray:
        """``[layer, width]`` values of a metric: agreement, sqnr_db, top1 or overflow_rate."""
        out = np.full((len(self.layers), len(self.widths)), np.nan)
        li = {name: i for i, name in enumerate(self.layers)}
        wi = {b: j for j, b in enumerate(self.widths)}
        for p in self.points:
            value = getattr(p, metric)
            out[li[p.layer], wi[p.bits]] = np.nan if value is None else value
        return out

    def min_bits(self) -> dict[str, int | None]:
        """Per layer, the smallest width whose agreement (and every wider one's) is >= the threshold."""
        grid = self.grid("agreement")
        result: dict[str, int | None] = {}
        for i, name in enumerate(self.layers):
            best = None
            for j in range(len(self.widths) - 1, -1, -1):
                if grid[i, j] >= self.threshold:
                    best = self.widths[j]
                else:
                    break
            result[name] = best
        return result

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": p.layer,
                "what": self.what,
                "bits": p.bits,
                "changed": p.changed,
                "sqnr_db": p.sqnr_db,
                "agreement": p.agreement,
                "top1": p.top1,
                "overflow_rate": p.overflow_rate,
            }
            for p in self.points
        ]


def parse_range(text: str) -> list[int]:
    """``"2..8"`` -> ``[2, ..., 8]``; ``"4,6,8"`` -> ``[4, 6, 8]``."""
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split(".."))
            widths = list(range(lo, hi + 1))
        else:
            widths = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--range {text!r}: expected LO..HI (e.g. 2..8) or a list (e.g. 4,6,8)") from None
    if not widths or min(widths) < 1 or max(widths) > 62:
        raise UserError(f"--range {text!r}: widths must lie in 1..62 and the range must not be empty")
    return sorted(set(widths))


# ----------------------------------------------------------------------------------------------
# Rewrites (in memory)
# ----------------------------------------------------------------------------------------------


def _replace_node(bundle: Bundle, name: str, new: Node) -> Bundle:
    return replace(bundle, nodes=tuple(new if n.name == name else n for n in bundle.nodes))


def narrow_weights(weight: np.ndarray, bits: int) -> np.ndarray:
    """Per output channel: drop low bits (round half up) until ``max|w|`` fits ``bits`` bits, symmetric."""
    w = np.asarray(weight, dtype=np.int64)
    flat = w.reshape(w.shape[0], -1)
    if bits < 2:
        raise UserError(f"w_bits={bits}: a symmetric signed weight needs at least 2 bits")
    qmax = (1 << (bits - 1)) - 1
    peak = np.abs(flat).max(axis=1)
    shift = np.zeros(w.shape[0], dtype=np.int64)
    while True:  # the smallest per-channel shift after which the rounded peak fits
        over = ((peak + ((np.int64(1) << shift) >> 1)) >> shift) > qmax
        if not over.any():
            break
        shift += over
    d = shift.reshape(-1, *([1] * (w.ndim - 1)))
    q = np.clip(round_shift(w, np.broadcast_to(d, w.shape)), -qmax, qmax)
    return np.left_shift(q, d)


def _channels(spec: TensorSpec) -> int:
    return int(spec.shape[0])


def _requant(name: str, inputs: list[tuple[str, np.ndarray]], shift: np.ndarray, out: str) -> RequantNode:
    return RequantNode(
        name=name,
        inputs=tuple(
            RequantInput(t, m.astype(np.int64), f"{name}.m{i}", None, None) for i, (t, m) in enumerate(inputs)
        ),
        shift=shift.astype(np.int64),
        shift_key=f"{name}.shift",
        function="clamp",
        output=out,
    )


def narrow_layer_input(bundle: Bundle, layer: str, bits: int) -> Bundle | None:
    """Only ``layer`` sees its input with ``bits`` bits (``None`` when that changes nothing)."""
    node = bundle.node(layer)
    spec = bundle.tensors[node.input]
    fmt = spec.fmt
    assert fmt is not None
    drop = fmt.bits - bits
    if drop <= 0:
        return None
    c = _channels(spec)
    narrow_fmt = CodeFormat(bits, fmt.signed, lattice="narrow" if fmt.signed and bits >= 2 else "full")
    low, back = f"{node.input}@{layer}.a{bits}", f"{node.input}@{layer}.a{bits}.up"
    tensors = dict(bundle.tensors)
    tensors[low] = TensorSpec(low, "codes", spec.shape, narrow_fmt, (spec.scale or 1.0) * 2**drop)
    tensors[back] = TensorSpec(back, "codes", spec.shape, fmt, spec.scale)
    down = _requant(f"{low}.q", [(node.input, np.ones(c))], np.full(c, drop), low)
    up = _requant(f"{back}.q", [(low, np.full(c, 1 << drop))], np.zeros(c), back)
    nodes: list[Node] = []
    for n in bundle.nodes:
        if n.name == layer:
            nodes += [down, up, replace(n, input=back)]
        else:
            nodes.append(n)
    return replace(bundle, tensors=tensors, nodes=tuple(nodes))


def wrap_layer_acc(bundle: Bundle, layer: str, bits: int) -> Bundle:
    """``layer``'s accumulator wraps to ``bits`` bits: ``x - 2^bits * round_shift(x, bits)``."""
    node = bundle.node(layer)
    spec = bundle.tensors[node.output]
    c = _channels(spec)
    carry, wrapped = f"{node.output}@acc{bits}.carry", f"{node.output}@acc{bits}"
    tensors = dict(bundle.tensors)
    tensors[carry] = TensorSpec(carry, "codes", spec.shape, CodeFormat(64, True), 1.0)
    tensors[wrapped] = TensorSpec(wrapped, "codes", spec.shape, CodeFormat(bits, True), 1.0)
    high = _requant(f"{carry}.q", [(node.output, np.ones(c))], np.full(c, bits), carry)
    low = _requant(
        f"{wrapped}.q", [(node.output, np.ones(c)), (carry, np.full(c, -(1 << bits)))], np.zeros(c), wrapped
    )
    nodes: list[Node] = []
    for n in bundle.nodes:
        if isinstance(n, RequantNode) and node.output in n.reads:
            n = replace(
                n,
                inputs=tuple(replace(i, tensor=wrapped) if i.tensor == node.output else i for i in n.inputs),
            )
        nodes.append(n)
        if n.name == layer:
            nodes += [high, low]
    return replace(bundle, tensors=tensors, nodes=tuple(nodes))


def cut_before(bundle: Bundle, index: int) -> int:
    """The largest ``j <= index`` whose nodes ``j..`` read one earlier tensor only, a ``[C, H, W]`` map."""
    produced_at = {n.output: i for i, n in enumerate(bundle.nodes)}
    produced_at[bundle.meta.input_tensor] = -1
    for j in range(index, -1, -1):
        live = {t for n in bundle.nodes[j:] for t in n.reads if produced_at.get(t, -1) < j}
        if len(live) == 1:
            (t,) = live
            spec = bundle.tensors[t]
            if spec.kind == "codes" and len(spec.shape) == 3:
                return j
    return 0


def _sub_bundle(bundle: Bundle, start: int, input_tensor: str) -> Bundle:
    if start == 0:
        return bundle
    return replace(
        bundle,
        nodes=bundle.nodes[start:],
        meta=replace(bundle.meta, input_tensor=input_tensor),
        reference=None,
    )


def _cut_tensor(bundle: Bundle, start: int) -> str:
    if start == 0:
        return bundle.meta.input_tensor
    produced_at = {n.output: i for i, n in enumerate(bundle.nodes)}
    (t,) = {t for n in bundle.nodes[start:] for t in n.reads if produced_at.get(t, -1) < start}
    return t


# ----------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (test - ref)^2)``; ``inf`` when equal."""
    ref = reference.astype(np.float64)
    noise = float(np.sum((test.astype(np.float64) - ref) ** 2))
    if noise == 0:
        return math.inf
    signal = float(np.sum(ref**2))
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def sweep_bundle(
    bundle: Bundle,
    what: str,
    widths: list[int],
    input_codes: np.ndarray,
    labels: np.ndarray | None = None,
    reference_predictions: np.ndarray | None = None,
    threshold: float = 0.99,
    layers: list[str] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Re-quantize each MAC layer alone at each width in ``widths``; see the module docstring."""
    if what not in WHATS:
        raise UserError(f"--what {what!r} is not one of {', '.join(WHATS)}")
    macs: list[MacNode] = list(bundle.mac_nodes)
    names = [n.name for n in macs]
    if layers:
        unknown = [x for x in layers if x not in names]
        if unknown:
            raise UserError(f"--layers: no MAC layer named {unknown[0]!r}; layers: {', '.join(names)}")
        macs = [n for n in macs if n.name in layers]
    if what == "acc_bits" and max(widths) > 30:
        raise UserError("acc_bits sweep: widths above 30 exceed the 32-bit multipliers of the wrap rewrite")
    index = {n.name: i for i, n in enumerate(bundle.nodes)}
    starts = {n.name: cut_before(bundle, index[n.name]) for n in macs}
    keep_tensors = {_cut_tensor(bundle, s) for s in starts.values()}
    cfg = EmulatorConfig(acc_bits=None, overflow="wrap")

    # The unmodified run: logits, the cut tensors, and (acc_bits) every layer's exact sums' spread.
    images = input_codes.shape[0]
    logits_parts, kept = [], {t: [] for t in keep_tensors}
    out_of_range = {n.name: np.zeros(len(widths), dtype=np.int64) for n in macs}
    elements = dict.fromkeys(out_of_range, 0)
    for start in range(0, images, CHUNK):
        run = emulate(bundle, input_codes[start : start + CHUNK], cfg, keep=True)
        logits_parts.append(run.logits)
        for t in keep_tensors:
            kept[t].append(run.tensors[t])
        if what == "acc_bits":
            for n in macs:
                acc = run.tensors[n.output]
                elements[n.name] += acc.size
                for j, b in enumerate(widths):
                    out_of_range[n.name][j] += int(
                        np.count_nonzero((acc < -(1 << (b - 1))) | (acc >= 1 << (b - 1)))
                    )
    base_logits = np.concatenate(logits_parts)
    cut_values = {t: np.concatenate(v) for t, v in kept.items()}
    base_pred = np.argmax(base_logits, axis=1)
    ref_pred = base_pred if reference_predictions is None else np.asarray(reference_predictions)[:images]
    has_labels = labels is not None and bool(np.all(np.asarray(labels)[:images] >= 0))

    def metrics(logits: np.ndarray) -> tuple[float, float, float | None]:
        pred = np.argmax(logits, axis=1)
        top1 = float(np.mean(pred == np.asarray(labels)[:images])) if has_labels else None
        return sqnr_db(base_logits, logits), float(np.mean(pred == ref_pred)), top1

    base_sqnr, base_agree, base_top1 = metrics(base_logits)
    result = SweepResult(
        what,
        list(widths),
        [n.name for n in macs],
        [],
        threshold,
        {"agreement": base_agree, "top1": base_top1, "images": images},
    )
    jobs = [(n, b) for n in macs for b in widths]
    for node, bits in tqdm(jobs, disable=not progress, desc=f"sweep {what}", unit="run"):
        variant = _variant(bundle, node, what, bits)
        rate = None
        if what == "acc_bits":
            total = elements[node.name]
            rate = float(out_of_range[node.name][widths.index(bits)] / total) if total else 0.0
        if variant is None:
            result.points.append(SweepPoint(node.name, bits, False, base_sqnr, base_agree, base_top1, rate))
            continue
        cut = _cut_tensor(bundle, starts[node.name])
        sub = _sub_bundle(variant, _index_of_start(variant, bundle, starts[node.name]), cut)
        codes = cut_values[cut]
        logits = emulate(sub, codes, cfg, keep=False).logits
        s, agree, top1 = metrics(logits)
        result.points.append(SweepPoint(node.name, bits, True, s, agree, top1, rate))
    return result


def _index_of_start(variant: Bundle, original: Bundle, start: int) -> int:
    """Where the original graph's node ``start`` begins in the rewritten one (rewrites only insert nodes)."""
    if start == 0:
        return 0
    previous = original.nodes[start - 1].name
    return [n.name for n in variant.nodes].index(previous) + 1


def _variant(bundle: Bundle, node: MacNode, what: str, bits: int) -> Bundle | None:
    if what == "w_bits":
        new_w = narrow_weights(node.weight, bits)
        if np.array_equal(new_w, node.weight):
            return None
        assert isinstance(node, (Conv2dNode, LinearNode))
        return _replace_node(bundle, node.name, replace(node, weight=new_w))
    if what == "a_bits":
        return narrow_layer_input(bundle, node.name, bits)
    if bits >= bundle.meta.acc_bits:
        return None
    return wrap_layer_acc(bundle, node.name, bits)
