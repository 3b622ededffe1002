"""Mixed-precision assignment: per-layer weight and per-tensor activation widths at the least cost on
an array, under a floor on top-1 agreement, verified on the bit-exact emulator.

Place in the flow: ``hwsim assign`` gives :func:`assign` a bundle, a hardware description and the
two sensitivity sweeps of ``hwsim.sweep`` (``w_bits`` per MAC layer, ``act_bits`` per activation
tensor: the units a QAT config sets). The problem (:func:`build_problem`):

* **Units**: each MAC layer's weights and each activation tensor (``hwsim.sweep.activation_tensors``).
  A unit's choices are the swept code widths below its width in the bundle, and the bundle's width
  (narrowing only; a weight also needs a config width ``bits - offset >= 1``). Each choice has a
  predicted noise, the logits' relative error power ``10^(-SQNR/10)`` of its sweep point (0 at the
  bundle's width), and, shown but not summed, the agreement it lost alone.
* **Costs**: each MAC layer's cost depends on its weights, its input tensor and its output tensor
  (the requantizer it feeds), jointly (latency is a max of compute and DRAM time; MAC energy grows
  with ``w_bits x a_bits``), so every combination of those widths is priced by the same model as
  ``hwsim simulate`` (``hwsim.simulate.mac_layer_result``: timing, memory, energy). Pools and other
  nodes keep the bundle's widths in the cost (a constant).
* **The program** (:func:`solve`; ``scipy.optimize.milp``, HiGHS): one binary ``z[u, b]`` per unit
  choice, one ``y[l, o]`` per layer option (continuous: when every unit is chosen, the marginals fix
  ``y`` to the one matching option); ``sum_b z[u, b] = 1``; for each layer, unit and width the
  options with that width sum to ``z[u, b]``; ``sum z * noise <= noise budget`` (independent errors
  add in power: the additive assumption of HAWQ-V3); ``sum y * cost_m <= budget_m`` for each
  ``--budget``; minimise the objective.

Then each solution is **verified** (:func:`verify`): one emulation of the whole network with every
unit at its width (weights narrowed as ``hwsim.sweep.narrow_weights``, tensors as
``hwsim.sweep.narrow_tensor``), its agreement and SQNR measured on the same images. The search
(:func:`assign`) starts the noise budget at the least noise of a single choice that alone breaks the
floor; a solution measured below the floor is rejected and cut off and the budget tightened below
its predicted noise; one that passes loosens it; between a pass and a failure the budget is
bisected; at most ``MAX_TRIES`` solutions, the cheapest verified one kept (the bundle's own widths
always pass). Beside it, in the same run and on the same model: a greedy baseline (:func:`greedy`:
the best cost saving per unit of added noise, one step at a time, at the budget the search last
passed) and uniform widths (every unit at the same config width, capped at the bundle's), each
verified the same way.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hwsim.bundle import (
    Bundle,
    Conv2dNode,
    LinearNode,
    MacNode,
    MaxPoolNode,
)
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.hwconfig import HardwareConfig
from hwsim.results import MacLayerResult
from hwsim.simulate import mac_layer_result, pool_result, requant_after
from hwsim.sweep import (
    SweepResult,
    activation_tensors,
    narrow_tensor,
    narrow_weights,
    source_tensor,
    sqnr_db,
)

KINDS = ("w_bits", "act_bits")  # the sweeps an assignment takes its sensitivities from
MAX_TRIES = 12  # solutions verified before the best verified one (at worst the bundle's) is kept
BISECTION_END = 1.05  # the search stops when the passing and failing noise budgets are this close
UNIFORM_BITS = (8, 6, 4)  # the uniform baselines' config widths
EMULATION_CHUNK = 128  # images per emulator call in a verification


@dataclass(frozen=True)
class Metric:
    """A cost the program can minimise or bound: its unit and how a layer's result gives it."""

    name: str
    unit: str
    help: str
    of: Callable[[MacLayerResult, int], float]  # (layer result, weight parameters) -> value


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("energy", "uJ", "energy per inference (hwsim.energy)", lambda r, _p: r.energy_nj / 1000.0),
        Metric("latency", "us", "latency per inference, stalls included", lambda r, _p: r.latency_us),
        Metric(
            "weight_bits", "bits", "weight storage: parameters x code width", lambda r, p: float(p * r.w_bits)
        ),
    )
}


@dataclass(frozen=True)
class Unit:
    """One width to choose: a MAC layer's weights (``kind='weight'``) or an activation tensor's codes."""

    name: str
    kind: str
    bundle_bits: int
    offset: int  # code width - the width a QAT config names (DoReFa's odd weights: 1; otherwise 0)
    choices: tuple[int, ...]  # code widths, ascending; the last is the bundle's
    noise: tuple[float, ...]  # per choice: the logits' error power over their power, this unit alone
    drops: tuple[float, ...]  # per choice: the agreement lost, this unit alone (shown, not summed)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    def noise_at(self, bits: int) -> float:
        return self.noise[self.choices.index(bits)]

    def drop(self, bits: int) -> float:
        return self.drops[self.choices.index(bits)]


@dataclass(frozen=True)
class LayerOptions:
    """A MAC layer's cost at every combination of the widths of the units it depends on."""

    layer: str
    units: tuple[str, ...]  # unit keys: its weights, its input tensor, its output tensor (those that vary)
    options: tuple[tuple[int, ...], ...]  # one width per unit, per option
    costs: np.ndarray  # [option, metric] in the order of METRICS


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything the program and the baselines need; built once by :func:`build_problem`."""

    bundle: Bundle
    hw: HardwareConfig
    units: tuple[Unit, ...]
    layers: tuple[LayerOptions, ...]
    fixed: np.ndarray  # [metric]: the cost that no choice changes (pools)
    baseline_agreement: float
    images: int

    def unit(self, key: str) -> Unit:
        return next(u for u in self.units if u.key == key)

    def layer_results(self, widths: dict[str, int]) -> list[MacLayerResult]:
        """Every MAC layer's result at ``widths`` (what the report's rows show)."""
        units = {u.key: u for u in self.units}
        return [priced_layer(self.bundle, self.hw, node, units, widths) for node in self.bundle.mac_nodes]

    def bundle_widths(self) -> dict[str, int]:
        return {u.key: u.bundle_bits for u in self.units}

    def predicted_noise(self, widths: dict[str, int]) -> float:
        """The units' relative noise powers summed (independent errors add in power)."""
        return float(sum(u.noise_at(widths[u.key]) for u in self.units))

    def cost(self, widths: dict[str, int]) -> dict[str, float]:
        """The network's cost per metric at ``widths`` (every unit at one of its choices)."""
        total = self.fixed.copy()
        for lo in self.layers:
            total += lo.costs[lo.options.index(tuple(widths[k] for k in lo.units))]
        return dict(zip(METRICS, (float(v) for v in total), strict=True))


# ----------------------------------------------------------------------------------------------
# The problem
# ----------------------------------------------------------------------------------------------


def _written(bundle: Bundle, node: MacNode) -> str | None:
    """The tensor the requantizer after ``node`` writes (``None`` if none reads it)."""
    requant = requant_after(bundle, node)
    return requant.output if requant is not None else None


def _weight_params(node: MacNode) -> int:
    return int(np.asarray(node.weight).size)


def relative_noise(sqnr: float) -> float:
    """``10^(-SQNR/10)``: the error power of the logits over their power (0 when identical)."""
    return 0.0 if sqnr == math.inf else float(10 ** (-sqnr / 10))


def predicted_sqnr_db(noise: float) -> float:
    return math.inf if noise <= 0 else -10 * math.log10(noise)


def _measured(
    sweep: SweepResult | None, name: str, bundle_bits: int, lowest: int
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
    """A unit's choices, relative noise and agreement drop from its sweep (only the bundle's width
    without one)."""
    if sweep is None or name not in sweep.layers:
        return (bundle_bits,), (0.0,), (0.0,)
    i = sweep.layers.index(name)
    agreement, sqnr = sweep.grid("agreement")[i], sweep.grid("sqnr_db")[i]
    base = float(sweep.baseline["agreement"])
    choices, noise, drops = [], [], []
    for bits, agree, s in zip(sweep.widths, agreement, sqnr, strict=True):
        if lowest <= bits < bundle_bits and not math.isnan(agree):
            choices.append(int(bits))
            noise.append(relative_noise(float(s)))
            drops.append(base - float(agree))
    return (*choices, bundle_bits), (*noise, 0.0), (*drops, 0.0)


def _check_sweep(sweep: SweepResult | None, what: str) -> None:
    if sweep is not None and sweep.what != what:
        raise UserError(f"expected a {what} sweep, got a {sweep.what} sweep")


def layer_units(bundle: Bundle, node: MacNode, units: dict[str, Unit]) -> tuple[str, ...]:
    """The keys of the units a MAC layer's cost depends on: its weights, the activation tensor it
    reads (through pooling), the one its requantizer writes."""
    source = f"activation:{source_tensor(bundle, node.input)}"
    out = _written(bundle, node)
    keys = [f"weight:{node.name}", source, f"activation:{out}"]
    return tuple(dict.fromkeys(k for k in keys if k in units))  # a layer reading and writing one tensor: once


def priced_layer(
    bundle: Bundle, hw: HardwareConfig, node: MacNode, units: dict[str, Unit], widths: dict[str, int]
) -> MacLayerResult:
    """A MAC layer's result (``hwsim.simulate.mac_layer_result``) with its units at ``widths`` (unit key
    -> code width; a unit left out keeps the bundle's width)."""
    in_fmt = bundle.tensors[node.input].fmt
    assert in_fmt is not None
    source = units.get(f"activation:{source_tensor(bundle, node.input)}")
    a_in = None
    if source is not None and source.key in widths:  # a pool between keeps the difference in width
        a_in = in_fmt.bits - (source.bundle_bits - widths[source.key])
    out_key = f"activation:{_written(bundle, node)}"
    return mac_layer_result(
        node,
        bundle,
        hw,
        w_bits=widths.get(f"weight:{node.name}"),
        a_bits=a_in,
        out_bits=widths.get(out_key) if out_key in units else None,
    )


def build_problem(
    bundle: Bundle,
    hw: HardwareConfig,
    w_sweep: SweepResult | None,
    act_sweep: SweepResult | None,
) -> Problem:
    """Units, their predicted drops, and every layer's cost at every combination of its units' widths."""
    _check_sweep(w_sweep, "w_bits")
    _check_sweep(act_sweep, "act_bits")
    sweeps = [s for s in (w_sweep, act_sweep) if s is not None]
    if not sweeps:
        raise UserError("no sensitivities: give a w_bits sweep, an act_bits sweep, or both")
    images = {int(s.baseline["images"]) for s in sweeps}
    baselines = {float(s.baseline["agreement"]) for s in sweeps}
    if len(images) > 1 or len(baselines) > 1:
        raise UserError(
            f"the sweeps were measured on different inputs ({sorted(images)} images, baseline agreement "
            f"{sorted(baselines)}); run both on the same --images/--data"
        )
    units: list[Unit] = []
    for node in bundle.mac_nodes:
        fmt = node.weight_format
        offset = fmt.bits - (fmt.nominal_bits or fmt.bits)
        choices, noise, drops = _measured(w_sweep, node.name, fmt.bits, lowest=max(2, offset + 1))
        units.append(Unit(node.name, "weight", fmt.bits, offset, choices, noise, drops))
    for tensor in activation_tensors(bundle):
        fmt = bundle.tensors[tensor].fmt
        assert fmt is not None
        choices, noise, drops = _measured(act_sweep, tensor, fmt.bits, lowest=2 if fmt.signed else 1)
        units.append(Unit(tensor, "activation", fmt.bits, 0, choices, noise, drops))
    by_key = {u.key: u for u in units}
    metrics = list(METRICS.values())
    layers: list[LayerOptions] = []
    for node in bundle.mac_nodes:
        keys = layer_units(bundle, node, by_key)
        options = tuple(itertools.product(*(by_key[k].choices for k in keys)))
        params = _weight_params(node)
        costs = np.empty((len(options), len(metrics)))
        for i, option in enumerate(options):
            result = priced_layer(bundle, hw, node, by_key, dict(zip(keys, option, strict=True)))
            costs[i] = [m.of(result, params) for m in metrics]
        layers.append(LayerOptions(node.name, keys, options, costs))
    fixed = np.zeros(len(metrics))
    for node in bundle.nodes:
        if isinstance(node, MaxPoolNode):
            fixed += [m.of(pool_result(node, bundle, hw, 1), 0) for m in metrics]
    return Problem(bundle, hw, tuple(units), tuple(layers), fixed, baselines.pop(), images.pop())


# ----------------------------------------------------------------------------------------------
# The program
# ----------------------------------------------------------------------------------------------


def solve(
    problem: Problem,
    objective: str,
    max_noise: float,
    budgets: dict[str, float] | None = None,
    cuts: Sequence[dict[str, int]] = (),
) -> dict[str, int] | None:
    """The widths of least ``objective`` whose predicted relative noise is at most ``max_noise``
    (``inf``: any), within ``budgets`` (metric -> bound), and none of ``cuts``; ``None`` when no
    choice fits."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_matrix

    names = list(METRICS)
    z_index: dict[tuple[str, int], int] = {}
    for u in problem.units:
        for b in u.choices:
            z_index[(u.key, b)] = len(z_index)
    n_z = len(z_index)
    y_start: list[int] = []
    n = n_z
    for lo in problem.layers:
        y_start.append(n)
        n += len(lo.options)
    rows: list[tuple[dict[int, float], float, float]] = []  # (coefficients, lower, upper)
    for u in problem.units:
        rows.append(({z_index[(u.key, b)]: 1.0 for b in u.choices}, 1.0, 1.0))
    for lo, start in zip(problem.layers, y_start, strict=True):
        for j, key in enumerate(lo.units):
            for b in problem.unit(key).choices:
                coef = {start + i: 1.0 for i, o in enumerate(lo.options) if o[j] == b}
                coef[z_index[(key, b)]] = -1.0
                rows.append((coef, 0.0, 0.0))
    if math.isfinite(max_noise):  # scaled to a bound of 1: the noise spans many decades
        scale = 1.0 / max_noise if max_noise > 0 else 1.0
        noise = {z_index[(u.key, b)]: u.noise_at(b) * scale for u in problem.units for b in u.choices}
        rows.append((noise, -np.inf, 1.0 if max_noise > 0 else 0.0))
    for metric, bound in (budgets or {}).items():
        m = names.index(metric)
        coef = {
            start + i: float(c)
            for lo, start in zip(problem.layers, y_start, strict=True)
            for i, c in enumerate(lo.costs[:, m])
        }
        rows.append((coef, -np.inf, bound - float(problem.fixed[m])))
    varying = [u for u in problem.units if len(u.choices) > 1]
    for cut in cuts:
        rows.append(({z_index[(u.key, cut[u.key])]: 1.0 for u in varying}, -np.inf, len(varying) - 1.0))
    a = lil_matrix((len(rows), n))
    lower, upper = np.empty(len(rows)), np.empty(len(rows))
    for r, (coef, lo_b, hi_b) in enumerate(rows):
        for col, v in coef.items():
            a[r, col] = v
        lower[r], upper[r] = lo_b, hi_b
    c = np.zeros(n)
    m_obj = names.index(objective)
    for lo, start in zip(problem.layers, y_start, strict=True):
        c[start : start + len(lo.options)] = lo.costs[:, m_obj]
    integrality = np.zeros(n)
    integrality[:n_z] = 1
    res = milp(
        c,
        constraints=LinearConstraint(a.tocsr(), lower, upper),
        integrality=integrality,
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    if res.x is None:
        return None
    return {key: b for (key, b), i in z_index.items() if res.x[i] > 0.5}


# ----------------------------------------------------------------------------------------------
# Verification and the baselines
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Inputs:
    """The images every candidate is measured on, and what it is measured against."""

    codes: np.ndarray
    labels: np.ndarray | None
    reference: np.ndarray  # predictions the agreement counts (the sweeps' reference)
    base_logits: np.ndarray  # the unmodified bundle's logits (the SQNR's reference)


def inputs_for(
    bundle: Bundle, codes: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None
) -> Inputs:
    """The unmodified bundle's logits on ``codes``; agreement against ``reference`` (else against its
    own predictions)."""
    base = _logits(bundle, codes)
    ref = np.argmax(base, axis=1) if reference is None else np.asarray(reference)[: codes.shape[0]]
    has_labels = labels is not None and bool(np.all(np.asarray(labels) >= 0))
    return Inputs(codes, np.asarray(labels) if has_labels else None, ref, base)


def _logits(bundle: Bundle, codes: np.ndarray) -> np.ndarray:
    parts = [
        emulate(bundle, codes[i : i + EMULATION_CHUNK], EmulatorConfig(), keep=False).logits
        for i in range(0, codes.shape[0], EMULATION_CHUNK)
    ]
    return np.concatenate(parts)


def narrowed_bundle(bundle: Bundle, widths: dict[str, int]) -> Bundle:
    """``bundle`` with every unit at its width in ``widths`` (unit key -> code width), in memory."""
    nodes = []
    for node in bundle.nodes:
        bits = widths.get(f"weight:{node.name}")
        if isinstance(node, (Conv2dNode, LinearNode)) and bits is not None and bits < node.weight_format.bits:
            node = replace(node, weight=narrow_weights(node.weight, bits))
        nodes.append(node)
    out = replace(bundle, nodes=tuple(nodes))
    for key, bits in widths.items():
        kind, name = key.split(":", 1)
        if kind == "activation":
            narrowed = narrow_tensor(out, name, bits)
            out = narrowed if narrowed is not None else out
    return out


@dataclass
class Candidate:
    """One set of widths, its predicted noise and cost, and what it measured on the emulator."""

    @property
    def predicted_sqnr_db(self) -> float:
        return predicted_sqnr_db(self.predicted_noise)

    label: str
    widths: dict[str, int]
    predicted_noise: float
    cost: dict[str, float]
    agreement: float
    sqnr_db: float
    top1: float | None
    passed: bool


def verify(problem: Problem, inputs: Inputs, label: str, widths: dict[str, int], floor: float) -> Candidate:
    """Emulate the whole network at ``widths`` and measure agreement, SQNR and top-1."""
    logits = _logits(narrowed_bundle(problem.bundle, widths), inputs.codes)
    pred = np.argmax(logits, axis=1)
    agreement = float(np.mean(pred == inputs.reference))
    top1 = float(np.mean(pred == inputs.labels)) if inputs.labels is not None else None
    return Candidate(
        label,
        dict(widths),
        problem.predicted_noise(widths),
        problem.cost(widths),
        agreement,
        sqnr_db(inputs.base_logits, logits),
        top1,
        agreement >= floor - 1e-12,
    )


def greedy(problem: Problem, objective: str, max_noise: float) -> dict[str, int]:
    """From the bundle's widths, repeatedly lower the one unit whose next narrower width saves the most
    ``objective`` per unit of added predicted noise (free savings first), while the noise fits."""
    widths = problem.bundle_widths()
    spent = 0.0
    while True:
        current = problem.cost(widths)[objective]
        best: tuple[float, float, str, int] | None = None
        for u in problem.units:
            i = u.choices.index(widths[u.key])
            if i == 0:
                continue
            b = u.choices[i - 1]
            added = u.noise_at(b) - u.noise_at(widths[u.key])
            if spent + added > max_noise * (1 + 1e-9):
                continue
            saving = current - problem.cost({**widths, u.key: b})[objective]
            if saving <= 0:
                continue
            score = math.inf if added <= 0 else saving / added
            if best is None or (score, saving) > (best[0], best[1]):
                best = (score, saving, u.key, b)
        if best is None:
            return widths
        widths[best[2]] = best[3]
        spent = problem.predicted_noise(widths)


def uniform(problem: Problem, bits: int) -> dict[str, int]:
    """Every unit at config width ``bits`` (code width ``bits + offset``), capped at the bundle's."""
    return {u.key: min(u.bundle_bits, bits + u.offset) for u in problem.units}


# ----------------------------------------------------------------------------------------------
# The whole assignment
# ----------------------------------------------------------------------------------------------


@dataclass
class Assignment:
    """What :func:`assign` gives: the chosen widths, every try, the baselines, and how long it took."""

    problem: Problem
    objective: str
    floor: float
    budgets: dict[str, float]
    chosen: Candidate
    tries: list[Candidate]
    baselines: list[Candidate]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def first_noise_budget(problem: Problem, floor: float) -> float:
    """Where the search starts: the least noise of any single unit's choice that alone breaks ``floor``
    (``inf`` if none does)."""
    base = problem.baseline_agreement
    breaking = [n for u in problem.units for n, d in zip(u.noise, u.drops, strict=True) if base - d < floor]
    return min(breaking) if breaking else math.inf


def assign(
    problem: Problem,
    inputs: Inputs,
    objective: str,
    floor: float,
    budgets: dict[str, float] | None = None,
    baselines: bool = True,
    tries: int = MAX_TRIES,
) -> Assignment:
    """Solve, verify, tighten or loosen the noise budget, keep the cheapest verified solution; then
    the baselines (see the module docstring)."""
    if objective not in METRICS:
        raise UserError(f"--objective {objective!r} is not one of {', '.join(METRICS)}")
    budgets = dict(budgets or {})
    for metric in budgets:
        if metric not in METRICS:
            raise UserError(f"--budget {metric}: not one of {', '.join(METRICS)}")
    base = problem.baseline_agreement
    if base < floor:
        raise UserError(
            f"--min-agreement {floor}: the bundle itself agrees on only {base:.4f} of the {problem.images} "
            "images; lower the floor"
        )
    seconds = {"solve": 0.0, "verify": 0.0}
    done: list[Candidate] = []
    notes: list[str] = []
    budget = first_noise_budget(problem, floor)
    passed_at = 0.0  # the largest noise budget whose solution verified
    failed_at = math.inf  # the least predicted noise of a solution that did not
    best: Candidate | None = None
    for attempt in range(1, tries + 1):
        t0 = time.perf_counter()
        widths = solve(problem, objective, budget, budgets, cuts=[t.widths for t in done if not t.passed])
        seconds["solve"] += time.perf_counter() - t0
        if widths is None:
            if not done:
                shown = ", ".join(f"{k} <= {v:g} {METRICS[k].unit}" for k, v in budgets.items())
                raise UserError(f"--budget {shown}: no assignment of the swept widths fits; raise the budget")
            notes.append(f"try {attempt}: nothing fits noise budget {budget:.3g}; stopped")
            break
        t0 = time.perf_counter()
        found = verify(problem, inputs, f"try {attempt}", widths, floor)
        seconds["verify"] += time.perf_counter() - t0
        done.append(found)
        shown = f"noise budget {budget:.3g} (SQNR >= {predicted_sqnr_db(budget):.1f} dB)"
        if found.passed:
            passed_at = max(passed_at, budget)
            if best is None or found.cost[objective] < best.cost[objective]:
                best = found
            notes.append(
                f"try {attempt}: {shown}: agreement {found.agreement:.4f} >= {floor}, "
                f"{objective} {found.cost[objective]:.4g} {METRICS[objective].unit}"
            )
        else:
            failed_at = min(failed_at, found.predicted_noise)
            notes.append(
                f"try {attempt}: {shown}: predicted SQNR {found.predicted_sqnr_db:.1f} dB, measured "
                f"{found.sqnr_db:.1f} dB, agreement {found.agreement:.4f} < {floor}: rejected, cut off, "
                "budget tightened"
            )
        # the next budget: between the largest that verified and the least predicted noise that did not
        if math.isinf(failed_at):
            if math.isinf(budget) or found.predicted_noise < budget / 2:
                break  # the budget does not bind: nothing cheaper is allowed by a looser one
            budget *= 4  # verified with room to spare: loosen
        elif passed_at == 0:
            budget = failed_at / 4
        elif failed_at / passed_at < BISECTION_END:
            break
        else:
            budget = math.sqrt(passed_at * failed_at)
    if best is None:
        best = verify(problem, inputs, "bundle", problem.bundle_widths(), floor)
        notes.append(f"no solution verified in {len(done)} tries: the bundle's own widths are kept")
    chosen = replace(best, label="assignment")
    found_baselines: list[Candidate] = []
    if baselines:
        t0 = time.perf_counter()
        found_baselines.append(verify(problem, inputs, "bundle", problem.bundle_widths(), floor))
        for bits in UNIFORM_BITS:
            found_baselines.append(
                verify(problem, inputs, f"uniform {bits}-bit", uniform(problem, bits), floor)
            )
        greedy_budget = passed_at if passed_at > 0 else 0.0
        found_baselines.append(
            verify(problem, inputs, "greedy", greedy(problem, objective, greedy_budget), floor)
        )
        seconds["baselines"] = time.perf_counter() - t0
    return Assignment(problem, objective, floor, budgets, chosen, done, found_baselines, seconds, notes)


# ----------------------------------------------------------------------------------------------
# The QAT config
# ----------------------------------------------------------------------------------------------


def quant_config(assignment: Assignment) -> dict[str, Any]:
    """The chosen widths as a ``qat train --quant`` config (configs/quant/README.md): the bundle's
    recorded config, with a ``layers`` override for every unit narrowed from the bundle's width
    (config width = code width - offset; activations keyed by their quantizer's name)."""
    bundle = assignment.problem.bundle
    recorded = bundle.meta.quantization.get("config") if isinstance(bundle.meta.quantization, dict) else None
    config: dict[str, Any] = {k: v for k, v in (recorded or {}).items() if k != "layers"}
    layers: dict[str, Any] = dict((recorded or {}).get("layers") or {})
    for u in assignment.problem.units:
        bits = assignment.chosen.widths[u.key]
        if bits == u.bundle_bits:
            continue
        if u.kind == "activation" and u.name == bundle.meta.input_tensor:
            config["input"] = {**(config.get("input") or {}), "bits": bits}
            continue
        field_name = "weight" if u.kind == "weight" else "activation"
        entry = dict(layers.pop(u.name, None) or {})
        entry[field_name] = {**(entry.get(field_name) or {}), "bits": bits - u.offset}
        layers[u.name] = entry  # last: later entries override earlier (glob) ones
    if layers:
        config["layers"] = layers
    return config
