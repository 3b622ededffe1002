"""Work items from a network: tiles of a layer's GEMM in the design's shape, with exact expected outputs.

Place in the flow: after the design's description (``rtl_models.kit.spec``) and before the cocotb
run. :func:`layer_work` runs hwsim's emulator on an image (the checked layer at the design's
accumulator width and overflow mode, every other layer as the bundle says), takes the layer's
GEMM ``Y = A @ W`` (``hwsim.gemm.im2col`` / ``weight_matrix``) and cuts it into the design's tiles:
M rows, a K block, N columns; edges padded with code 0. Each :class:`WorkItem` holds the operands
as the design receives them (plus each operand's zero point, for unsigned-only datapaths) and the
design's expected accumulators, ``hwsim.gemm.gemm_exact`` in its accumulator (wrap, or saturate
after every product in ascending k). :func:`assemble` adds the K blocks back up outside the design,
removes the zero-point correction exactly and must give the emulator's own accumulators of the
layer. :func:`random_items` makes stress items of random codes (short and long K).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim.bundle import Bundle, Conv2dNode, LinearNode
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.fixed import wrap
from hwsim.gemm import gemm_exact, im2col, weight_matrix
from rtl_models.kit.spec import Gemm


@dataclass(frozen=True)
class WorkItem:
    """One tile for the design: ``a`` [m, k] and ``w`` [k, n] as it receives them, ``expected`` [m, n].

    ``m0``, ``k0``, ``n0``: where the tile lies in its layer's GEMM; ``used``: how many of its rows,
    K elements and columns are the layer's (the rest is padding); ``correction`` [m, n]: the
    zero points' contribution, which :func:`assemble` subtracts; ``overflows``: outputs whose
    exact sum the accumulator could not hold; ``carry`` [m, n]: accumulators the design starts
    from (``Y = C + A @ W``; the buffers protocol only), else None.
    """

    layer: str
    index: int
    m0: int
    k0: int
    n0: int
    used: tuple[int, int, int]
    a: np.ndarray
    w: np.ndarray
    expected: np.ndarray
    correction: np.ndarray
    overflows: int
    carry: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return int(self.a.shape[0]), int(self.a.shape[1]), int(self.w.shape[1])

    def where(self) -> str:
        m, k, n = self.used
        return (
            f"layer {self.layer}, item {self.index} (rows {self.m0}..{self.m0 + m - 1}, "
            f"K {self.k0}..{self.k0 + k - 1}, columns {self.n0}..{self.n0 + n - 1})"
        )

    def matrix(self, name: str) -> np.ndarray:
        """The item's matrix in a description's orientation (``rtl_models.kit.spec.MATRICES``)."""
        return {
            "a": self.a,
            "a_t": self.a.T,
            "w": self.w,
            "w_t": self.w.T,
            "y": self.expected,
            "y_t": self.expected.T,
        }[name]


def make_item(
    layer: str,
    index: int,
    origin: tuple[int, int, int],
    used: tuple[int, int, int],
    a_codes: np.ndarray,
    w_codes: np.ndarray,
    gemm: Gemm,
) -> WorkItem:
    """An item from code tiles (padding already 0): the design's operands, expectation and correction."""
    za, zw = gemm.a.zero_point, gemm.w.zero_point
    a = np.asarray(a_codes, dtype=np.int64) + za
    w = np.asarray(w_codes, dtype=np.int64) + zw
    where = f"layer {layer}, item {index}"
    for operand, x, name in ((gemm.a, a, "activation"), (gemm.w, w, "weight")):
        if not operand.fmt.contains(x):
            lo, hi = int(x.min()), int(x.max())
            zp = f" + zero point {operand.zero_point}" if operand.zero_point else ""
            raise UserError(
                f"{where}: {name} codes{zp} span [{lo}, {hi}], which the design's {operand.fmt} port cannot "
                f"take; describe a wider port (gemm.{name[0]}.bits), or give gemm.{name[0]}.zero_point "
                "to shift signed codes into an unsigned port"
            )
    result = gemm_exact(a, w, gemm.acc, gemm.overflow)
    k = a.shape[1]
    correction = (
        zw * a_codes.sum(axis=1, dtype=np.int64)[:, None]
        + za * w_codes.sum(axis=0, dtype=np.int64)[None, :]
        + k * za * zw
    )
    return WorkItem(
        layer, index, *origin, used, a, w, result.acc, correction.astype(np.int64), result.overflow_count
    )


@dataclass(frozen=True)
class LayerWork:
    """A layer's GEMM, the emulator's accumulators of it and its items."""

    layer: str
    a: np.ndarray
    w: np.ndarray
    expected: np.ndarray  # the emulator's accumulators [M, N] at the design's width (rows checked)
    items: tuple[WorkItem, ...]
    k_blocks: int
    reference: str = "emulator's layer"  # what ``expected`` is, for the report


def _tile(size: int | None, full: int) -> int:
    return full if size is None else size


def tiles(a: np.ndarray, w: np.ndarray, gemm: Gemm, layer: str, first_index: int = 0) -> list[WorkItem]:
    """Cut ``A @ W`` into the design's tiles: M-tile outer, then N tile, then K block (innermost)."""
    m, k = a.shape
    n = w.shape[1]
    tm, tk, tn = _tile(gemm.tile_m, m), _tile(gemm.tile_k, k), _tile(gemm.tile_n, n)
    items = []
    for m0 in range(0, m, tm):
        for n0 in range(0, n, tn):
            for k0 in range(0, k, tk):
                at = np.zeros((tm, tk), np.int64)
                wt = np.zeros((tk, tn), np.int64)
                used = (min(tm, m - m0), min(tk, k - k0), min(tn, n - n0))
                at[: used[0], : used[1]] = a[m0 : m0 + used[0], k0 : k0 + used[1]]
                wt[: used[1], : used[2]] = w[k0 : k0 + used[1], n0 : n0 + used[2]]
                items.append(make_item(layer, first_index + len(items), (m0, k0, n0), used, at, wt, gemm))
    return items


def _gemm_of(tensor: np.ndarray) -> np.ndarray:
    """A node's output for one image ``[1, C, H, W]`` (or ``[1, F]``) as the GEMM's ``Y [H*W, C]``."""
    if tensor.ndim == 4:
        _, c, h, w = tensor.shape
        return tensor[0].transpose(1, 2, 0).reshape(h * w, c)
    return tensor.reshape(1, -1)


def layer_work(
    bundle: Bundle, layer: str, image: np.ndarray, gemm: Gemm, rows: int | None = None, first_index: int = 0
) -> LayerWork:
    """The items of MAC layer ``layer`` for one image ``[1, C, H, W]`` (``rows``: the first rows of A)."""
    names = [n.name for n in bundle.mac_nodes]
    if layer not in names:
        raise UserError(
            f"layer {layer!r}: not a conv2d/linear node of the bundle; its MAC layers: {', '.join(names)}"
        )
    node = bundle.node(layer)
    assert isinstance(node, (Conv2dNode, LinearNode))
    if node.groups != 1:
        raise UserError(f"layer {layer}: {node.groups} groups; the kit checks ungrouped layers")
    config = EmulatorConfig(overflow=gemm.overflow, acc_bits_per_layer={layer: gemm.acc_bits})
    tensors = emulate(bundle, image, config, keep=[node.input, node.output]).tensors
    a = im2col(tensors[node.input], node)[0]
    w = weight_matrix(node)[0]
    expected = _gemm_of(tensors[node.output])
    if rows is not None:
        a, expected = a[:rows], expected[:rows]
    return gemm_work(layer, a, w, expected, gemm, first_index, "emulator's layer")


def gemm_work(
    name: str,
    a: np.ndarray,
    w: np.ndarray,
    expected: np.ndarray,
    gemm: Gemm,
    first_index: int = 0,
    reference: str = "hwsim's GEMM",
) -> LayerWork:
    """The items of one GEMM ``A @ W`` whose accumulators at the design's width are ``expected``
    (a layer's, from the emulator; a vector set's, ``hwsim.gemm.gemm_exact``)."""
    items = tiles(a, w, gemm, name, first_index)
    blocks = math.ceil(a.shape[1] / _tile(gemm.tile_k, a.shape[1]))
    work = LayerWork(name, a, w, expected, tuple(items), blocks, reference)
    model = assemble(work, [it.expected for it in items], gemm)
    if model is not None and not np.array_equal(model, expected):
        raise RuntimeError(f"{name}: the items' expectations do not add up to hwsim's GEMM")
    return work


def assemble(work: LayerWork, outputs: Sequence[np.ndarray], gemm: Gemm) -> np.ndarray | None:
    """The layer's accumulators from the items' outputs: K blocks added outside the design, zero-point
    corrections removed, narrowed like the emulator (``None`` where that is not exact: a saturating
    accumulator whose layer spans several K blocks)."""
    if gemm.overflow == "saturate" and work.k_blocks > 1:
        return None
    m, n = work.expected.shape
    total = np.zeros((m, n), dtype=object if gemm.acc_bits > 60 else np.int64)
    for item, out in zip(work.items, outputs, strict=True):
        um, _, un = item.used
        part = (np.asarray(out, np.int64) - item.correction)[:um, :un]
        total[item.m0 : item.m0 + um, item.n0 : item.n0 + un] += part
    if gemm.overflow == "saturate":
        return total.astype(np.int64)
    return wrap(np.asarray(total, dtype=np.int64), gemm.acc)[0]


def random_items(
    gemm: Gemm,
    count: int,
    rng: np.random.Generator,
    layer: str = "random",
    k_values: Sequence[int] = (1, 2, 33, 97),
    first_index: int = 0,
) -> list[WorkItem]:
    """Stress items of random codes across the operand ports' whole ranges (minus zero points).

    Fixed tile sizes are kept; a design that takes any K gets the sizes in ``k_values`` in turn
    (short and long packets), any M or N a random size from 1 to 4.
    """
    items = []
    fa, fw = gemm.a.fmt, gemm.w.fmt
    za, zw = gemm.a.zero_point, gemm.w.zero_point
    for i in range(count):
        m = gemm.tile_m or int(rng.integers(1, 5))
        n = gemm.tile_n or int(rng.integers(1, 5))
        k = gemm.tile_k or int(k_values[i % len(k_values)])
        a = rng.integers(fa.min - za, fa.max - za, size=(m, k), endpoint=True)
        w = rng.integers(fw.min - zw, fw.max - zw, size=(k, n), endpoint=True)
        items.append(make_item(layer, first_index + i, (0, 0, 0), (m, k, n), a, w, gemm))
    return items


def save_items(items: Sequence[WorkItem], path: Path) -> None:
    """Items as one ``.npz`` for the testbench (``load_items`` reads them back)."""
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, it in enumerate(items):
        arrays[f"a{i}"], arrays[f"w{i}"], arrays[f"y{i}"], arrays[f"c{i}"] = (
            it.a,
            it.w,
            it.expected,
            it.correction,
        )
        meta.append([it.index, it.m0, it.k0, it.n0, *it.used, it.overflows])
        if it.carry is not None:
            arrays[f"k{i}"] = it.carry
    arrays["meta"] = np.asarray(meta, dtype=np.int64).reshape(len(items), 8)
    arrays["layers"] = np.asarray([it.layer for it in items], dtype=str)
    np.savez(path, **arrays)


def load_items(path: str | Path) -> list[WorkItem]:
    with np.load(path) as z:
        meta, layers = z["meta"], z["layers"]
        return [
            WorkItem(
                str(layers[i]),
                int(r[0]),
                int(r[1]),
                int(r[2]),
                int(r[3]),
                (int(r[4]), int(r[5]), int(r[6])),
                z[f"a{i}"],
                z[f"w{i}"],
                z[f"y{i}"],
                z[f"c{i}"],
                int(r[7]),
                z[f"k{i}"] if f"k{i}" in z.files else None,
            )
            for i, r in enumerate(meta)
        ]
