"""Bit-width sensitivity: re-quantize one layer at a time and measure what the network's output loses.

Place in the flow: ``hwsim sweep`` calls :func:`sweep_bundle`; it rewrites the bundle in memory
(never on disk) or narrows one layer's accumulator through the emulator's configuration, and
runs the emulator (``hwsim.emulator``), so every number comes from the same integer arithmetic
as ``hwsim emulate``. Plots and tables come from ``hwsim.plots`` and ``hwsim.report``.

What "re-quantize layer L at ``b`` bits" means (everything stays in integers, in the layer's
original units, so the requantizers after L need no change):

* ``w_bits``: per output channel ``c``, drop ``d_c`` low bits of the weight codes, rounding half
  away from zero, and clamp to the symmetric ``b``-bit range:
  ``w' = clamp(round_shift(w, d_c, half_away), ±(2^(b-1)-1)) << d_c``, where ``d_c`` is the
  smallest shift that fits ``max|w_c|`` into ``b`` bits (0 leaves it unchanged).
* ``a_bits``: the same on L's input codes, per tensor, with ``d = bits - b`` of the input's
  format; only L sees the narrowed input (two requantizers inserted before L:
  ``clamp(round_shift(x, d), b bits)``, then ``<< d``), rounding by the mode of the requantizer
  that produced the input (the bundle's default for the network input).
* ``act_bits``: an activation tensor ``T`` (the network input or a requantizer's output that a MAC
  layer reads, directly or through pooling: :func:`activation_tensors`) narrowed the same way for
  every reader, residual adds and pools included: what a QAT config's activation width sets. The
  rows are tensors, not layers.
* ``acc_bits``: L's accumulator is ``b`` bits wide and narrows by the sweep's overflow mode
  (``wrap`` or ``saturate``; ``EmulatorConfig.acc_bits_per_layer``); the others keep the
  bundle's width. The overflow rate is the fraction of L's outputs that narrowing changed (for
  ``wrap``: the exact sums outside ``b`` bits).

Metrics per (layer, width), on the same images: output SQNR of the logits codes against the
unmodified network's, top-1 agreement with the reference predictions (the PyTorch model's when
the bundle has a reference, else the unmodified emulator's) and top-1 accuracy when labels exist.

How it stays fast: one unmodified run keeps every tensor that some layer's re-run needs; each
point then runs only from its layer on (``hwsim.emulator.emulate_from``, given those tensors),
keeping only the logits. Points are independent tasks of ``hwsim.execute`` (a local pool, or a
Dask cluster); the results are the same for any backend and number of workers (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hwsim.bundle import (
    AvgPoolSumNode,
    Bundle,
    CodeFormat,
    Conv2dNode,
    LinearNode,
    MaxPoolNode,
    Node,
    RequantInput,
    RequantNode,
    TensorSpec,
    node_macs,
)
from hwsim.emulator import EmulatorConfig, available_cores, emulate, emulate_from, live_tensors
from hwsim.errors import UserError
from hwsim.execute import ExecutorConfig, Recipe, run_tasks
from hwsim.fixed import MAX_SHIFT, WIDTH_RANGE, round_shift
from hwsim.journal import Journal, digest

WHATS: tuple[str, ...] = ("w_bits", "a_bits", "act_bits", "acc_bits")
DEFAULT_RANGES = {"w_bits": (2, 8), "a_bits": (2, 8), "act_bits": (2, 8), "acc_bits": (8, 24)}
# The widths a sweep can set: a symmetric signed weight needs 2 bits; codes and shifts stay in int64
# (hwsim.fixed.MAX_SHIFT); an accumulator is any width the emulator runs (hwsim.fixed.WIDTH_RANGE).
WIDTH_LIMITS: dict[str, tuple[int, int]] = {
    "w_bits": (2, MAX_SHIFT),
    "a_bits": (1, MAX_SHIFT),
    "act_bits": (1, MAX_SHIFT),
    "acc_bits": WIDTH_RANGE,
}
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


def parse_range(text: str, what: str = "acc_bits") -> list[int]:
    """``"2..8"`` -> ``[2, ..., 8]``; ``"4,6,8"`` -> ``[4, 6, 8]``; widths within ``WIDTH_LIMITS[what]``.

    The bounds are checked before the list is built, so ``1..10000000000`` costs nothing.
    """
    lo_ok, hi_ok = WIDTH_LIMITS[what]
    legal = f"{what} widths must lie in {lo_ok}..{hi_ok}"
    shown = text if len(text) <= 40 else text[:37] + "..."
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split(".."))
            if not lo_ok <= lo <= hi <= hi_ok:
                raise UserError(f"--range {shown!r}: {legal}, with LO <= HI (e.g. {lo_ok}..{hi_ok})")
            widths = list(range(lo, hi + 1))
        else:
            parts = text.split(",")
            if len(parts) > hi_ok - lo_ok + 1:
                raise UserError(f"--range {shown!r}: {len(parts)} widths; {legal}, each at most once")
            widths = [int(v) for v in parts]
    except ValueError:
        raise UserError(f"--range {shown!r}: expected LO..HI (e.g. 2..8) or a list (e.g. 4,6,8)") from None
    if not widths or min(widths) < lo_ok or max(widths) > hi_ok:
        raise UserError(f"--range {shown!r}: {legal} and the range must not be empty")
    return sorted(set(widths))


# ----------------------------------------------------------------------------------------------
# Rewrites (in memory)
# ----------------------------------------------------------------------------------------------


def _replace_node(bundle: Bundle, name: str, new: Node) -> Bundle:
    return replace(bundle, nodes=tuple(new if n.name == name else n for n in bundle.nodes))


def narrow_weights(weight: np.ndarray, bits: int, rounding: str = "half_away") -> np.ndarray:
    """Per output channel: drop the fewest low bits so that ``max|w|`` fits ``bits`` bits, symmetric.

    Rounded half away from zero by default (magnitudes half up, the sign reapplied), so that a
    lattice whose codes all tie at the dropped bit (DoReFa's odd codes, shifted by one) is not
    biased towards +inf; a peak that rounds up past ``2**(bits-1) - 1`` is clamped there.
    The result is the narrowed codes shifted back to the original scale (multipliers unchanged).
    """
    w = np.asarray(weight, dtype=np.int64)
    flat = w.reshape(w.shape[0], -1)
    if bits < 2:
        raise UserError(f"w_bits={bits}: a symmetric signed weight needs at least 2 bits")
    qmax = (1 << (bits - 1)) - 1
    peak = np.abs(flat).max(axis=1)
    shift = np.zeros(w.shape[0], dtype=np.int64)
    while True:  # the smallest per-channel shift after which the peak fits (then rounded, clamped)
        over = (peak >> shift) > qmax
        if not over.any():
            break
        shift += over
    d = np.broadcast_to(shift.reshape(-1, *([1] * (w.ndim - 1))), w.shape)
    return np.left_shift(np.clip(round_shift(w, d, rounding), -qmax, qmax), d)


def _channels(spec: TensorSpec) -> int:
    return int(spec.shape[0])


def _requant(
    name: str, inputs: list[tuple[str, np.ndarray]], shift: np.ndarray, out: str, rounding: str
) -> RequantNode:
    return RequantNode(
        name=name,
        inputs=tuple(
            RequantInput(t, m.astype(np.int64), f"{name}.m{i}", None, None) for i, (t, m) in enumerate(inputs)
        ),
        shift=shift.astype(np.int64),
        shift_key=f"{name}.shift",
        function="clamp",
        output=out,
        rounding=rounding,
    )


def _narrowing(bundle: Bundle, tensor: str, bits: int, tag: str) -> tuple[list[Node], str, Bundle] | None:
    """The two requantizers that narrow ``tensor`` to ``bits`` bits and shift it back
    (``clamp(round_shift(x, d), b bits)``, then ``<< d``), the tensor they write, and ``bundle`` with
    the two new tensors declared; ``None`` when ``tensor`` has ``bits`` bits or fewer."""
    spec = bundle.tensors[tensor]
    fmt = spec.fmt
    assert fmt is not None
    drop = fmt.bits - bits
    if drop <= 0:
        return None
    c = _channels(spec)
    narrow_fmt = CodeFormat(bits, fmt.signed, lattice="narrow" if fmt.signed and bits >= 2 else "full")
    low, back = f"{tensor}@{tag}", f"{tensor}@{tag}.up"
    tensors = dict(bundle.tensors)
    tensors[low] = TensorSpec(low, "codes", spec.shape, narrow_fmt, (spec.scale or 1.0) * 2**drop)
    tensors[back] = TensorSpec(back, "codes", spec.shape, fmt, spec.scale)
    producer = bundle.producer(tensor)
    rounding = producer.rounding if isinstance(producer, RequantNode) else bundle.meta.rounding
    down = _requant(f"{low}.q", [(tensor, np.ones(c))], np.full(c, drop), low, rounding)
    up = _requant(f"{back}.q", [(low, np.full(c, 1 << drop))], np.zeros(c), back, rounding)
    return [down, up], back, replace(bundle, tensors=tensors)


def _reading(node: Node, old: str, new: str) -> Node:
    """``node`` with every read of tensor ``old`` turned into a read of ``new``."""
    if isinstance(node, RequantNode):
        inputs = tuple(replace(i, tensor=new) if i.tensor == old else i for i in node.inputs)
        return replace(node, inputs=inputs)
    return replace(node, input=new) if getattr(node, "input", None) == old else node


def narrow_layer_input(bundle: Bundle, layer: str, bits: int) -> Bundle | None:
    """Only ``layer`` sees its input with ``bits`` bits (``None`` when that changes nothing)."""
    node = bundle.node(layer)
    found = _narrowing(bundle, node.input, bits, f"{layer}.a{bits}")
    if found is None:
        return None
    inserted, back, bundle = found
    nodes: list[Node] = []
    for n in bundle.nodes:
        if n.name == layer:
            nodes += [*inserted, _reading(n, node.input, back)]
        else:
            nodes.append(n)
    return replace(bundle, nodes=tuple(nodes))


def source_tensor(bundle: Bundle, tensor: str) -> str:
    """The tensor ``tensor`` is pooled from (through any chain of pools; itself if no pool wrote it)."""
    produced = {n.output: n for n in bundle.nodes}
    while isinstance(produced.get(tensor), (AvgPoolSumNode, MaxPoolNode)):
        tensor = produced[tensor].input
    return tensor


def activation_tensors(bundle: Bundle) -> list[str]:
    """The tensors whose width a QAT activation quantizer sets, in graph order: the network input and
    every requantizer output (the logits excepted) that a MAC layer reads, directly or through pooling."""
    fed = {source_tensor(bundle, node.input) for node in bundle.mac_nodes}
    candidates = [bundle.meta.input_tensor] + [n.output for n in bundle.nodes if isinstance(n, RequantNode)]
    return [t for t in candidates if t in fed and t != bundle.meta.output]


def first_reader(bundle: Bundle, tensor: str) -> str:
    """The first node in graph order that reads ``tensor``."""
    return next(n.name for n in bundle.nodes if tensor in n.reads)


def narrow_tensor(bundle: Bundle, tensor: str, bits: int) -> Bundle | None:
    """Every reader of ``tensor`` sees it with ``bits`` bits (``None`` when that changes nothing): the
    narrowing runs once, just before the first reader."""
    found = _narrowing(bundle, tensor, bits, f"a{bits}")
    if found is None:
        return None
    inserted, back, bundle = found
    first = first_reader(bundle, tensor)
    nodes: list[Node] = []
    for n in bundle.nodes:
        if n.name == first:
            nodes += inserted
        nodes.append(_reading(n, tensor, back))
    return replace(bundle, nodes=tuple(nodes))


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


def default_jobs() -> int:
    """The CPU cores this process may use (the default number of sweep workers of ``hwsim sweep``)."""
    return available_cores()


@dataclass(frozen=True, eq=False)
class _Plan:
    """What every point of a sweep shares: the bundle, the choices, the unmodified run's tensors."""

    bundle: Bundle
    what: str
    overflow: str
    cache: dict[str, np.ndarray]  # tensor -> integers [N, ...] from the unmodified run
    base_overflow: dict[str, int]  # MAC layer -> outputs narrowing changed in the unmodified run
    logits: np.ndarray  # the unmodified run's logits


@dataclass(frozen=True, eq=False)
class _PointRun:
    """How to compute one point: the (rewritten) bundle, its configuration, the node to start from."""

    bundle: Bundle
    config: EmulatorConfig
    start: str


def _start(bundle: Bundle, what: str, unit: str) -> str:
    """The node of the unmodified bundle from which a point of ``unit`` must be re-run."""
    return first_reader(bundle, unit) if what == "act_bits" else unit


def _point_run(plan: _Plan, unit: str, bits: int) -> _PointRun | None:
    """The run of one (unit, width) point; ``None`` when it leaves every code as it was."""
    bundle, config = plan.bundle, EmulatorConfig(overflow=plan.overflow)
    if plan.what == "act_bits":
        variant = narrow_tensor(bundle, unit, bits)
        if variant is None:
            return None
        return _PointRun(variant, config, f"{unit}@a{bits}.q")  # the first inserted node
    node = bundle.node(unit)
    if plan.what == "w_bits":
        assert isinstance(node, (Conv2dNode, LinearNode))
        new_w = narrow_weights(node.weight, bits)
        if np.array_equal(new_w, node.weight):
            return None
        return _PointRun(_replace_node(bundle, node.name, replace(node, weight=new_w)), config, node.name)
    if plan.what == "a_bits":
        variant = narrow_layer_input(bundle, node.name, bits)
        if variant is None:
            return None
        names = [n.name for n in variant.nodes]
        return _PointRun(variant, config, names[names.index(node.name) - 2])  # the first inserted node
    if bits >= bundle.meta.acc_bits and plan.base_overflow[node.name] == 0:
        return None  # no sum left the bundle's accumulator, so none leaves a wider one
    return _PointRun(bundle, replace(config, acc_bits_per_layer={node.name: bits}), node.name)


def _evaluate(plan: _Plan, task: tuple[str, int]) -> tuple[np.ndarray, int, int]:
    """One point: ``(logits, outputs of the layer changed by narrowing, outputs of the layer)``
    (``0, 0`` for a tensor of ``act_bits``)."""
    unit, bits = task
    run = _point_run(plan, unit, bits)
    assert run is not None
    given = {t: plan.cache[t] for t in live_tensors(plan.bundle, _start(plan.bundle, plan.what, unit))}
    # one thread: the points themselves are spread over the workers
    emulation = emulate_from(run.bundle, run.start, given, run.config, keep=False, threads=1)
    if plan.what == "act_bits":
        return emulation.logits, 0, 0
    stats = emulation.layers[unit]
    return emulation.logits, stats.overflow_count, stats.elements


def sweep_fingerprint(
    bundle: Bundle,
    what: str,
    widths: list[int],
    input_codes: np.ndarray,
    overflow: str,
    layers: list[str] | None,
) -> str:
    """What a sweep's points depend on, as a digest (the key of its journal, hwsim.journal)."""
    return digest("sweep", bundle, what, list(widths), np.asarray(input_codes), overflow, layers)


def _compact_dtype(lo: int, hi: int) -> type[np.integer]:
    """The smallest integer dtype holding ``[lo, hi]`` (the cache holds tensors in it)."""
    for dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype
    return np.int64


def _unmodified_run(
    bundle: Bundle, what: str, overflow: str, input_codes: np.ndarray, units: list[str]
) -> _Plan:
    """The plan of a sweep of ``units``: the unmodified network run once on ``input_codes``, keeping
    every tensor some point starts from (in the smallest dtype that holds it)."""
    cfg = EmulatorConfig(acc_bits=None, overflow=overflow)
    starts = [_start(bundle, what, u) for u in units]
    needed = list(dict.fromkeys(t for name in starts for t in live_tensors(bundle, name)))
    accs = cfg.layer_acc_formats(bundle)
    acc_of = {n.output: accs[n.name] for n in bundle.mac_nodes}
    dtypes = {}
    for t in needed:
        fmt = bundle.tensors[t].fmt or acc_of[t]
        dtypes[t] = _compact_dtype(fmt.min, fmt.max)
    logits_parts: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {t: [] for t in needed}
    base_overflow = dict.fromkeys((n.name for n in bundle.mac_nodes), 0)
    for start in range(0, input_codes.shape[0], CHUNK):
        run = emulate(bundle, input_codes[start : start + CHUNK], cfg, keep=needed)
        logits_parts.append(run.logits)
        for t in needed:
            parts[t].append(run.tensors[t].astype(dtypes[t]))
        for name, stats in run.layers.items():
            base_overflow[name] += stats.overflow_count
    cache = {t: np.concatenate(v) for t, v in parts.items()}
    return _Plan(bundle, what, overflow, cache, base_overflow, np.concatenate(logits_parts))


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
    overflow: str = "wrap",
    jobs: int = 1,
    executor: ExecutorConfig | None = None,
    journal: Journal | None = None,
) -> SweepResult:
    """Re-quantize each MAC layer (each activation tensor for ``act_bits``) alone at each width in
    ``widths``; see the module docstring. ``layers``: only these layers (tensors).

    ``overflow``: how every accumulator narrows (the swept one of ``acc_bits`` included); the points
    run where ``executor`` says (hwsim.execute), by default on ``jobs`` local worker processes (1:
    all in this process; :func:`default_jobs`: every core); ``journal``: finished points recorded
    there, and those an earlier run recorded taken from it (``--resume``).
    """
    if what not in WHATS:
        raise UserError(f"--what {what!r} is not one of {', '.join(WHATS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs {jobs!r}: expected a positive number of worker processes")
    if executor is None:
        executor = ExecutorConfig(workers=jobs)  # one worker: the local backend runs here
    names = activation_tensors(bundle) if what == "act_bits" else [n.name for n in bundle.mac_nodes]
    units = names
    if layers:
        kind = "activation tensor" if what == "act_bits" else "MAC layer"
        unknown = [x for x in layers if x not in names]
        if unknown:
            raise UserError(f"--layers: no {kind} named {unknown[0]!r}; {kind}s: {', '.join(names)}")
        units = [u for u in names if u in layers]
    if what == "acc_bits" and (min(widths) < 1 or max(widths) > 64):
        raise UserError(f"acc_bits sweep: widths {widths} must lie in 1..64")
    # The unmodified run: logits, every tensor some point starts from, each layer's overflow count.
    # A recipe: built here once (a local pool's workers inherit it), and by each Dask worker for
    # itself from the bundle and the codes rather than receiving the tensors (hundreds of MB).
    recipe = Recipe(_unmodified_run, (bundle, what, overflow, input_codes, units))
    plan = recipe.value()
    base_logits = plan.logits
    images = input_codes.shape[0]
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
        list(units),
        [],
        threshold,
        {"agreement": base_agree, "top1": base_top1, "images": images, "overflow": overflow},
    )
    points = [(u, b) for u in units for b in widths]
    changed = [_point_run(plan, u, b) is not None for u, b in points]
    tasks = [p for p, c in zip(points, changed, strict=True) if c]
    order = [n.name for n in bundle.nodes]
    cost = {  # a point runs from its start node on: the MACs from there to the end
        u: sum(node_macs(m, bundle) for m in bundle.nodes[order.index(_start(bundle, what, u)) :])
        for u in units
    }
    outcomes = iter(
        run_tasks(
            _evaluate,
            recipe,
            tasks,
            executor,
            cost=lambda task: cost[task[0]],
            journal=journal,
            desc=f"sweep {what}",
            progress=progress,
        )
    )
    for (unit, bits), is_changed in zip(points, changed, strict=True):
        if not is_changed:
            rate = 0.0 if what == "acc_bits" else None
            result.points.append(SweepPoint(unit, bits, False, base_sqnr, base_agree, base_top1, rate))
            continue
        logits, overflowed, elements = next(outcomes)
        rate = (float(overflowed / elements) if elements else 0.0) if what == "acc_bits" else None
        s, agree, top1 = metrics(logits)
        result.points.append(SweepPoint(unit, bits, True, s, agree, top1, rate))
    return result
