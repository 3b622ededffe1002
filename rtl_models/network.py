"""Run a bundle's layers in order through the RTL, each on what the RTL made before; hwsim is the scoreboard.

Place in the flow: ``python -m rtl_models.check --network BUNDLE --hw HW.yaml`` (rtl_models/check.py)
calls :func:`run_network`, and :func:`render` / :func:`report_json` show its :class:`NetworkRun`.
For one image (the bundle's reference image ``image``, else a random one from ``seed``, picked as
``hwsim vectors`` picks it) the bundle's nodes run in order:

* ``conv2d`` / ``linear``: the im2col of the node's input as the RTL chain produced it, and the
  node's weights, become a GEMM vector set (hwsim.vectors.make_vector_set, the ``--hw`` file's array,
  accumulators and overflow mode) that ``array_top`` runs (rtl_models/tb_array_top.py, which requires
  hwsim's accumulators, cycle count and overflow events); its dumped accumulators are the layer's
  output;
* ``requant``: the node's constants (hwsim.vectors.make_requant_vector_set) with the RTL-produced
  inputs as requant.v's stimulus (rtl_models/tb_requant.py, every code ``==`` hwsim.fixed's); its
  dumped codes are the layer's output;
* every other node (``avgpool_sum``, ``maxpool``): hwsim's own node function
  (hwsim.emulator.run_nodes) on the RTL-produced tensors.

After each step the RTL-produced tensor must ``==`` the tensor of hwsim's own run of the whole
network (hwsim.emulator.emulate), a GEMM's cycle counter must equal hwsim's native timing of the
layer and its overflow count hwsim's register-level array model; the run stops at the first step
that differs and names it (layer, tensor, element, expected, actual). Consecutive nodes of one
Verilog parameter set whose inputs are ready (a residual block's conv and its shortcut) share one
testbench run, and ``ADDR_BITS`` is, per parameter set, the largest any layer of the network
needs, so every layer of a set reuses one build. Nothing here depends on the dataflow: the vector
sets, ``verilog_parameters`` and the testbench carry it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.bundle import Bundle, Conv2dNode, LinearNode, Node, RequantNode, load_bundle
from hwsim.emulator import EmulatorConfig, emulate, run_nodes
from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.flags import non_negative_int, positive_int, seed_int
from hwsim.gemm import im2col, weight_matrix
from hwsim.hwconfig import HardwareConfig, load_hw_config
from hwsim.mapping import gemm_shape, layer_from_node
from hwsim.output import Output, claim, publish_file, register_kind, safe_name
from hwsim.timing import native_gemm_cycles
from hwsim.vectors import (
    VectorSet,
    address_bits,
    choose_image,
    gemm_parameters,
    make_requant_vector_set,
    make_vector_set,
    write_vectors,
)
from rtl_models.sim import SimResult, run_testbench, top_parameters

REPORT_FORMAT = "qnn-verify-rtl-network"
REPORT_VERSION = 1

# A test hook: (tensor name, the RTL's tensor) -> what the later layers read instead (a corruption
# between layers, which the comparison of a later layer must catch).
Tamper = Callable[[str, np.ndarray], np.ndarray]


def _looks_like_report(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == REPORT_FORMAT


NETWORK_REPORT = register_kind("RTL network report", directory=False, recognize=_looks_like_report)


@dataclass(frozen=True)
class LayerResult:
    """One node of the chain: where it ran, what it cost, and whether its output equals hwsim's."""

    name: str
    op: str  # the node's op (conv2d, linear, requant, avgpool_sum, maxpool)
    unit: str  # array_top, requant or hwsim (a node without RTL, computed by hwsim.emulator)
    elements: int  # elements of the output tensor
    equal: bool  # output tensor == hwsim's (and, for a GEMM, cycles and overflow events)
    wall_s: float  # wall time of its testbench run (a run of several nodes: split evenly)
    gemm: tuple[int, int, int] | None = None  # M, K, N
    folds: int | None = None
    rtl_cycles: int | None = None
    hwsim_cycles: int | None = None  # hwsim's native timing of the layer (hwsim.timing)
    rtl_overflow_events: int | None = None
    hwsim_overflow_events: int | None = None  # hwsim's register-level array model
    sim_s: float | None = None  # array_top from start to done (the simulator alone)


@dataclass(frozen=True)
class Mismatch:
    """The first step where the RTL disagreed with hwsim."""

    layer: str
    message: str


@dataclass(frozen=True)
class NetworkRun:
    """The outcome of :func:`run_network`."""

    bundle: str
    hw: str
    sim: str
    image: str
    layers: tuple[LayerResult, ...]
    builds: tuple[str, ...]  # one line per distinct build (top and parameters)
    mac_layers: int  # MAC layers run
    complete: bool  # every node of the bundle ran (no --layers limit, no mismatch)
    wall_s: float
    mismatch: Mismatch | None = None
    variant: str | None = None

    @property
    def passed(self) -> bool:
        return self.mismatch is None

    @property
    def rtl_cycles(self) -> int:
        return sum(r.rtl_cycles or 0 for r in self.layers)

    @property
    def hwsim_cycles(self) -> int:
        return sum(r.hwsim_cycles or 0 for r in self.layers)

    @property
    def sim_s(self) -> float:
        return sum(r.sim_s or 0.0 for r in self.layers)

    @property
    def cycles_per_second(self) -> float:
        """RTL cycles per second of the whole run (builds, buffer loading, requantizers included)."""
        return self.rtl_cycles / max(self.wall_s, 1e-9)

    @property
    def sim_cycles_per_second(self) -> float:
        """RTL cycles per second of array_top between start and done (the simulator's speed)."""
        return self.rtl_cycles / max(self.sim_s, 1e-9)


class _Stop(Exception):
    """Raised inside the chain at the first mismatch."""

    def __init__(self, mismatch: Mismatch) -> None:
        super().__init__(mismatch.message)
        self.mismatch = mismatch


@dataclass(frozen=True)
class _Item:
    """One node waiting for its testbench run."""

    node: Node
    unit: str  # array_top | requant
    key: tuple[tuple[str, int], ...]  # the build's parameters (ADDR_BITS included)
    path: Path  # the vector set directory (array_top) or the stimulus .npz (requant)
    vs: VectorSet | None = None
    rounding: str | None = None


def _first_difference(layer: str, tensor: str, expected: np.ndarray, actual: np.ndarray) -> str | None:
    """A one-line account of where ``actual`` first differs from hwsim's ``expected``, or None."""
    if actual.shape != expected.shape:
        return f"{layer}: tensor '{tensor}' has shape {list(actual.shape)}, hwsim's {list(expected.shape)}"
    bad = np.argwhere(actual != expected)
    if bad.size == 0:
        return None
    index = tuple(int(i) for i in bad[0])
    return (
        f"{layer}: {len(bad)} of {actual.size} elements of tensor '{tensor}' differ from hwsim's; first "
        f"at {list(index)} ([image, channel, ...]): expected {int(expected[index])}, "
        f"actual {int(actual[index])}"
    )


def _from_gemm(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One image's GEMM output ``Y [M, N]`` -> the node's tensor ``[1, *shape]`` (conv: ``[1, C, H, W]``)."""
    if len(shape) == 3:
        c, h, w = shape
        return y.reshape(1, h, w, c).transpose(0, 3, 1, 2).astype(np.int64)
    return y.reshape(1, *shape).astype(np.int64)


class _Chain:
    """The state of one run: hwsim's tensors, the RTL's tensors, the steps done, the batch waiting."""

    def __init__(
        self,
        bundle: Bundle,
        hw: HardwareConfig,
        sim: str,
        image: np.ndarray,
        work: Path,
        variant: str | None,
        tamper: Tamper | None,
    ) -> None:
        self.bundle, self.hw, self.sim, self.image, self.work = bundle, hw, sim, image, work
        self.variant, self.tamper = variant, tamper
        self.config = EmulatorConfig(acc_bits=hw.pe.acc_bits, overflow=hw.pe.overflow)
        self.expected = emulate(bundle, image, self.config, keep=True).tensors  # hwsim's own run
        self.rtl: dict[str, np.ndarray] = {bundle.meta.input_tensor: np.asarray(image, dtype=np.int64)}
        self.results: list[LayerResult] = []
        self.builds: dict[tuple[str, tuple[tuple[str, int], ...]], None] = {}
        self.batch: list[_Item] = []
        self.addr_bits = self._plan_addr_bits()
        for sub in ("vectors", "requant", "dump"):
            (work / sub).mkdir()

    # --- planning ---------------------------------------------------------------------------

    def _formats(self, node: Conv2dNode | LinearNode) -> tuple[IntFormat, IntFormat]:
        in_fmt = self.bundle.tensors[node.input].fmt
        assert in_fmt is not None
        return in_fmt.int_format, IntFormat(node.weight_format.bits, True)

    def _plan_addr_bits(self) -> dict[tuple[tuple[str, int], ...], int]:
        """Per parameter set, the ADDR_BITS the largest of its layers needs (one build serves them all)."""
        plan: dict[tuple[tuple[str, int], ...], int] = {}
        for node in self.bundle.mac_nodes:
            if node.groups != 1:
                raise UserError(
                    f"{self.bundle.path}: layer '{node.name}' is a grouped conv (groups={node.groups}); a "
                    "network run on the RTL takes ungrouped layers only; check its groups one by one "
                    "with `hwsim vectors --layer NAME --group G` and `python -m rtl_models.check`"
                )
            a_fmt, w_fmt = self._formats(node)
            params = gemm_parameters(self.hw, a_fmt, w_fmt)
            key = tuple(sorted(params.items()))
            gemm = gemm_shape(layer_from_node(node, self.bundle))  # one image
            plan[key] = max(plan.get(key, 1), address_bits(gemm.m, gemm.k, gemm.n, params))
        return plan

    # --- the chain --------------------------------------------------------------------------

    def run(self, mac_limit: int | None) -> tuple[int, bool]:
        """Every node in order (up to ``mac_limit`` MAC layers); returns (MAC layers run, complete)."""
        macs = 0
        for node in self.bundle.nodes:
            if isinstance(node, (Conv2dNode, LinearNode)):
                if mac_limit is not None and macs == mac_limit:
                    self.flush()
                    return macs, False
                macs += 1
            if any(t in {i.node.output for i in self.batch} for t in node.reads):
                self.flush()  # it reads what the waiting batch makes
            if isinstance(node, (Conv2dNode, LinearNode)):
                self._queue(self._gemm_item(node))
            elif isinstance(node, RequantNode):
                self._queue(self._requant_item(node))
            else:
                self.flush()
                self._hwsim_node(node)
        self.flush()
        return macs, True

    def _queue(self, item: _Item) -> None:
        if self.batch and (self.batch[0].unit, self.batch[0].key) != (item.unit, item.key):
            self.flush()
        self.batch.append(item)

    def _gemm_item(self, node: Conv2dNode | LinearNode) -> _Item:
        a_fmt, w_fmt = self._formats(node)
        a = im2col(self.rtl[node.input], node)[0]  # the RTL's own input
        vs = make_vector_set(a, weight_matrix(node)[0], self.hw, a_fmt=a_fmt, w_fmt=w_fmt, name=node.name)
        key = tuple(sorted(vs.parameters.items()))
        params = {**vs.parameters, "ADDR_BITS": self.addr_bits[key]}
        path = write_vectors(vs, self.work / "vectors" / safe_name(node.name, "a layer name of the bundle"))
        return _Item(node, "array_top", tuple(sorted(params.items())), path, vs=vs)

    def _requant_item(self, node: RequantNode) -> _Item:
        rvs = make_requant_vector_set(self.bundle, node.name, self.image, self.config)
        stimulus = dict(rvs.stimulus)
        for k, item in enumerate(node.inputs):  # the RTL's own inputs
            stimulus[f"x{k}"] = self.rtl[item.tensor].astype(np.int64).reshape(-1)
        path = self.work / "requant" / f"{safe_name(node.name, 'a layer name of the bundle')}.npz"
        np.savez(path, **stimulus, shape=np.array(rvs.shape, dtype=np.int64))
        return _Item(node, "requant", tuple(sorted(rvs.parameters.items())), path, rounding=rvs.rounding)

    def flush(self) -> None:
        """Run the waiting batch in one testbench run, then check each node's output."""
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        first = batch[0]
        params = dict(first.key)
        dump = self.work / "dump"
        if first.unit == "array_top":
            config: dict[str, Any] = {"vectors": [str(i.path) for i in batch], "dump": str(dump)}
            testcase, variant = "array_top_vectors", self.variant
        else:
            config = {"stimulus": [str(i.path) for i in batch], "rounding": first.rounding, "dump": str(dump)}
            testcase, variant = "requant_stimulus_file", None
        self.builds[(first.unit, first.key)] = None
        start = time.perf_counter()
        result = run_testbench(
            first.unit,
            self.sim,
            params,
            "tb_array_top" if first.unit == "array_top" else "tb_requant",
            config=config,
            testcase=testcase,
            variant=variant,
            name="network",
        )
        wall = (time.perf_counter() - start) / len(batch)
        for item in batch:
            self._check(item, dump, wall, result)

    def _check(self, item: _Item, dump: Path, wall: float, result: SimResult) -> None:
        node = item.node
        out = node.output
        y_path = dump / f"{node.name}.rtl_y.npy"
        # the testbenches' failures name the vector set ("<case>: <name>: ...") or the stimulus file
        names = (f": {node.name}: ", f"{item.path}")
        failure = next((f for f in result.failures if any(n in f for n in names)), None)
        if failure is not None or not y_path.is_file():
            message = failure or "\n".join(result.failures) or f"{node.name}: no output from the testbench"
            raise _Stop(Mismatch(node.name, f"{node.name} on {item.unit} ({self.sim}): {message}"))
        y = np.load(y_path)
        shape = self.bundle.tensors[out].shape
        problems: list[str] = []
        if item.vs is not None:
            vs = item.vs
            actual = _from_gemm(y, shape)
            timing = json.loads((dump / f"{node.name}.timing.json").read_text())
            hwsim_cycles = native_gemm_cycles(gemm_shape(layer_from_node(node, self.bundle)), self.hw).total
            layer = LayerResult(
                node.name,
                node.op,
                item.unit,
                actual.size,
                False,
                wall,
                gemm=vs.shape,
                folds=int(vs.folds),
                rtl_cycles=int(timing["cycles"]),
                hwsim_cycles=hwsim_cycles,
                rtl_overflow_events=int(timing["overflow_events"]),
                hwsim_overflow_events=vs.overflow_events,
                sim_s=float(timing["run_seconds"]),
            )
            if layer.rtl_cycles != hwsim_cycles:
                problems.append(
                    f"{node.name}: cycle counter {layer.rtl_cycles}, hwsim's timing {hwsim_cycles}"
                )
            if layer.rtl_overflow_events != vs.overflow_events:
                problems.append(
                    f"{node.name}: {layer.rtl_overflow_events} overflow events, hwsim's array model "
                    f"{vs.overflow_events}"
                )
        else:
            actual = y.reshape(1, *shape).astype(np.int64)
            layer = LayerResult(node.name, node.op, item.unit, actual.size, False, wall)
        self._finish(layer, out, actual, problems)

    def _hwsim_node(self, node: Node) -> None:
        start = time.perf_counter()
        actual = run_nodes(self.bundle, [node.name], {t: self.rtl[t] for t in node.reads}, self.config)[
            node.output
        ]
        layer = LayerResult(node.name, node.op, "hwsim", actual.size, False, time.perf_counter() - start)
        self._finish(layer, node.output, actual, [])

    def _finish(self, layer: LayerResult, tensor: str, actual: np.ndarray, problems: list[str]) -> None:
        """Compare with hwsim's run; record; hand the tensor on (through the tamper hook, if any)."""
        difference = _first_difference(layer.name, tensor, self.expected[tensor], actual)
        if difference is not None:
            problems.insert(0, difference)
        self.results.append(dataclasses.replace(layer, equal=not problems))
        if problems:
            raise _Stop(Mismatch(layer.name, "\n".join(problems)))
        self.rtl[tensor] = self.tamper(tensor, actual) if self.tamper is not None else actual


def run_network(
    bundle_dir: str | Path,
    hw_path: str | Path,
    sim: str = "verilator",
    *,
    image: int = 0,
    seed: int = 0,
    layers: int | None = None,
    variant: str | None = None,
    tamper: Tamper | None = None,
) -> NetworkRun:
    """Run the bundle's nodes in order through the RTL for one image; see the module docstring.

    ``image``: index of the bundle's reference image (a bundle without reference.npz: a random image
    from ``seed``); ``layers``: stop before the (``layers`` + 1)-th MAC layer; ``variant``: a broken
    array_top variant of rtl_models.sim.VARIANTS (the tests' proof that a wrong PE is caught);
    ``tamper``: a test hook that corrupts a tensor between layers. Bad input raises UserError.
    """
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
        raise UserError(f"layers={layers!r}; expected a positive number of MAC layers")
    start = time.perf_counter()
    hw = load_hw_config(hw_path)
    bundle = load_bundle(bundle_dir)
    codes = choose_image(bundle, image, seed)
    label = f"reference image {image}" if bundle.reference is not None else f"random image (seed {seed})"
    with tempfile.TemporaryDirectory(prefix="rtl-network-") as tmp:
        chain = _Chain(bundle, hw, sim, codes, Path(tmp), variant, tamper)
        mismatch = None
        try:
            macs, complete = chain.run(layers)
        except _Stop as stop:
            mismatch = stop.mismatch
            macs = sum(1 for r in chain.results if r.op in ("conv2d", "linear"))
            complete = False
    builds = tuple(
        f"{unit} ({', '.join(f'{k}={v}' for k, v in top_parameters(unit, dict(key)).items())})"
        + (f" [{variant}]" if variant and unit == "array_top" else "")
        for unit, key in chain.builds
    )
    return NetworkRun(
        str(bundle_dir),
        hw.label,
        sim,
        label,
        tuple(chain.results),
        builds,
        macs,
        complete,
        time.perf_counter() - start,
        mismatch,
        variant,
    )


# --- rendering -------------------------------------------------------------------------------


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def render(run: NetworkRun) -> str:
    """The per-layer table, the totals and the verdict, as text."""
    head = (
        "layer",
        "kind",
        "unit",
        "GEMM M K N",
        "folds",
        "RTL cycles",
        "hwsim cycles",
        "ovf RTL/hwsim",
        "equal",
        "wall s",
    )
    rows = [head]
    for r in run.layers:
        ovf = None if r.rtl_overflow_events is None else f"{r.rtl_overflow_events}/{r.hwsim_overflow_events}"
        rows.append(
            (
                r.name,
                r.op,
                r.unit,
                _cell(None if r.gemm is None else " ".join(map(str, r.gemm))),
                _cell(r.folds),
                _cell(r.rtl_cycles),
                _cell(r.hwsim_cycles),
                _cell(ovf),
                "yes" if r.equal else "NO",
                f"{r.wall_s:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"{run.bundle} on {run.hw}, {run.sim}, {run.image}:"]
    for j, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(
        f"total: {run.rtl_cycles} RTL cycles (hwsim {run.hwsim_cycles}) in {run.mac_layers} MAC layers; "
        f"wall {run.wall_s:.1f} s ({run.cycles_per_second:.0f} cycles/s end to end, builds and requantizers "
        f"included; array_top start to done {run.sim_s:.1f} s, {run.sim_cycles_per_second:.0f} cycles/s)"
    )
    lines.append(f"{len(run.builds)} builds (one per parameter set):")
    lines += [f"  {build}" for build in run.builds]
    if run.mismatch is not None:
        lines.append(f"MISMATCH at {run.mismatch.layer}:\n{run.mismatch.message}")
    elif run.complete:
        lines.append(
            f"PASS on {run.sim}: every layer's output, cycle count and overflow count equal to hwsim's"
        )
    else:
        lines.append(f"PASS on {run.sim} for the first {run.mac_layers} MAC layers (stopped there as asked)")
    return "\n".join(lines)


def report_json(run: NetworkRun) -> dict[str, Any]:
    """The run as a JSON document (``format`` :data:`REPORT_FORMAT`)."""
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "bundle": run.bundle,
        "hw": run.hw,
        "sim": run.sim,
        "image": run.image,
        "variant": run.variant,
        "passed": run.passed,
        "complete": run.complete,
        "layers": [dataclasses.asdict(r) for r in run.layers],
        "totals": {
            "mac_layers": run.mac_layers,
            "rtl_cycles": run.rtl_cycles,
            "hwsim_cycles": run.hwsim_cycles,
            "wall_s": run.wall_s,
            "cycles_per_second": run.cycles_per_second,
            "array_top_s": run.sim_s,
            "array_top_cycles_per_second": run.sim_cycles_per_second,
        },
        "builds": list(run.builds),
        "mismatch": None if run.mismatch is None else dataclasses.asdict(run.mismatch),
    }


def write_report(run: NetworkRun, out: Output) -> Path:
    """Publish :func:`report_json` to ``out`` (claimed before the run, hwsim.output's rules)."""
    return publish_file(out, NETWORK_REPORT, json.dumps(report_json(run), indent=2) + "\n")


# --- command line (python -m rtl_models.check --network) -------------------------------------

NETWORK_OPTIONS = ("hw", "image", "seed", "layers", "out")  # the options that only --network takes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--network`` and its options, for rtl_models/check.py's parser."""
    parser.add_argument(
        "--network",
        type=Path,
        metavar="BUNDLE",
        help="run every layer of BUNDLE in order through the RTL (array_top, requant), each on what the "
        "RTL produced before, and compare every tensor, cycle count and overflow count with hwsim's "
        "(instead of vector directories; needs --hw)",
    )
    parser.add_argument(
        "--hw", type=Path, metavar="HW.yaml", help="--network: the hardware description (array, accumulators)"
    )
    parser.add_argument(
        "--image", type=non_negative_int, metavar="I", help="--network, --dut: reference image (default 0)"
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        help="--network: seed of a random image when the bundle has no reference.npz; --dut: the seed of "
        "stress and random items (default: random, printed for replay)",
    )
    parser.add_argument(
        "--layers", type=positive_int, metavar="N", help="--network: stop after the first N MAC layers"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE.json",
        help="--network: write the per-layer report as JSON (replaced only when it is an earlier one; "
        "--force replaces any file)",
    )
    parser.add_argument("--force", action="store_true", help="--network: replace --out whatever it holds")


def main_network(args: argparse.Namespace) -> int:
    """``--network``: run, print the table, write ``--out``; exit status 0 pass, 1 mismatch, 2 bad input."""
    try:
        if args.vectors:
            raise UserError(
                f"--network {args.network} and vector directories ({args.vectors[0]}, ...) were both given; "
                "check a network or vector sets, one per call"
            )
        if getattr(args, "sources", None):
            raise UserError("--network runs the project's RTL; --sources applies to vector directories only")
        if args.hw is None:
            raise UserError(
                f"--network {args.network}: --hw HW.yaml is missing, e.g. --hw configs/hw/ws_16x16.yaml"
            )
        out = (
            claim(args.out, NETWORK_REPORT, force=args.force, inputs=(args.network, args.hw))
            if args.out is not None
            else None
        )
        run = run_network(
            args.network,
            args.hw,
            args.sim,
            image=args.image or 0,
            seed=args.seed or 0,
            layers=args.layers,
        )
        print(render(run))
        if out is not None:
            print(f"wrote {write_report(run, out)}")
    except UserError as err:
        print(f"rtl_models.check: error: {err}", file=sys.stderr)
        return 2
    return 0 if run.passed else 1


def misplaced_options(args: argparse.Namespace) -> list[str]:
    """The --network options given without --network."""
    return [f"--{name}" for name in NETWORK_OPTIONS if getattr(args, name) is not None] + (
        ["--force"] if args.force else []
    )
