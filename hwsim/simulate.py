"""A whole bundle on one array: per-layer cycles, memory, values, overflow and accumulator widths.

Place in the flow: ``hwsim simulate`` calls :func:`simulate_bundle`. It runs the bit-accurate
emulator (``hwsim.emulator``) at the array's accumulator width and overflow mode, so every layer
sees the activations the hardware would compute; then, per ``conv2d``/``linear`` node, it maps
the layer (``mapping``), counts its cycles (``timing``) and memory (``memory``), executes its
folds on those activations (``systolic.execute_gemm``) and checks that the array's values and
overflow counts equal the emulator's. A ``maxpool`` node gets a row too: no MACs, its cycles on
the vector unit (``timing.pool_timing``) and its traffic (``memory.pool_memory``), its values
recomputed independently and checked against the emulator's. Other nodes (requantizers, the
average-pool sum) cost nothing here. The results (``hwsim.results.MacLayerResult``) feed
``hwsim.report`` and ``hwsim.plots``.

Cycles and latency are per inference of ``batch`` images (default 1, as SCALE-Sim and FINN
report); how many images feed the value statistics is a separate choice (``input_codes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from hwsim import results
from hwsim.bundle import Bundle, Conv2dNode, LinearNode, MacNode, MaxPoolNode, RequantNode
from hwsim.emulator import Emulation, EmulatorConfig, emulate, one_blas_thread
from hwsim.energy import add_pj, layer_energy, mac_pj
from hwsim.fixed import bits_for_range
from hwsim.gemm import im2col, weight_matrix
from hwsim.hwconfig import HardwareConfig
from hwsim.mapping import gemm_shape, layer_from_node, pool_from_node
from hwsim.memory import layer_memory, pool_memory
from hwsim.results import MacLayerResult
from hwsim.systolic import execute_gemm
from hwsim.timing import cycles_to_us, layer_timing, native_gemm_cycles, pool_timing

IMAGE_CHUNK = 16  # images executed on the array model at once (bounds memory)


class ModelMismatchError(RuntimeError):
    """Two models of the same array disagree: a defect in this project, never the user's input."""


@dataclass
class Simulation:
    """What :func:`simulate_bundle` gives: a result per MAC layer and maxpool, totals, the emulation."""

    hw: HardwareConfig
    rows: list[MacLayerResult]
    totals: dict[str, Any]
    emulation: Emulation | None


def requant_after(bundle: Bundle, node: MacNode) -> RequantNode | None:
    """The first requantizer that reads ``node``'s accumulator (``None`` if none does)."""
    return next((n for n in bundle.nodes if isinstance(n, RequantNode) and node.output in n.reads), None)


def _out_bits(bundle: Bundle, node: MacNode, acc_bits: int) -> int:
    """Bits of the codes this layer's accumulator becomes (what is written back to DRAM)."""
    requant = requant_after(bundle, node)
    fmt = bundle.tensors[requant.output].fmt if requant is not None else None
    return fmt.bits if fmt is not None else acc_bits


def pool_result(node: MaxPoolNode, bundle: Bundle, hw: HardwareConfig, batch: int) -> MacLayerResult:
    """A ``maxpool`` on the vector unit: its cycles and memory; no MACs, weights or accumulator."""
    pool = pool_from_node(node, bundle)
    in_fmt = bundle.tensors[node.input].fmt
    assert in_fmt is not None
    timing = pool_timing(pool, hw, batch)
    mem = pool_memory(pool, hw, timing.total, a_bits=in_fmt.bits, batch=batch)
    return MacLayerResult(
        name=node.name,
        type=node.op,
        macs=0,
        w_bits=None,
        w_bits_nominal=None,
        a_bits=in_fmt.bits,
        acc_bits=None,
        gemm_m=None,
        gemm_k=None,
        gemm_n=None,
        groups=None,
        folds=timing.folds,
        **_costs(timing, mem, hw),
        utilization=0.0,
        array_utilization=0.0,
        arithmetic_intensity=0.0,
        **_energy(hw, pool.outputs(batch) * (pool.window - 1) * add_pj(hw.energy, in_fmt.bits), mem),
    )


def _costs(timing: Any, mem: Any, hw: HardwareConfig) -> dict[str, Any]:
    """The cycle and memory fields of a result, from a layer's timing and memory model."""
    cycles = mem.total_cycles
    return {
        "compute_cycles": timing.cycles.compute,
        "preload_cycles": timing.cycles.preload,
        "fill_drain_cycles": timing.cycles.fill_drain,
        "array_cycles": timing.total,
        "stall_cycles": mem.stall_cycles,
        "cycles": cycles,
        "latency_us": cycles_to_us(cycles, hw),
        "bound": mem.bound,
        "dram_read_bytes": mem.dram_read_bytes,
        "dram_write_bytes": mem.dram_write_bytes,
        "dram_bytes": mem.dram_bytes,
        "dram_cycles": mem.dram_cycles,
        "buffer_bytes": mem.buffer_bytes,
        "ifmap_bytes": mem.ifmap_bytes,
        "weight_bytes": mem.weight_bytes,
        "psum_bytes": mem.psum_bytes,
        "m_tiles": mem.m_tiles,
        "weight_fetches": mem.weight_fetches,
    }


def _energy(hw: HardwareConfig, compute_pj: float, mem: Any) -> dict[str, Any]:
    """The energy fields of a result (hwsim.energy), from its compute energy and memory model."""
    e = layer_energy(
        hw,
        compute_pj=compute_pj,
        buffer_bytes=(mem.ifmap_buffer_bytes, mem.weight_buffer_bytes, mem.ofmap_buffer_bytes),
        dram_bytes=mem.dram_bytes,
        latency_us=cycles_to_us(mem.total_cycles, hw),
    )
    return {
        "compute_energy_nj": e.compute_nj,
        "buffer_energy_nj": e.buffer_nj,
        "dram_energy_nj": e.dram_nj,
        "static_energy_nj": e.static_nj,
        "energy_nj": e.total_nj,
        "edp_nj_us": e.edp_nj_us,
    }


def mac_layer_result(
    node: MacNode,
    bundle: Bundle,
    hw: HardwareConfig,
    batch: int = 1,
    *,
    w_bits: int | None = None,
    a_bits: int | None = None,
    out_bits: int | None = None,
) -> MacLayerResult:
    """One ``conv2d``/``linear`` node's cycles, memory and energy on ``hw`` (analytic; no values), at
    the bundle's widths or at the weight, input and output code widths given (``hwsim.assign``
    prices each choice so)."""
    layer = layer_from_node(node, bundle)
    in_fmt = bundle.tensors[node.input].fmt
    assert in_fmt is not None
    w = node.weight_format.bits if w_bits is None else w_bits
    a = in_fmt.bits if a_bits is None else a_bits
    out = _out_bits(bundle, node, hw.pe.acc_bits) if out_bits is None else out_bits
    timing = layer_timing(layer, hw, batch)
    mem = layer_memory(layer, hw, timing.total, a_bits=a, w_bits=w, out_bits=out, batch=batch)
    gemm = gemm_shape(layer, batch)
    cycles = mem.total_cycles
    nominal = node.weight_format.nominal_bits or node.weight_format.bits
    return MacLayerResult(
        name=node.name,
        type=node.op + ("(depthwise)" if layer.depthwise else ""),
        macs=gemm.macs,
        w_bits=w,
        w_bits_nominal=nominal - (node.weight_format.bits - w),
        a_bits=a,
        acc_bits=hw.pe.acc_bits,
        gemm_m=gemm.m,
        gemm_k=gemm.k,
        gemm_n=gemm.n,
        groups=gemm.groups,
        folds=timing.folds,
        **_costs(timing, mem, hw),
        utilization=gemm.macs / (cycles * hw.array.pes),
        array_utilization=timing.utilization,
        arithmetic_intensity=gemm.macs / mem.dram_bytes if mem.dram_bytes else math.inf,
        **_energy(hw, gemm.macs * mac_pj(hw.energy, w, a, hw.pe.acc_bits), mem),
    )


def timing_rows(bundle: Bundle, hw: HardwareConfig, batch: int = 1) -> list[MacLayerResult]:
    """Per-layer cycles, latency, utilization and memory of ``bundle`` on ``hw`` (analytic; no values).

    One result per ``conv2d``/``linear`` node (the array) and per ``maxpool`` node (the vector
    unit), in execution order.
    """
    rows = []
    for node in bundle.nodes:
        if isinstance(node, MaxPoolNode):
            rows.append(pool_result(node, bundle, hw, batch))
        elif isinstance(node, (Conv2dNode, LinearNode)):
            rows.append(mac_layer_result(node, bundle, hw, batch))
    return rows


def _totals(rows: list[MacLayerResult], hw: HardwareConfig) -> dict[str, Any]:
    summed = results.totals(rows)
    cycles = summed["cycles"]
    return {
        "hw": hw.label,
        "rows": hw.array.rows,
        "cols": hw.array.cols,
        "dataflow": hw.array.dataflow,
        "acc_bits": hw.pe.acc_bits,
        "overflow": hw.pe.overflow,
        "timing": hw.timing,
        "clock_mhz": hw.clock_mhz,
        "layers": len(rows),
        **summed,
        "latency_us": cycles_to_us(cycles, hw),
        "utilization": summed["macs"] / (cycles * hw.array.pes) if cycles else 0.0,
        "memory_bound_layers": [r.name for r in rows if r.bound == "memory"],
        "edp_nj_us": summed["energy_nj"] * cycles_to_us(cycles, hw),
    }


def vector_maxpool(x: np.ndarray, node: MaxPoolNode) -> np.ndarray:
    """The vector unit's values of ``node`` on codes ``[N, C, H, W]``: every window's max, padding -inf.

    An evaluation independent of the emulator's (windows as views, padding by a mask), to check it.
    """
    kh, kw = node.kernel
    sh, sw = node.stride
    ph, pw = node.padding
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.int64)
    valid = np.zeros((h + 2 * ph, w + 2 * pw), dtype=bool)
    padded[:, :, ph : ph + h, pw : pw + w] = x
    valid[ph : ph + h, pw : pw + w] = True
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    masks = np.lib.stride_tricks.sliding_window_view(valid, (kh, kw))[::sh, ::sw]
    lowest = np.iinfo(np.int64).min
    return np.where(masks, windows, lowest).max(axis=(-2, -1))


def _group_outputs(values: np.ndarray, node: MacNode, out_shape: tuple[int, ...], images: int) -> np.ndarray:
    """``[G, M, N/G]`` array results -> the emulator's layout ``[images, C_out, ...]``."""
    g, m, npg = values.shape
    flat = values.transpose(1, 0, 2).reshape(m, g * npg)  # channel = g * N/G + n
    if len(out_shape) == 1:
        return flat.reshape(images, out_shape[0])
    c, h, w = out_shape
    return flat.reshape(images, h, w, c).transpose(0, 3, 1, 2)


def simulate_bundle(
    bundle: Bundle,
    hw: HardwareConfig,
    input_codes: np.ndarray,
    batch: int = 1,
    progress: bool = False,
) -> Simulation:
    """Simulate ``bundle`` on ``hw``: cycles for ``batch`` images, values on every ``input_codes`` image."""
    rows = timing_rows(bundle, hw, batch)
    images = int(input_codes.shape[0])
    emu_cfg = EmulatorConfig(acc_bits=hw.pe.acc_bits, overflow=hw.pe.overflow)
    emulation = emulate(bundle, input_codes, emu_cfg, keep=True, progress=progress)
    by_name = {r.name: r for r in rows}
    for pool in bundle.nodes:
        if isinstance(pool, MaxPoolNode):
            x_all, expected = emulation.tensors[pool.input], emulation.tensors[pool.output]
            mismatches = sum(
                int(
                    np.count_nonzero(
                        vector_maxpool(x_all[s : s + IMAGE_CHUNK], pool) != expected[s : s + IMAGE_CHUNK]
                    )
                )
                for s in range(0, images, IMAGE_CHUNK)
            )
            by_name[pool.name] = replace(
                by_name[pool.name],
                overflow_count=0,
                overflow_events=0,
                overflow_rate=0.0,
                array_value_mismatches=mismatches,
            )
    nodes = bundle.mac_nodes
    bar = tqdm(nodes, total=len(nodes), disable=not progress, desc="array model", unit="layer")
    with one_blas_thread():  # the GEMMs of a few images: see hwsim.emulator.one_blas_thread
        for node in bar:
            layer = layer_from_node(node, bundle)
            w = weight_matrix(node)
            x_all = emulation.tensors[node.input]
            expected = emulation.tensors[node.output]
            out_shape = bundle.tensors[node.output].shape
            overflow = events = mismatches = 0
            lo = hi = 0
            for start in range(0, images, IMAGE_CHUNK):
                chunk = min(IMAGE_CHUNK, images - start)
                run = execute_gemm(im2col(x_all[start : start + chunk], node), w, hw)
                values = _group_outputs(run.values, node, out_shape, chunk)
                mismatches += int(np.count_nonzero(values != expected[start : start + chunk]))
                overflow += run.overflow_count
                events += run.overflow_events
                part_lo, part_hi = run.partial_range if run.partial_range else (run.min_sum, run.max_sum)
                lo, hi = (part_lo, part_hi) if start == 0 else (min(lo, part_lo), max(hi, part_hi))
                executed = native_gemm_cycles(gemm_shape(layer, chunk), hw)
                if run.cycles != executed:
                    raise ModelMismatchError(
                        f"layer '{node.name}': executed folds took {run.cycles}, the analytic "
                        f"model says {executed}"
                    )
            stats = emulation.layers[node.name]
            if overflow != stats.overflow_count:
                raise ModelMismatchError(
                    f"layer '{node.name}': the array counted {overflow} overflowed outputs, "
                    f"the emulator {stats.overflow_count}"
                )
            elements = int(expected.size)
            by_name[node.name] = replace(
                by_name[node.name],
                overflow_count=overflow,
                overflow_events=events,
                overflow_rate=overflow / elements if elements else 0.0,
                peak_acc_abs=stats.peak_acc_abs,
                min_safe_acc_bits=stats.min_safe_acc_bits_worst,
                min_safe_acc_bits_observed=bits_for_range(min(lo, 0), max(hi, 0), True),
                array_value_mismatches=mismatches,
            )
    rows = [by_name[r.name] for r in rows]
    totals = _totals(rows, hw)
    totals.update(
        {
            "images": images,
            "batch": batch,
            "overflow_count": sum(r.overflow_count or 0 for r in rows),
            "overflowing_layers": [r.name for r in rows if r.overflow_count],
            "array_value_mismatches": sum(r.array_value_mismatches or 0 for r in rows),
        }
    )
    return Simulation(hw=hw, rows=rows, totals=totals, emulation=emulation)
