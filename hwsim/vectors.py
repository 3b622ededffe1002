"""RTL test vectors: one GEMM's buffer images as ``$readmemh`` hex files plus a JSON manifest, and the reader.

Place in the flow: ``hwsim vectors`` (hwsim/commands/vectors.py) and the RTL tests call
:func:`make_vector_set` (stimulus + hwsim's expected outputs, cycles and overflow counts) and
:func:`write_vectors`; the cocotb testbench rtl_models/tb_array_top.py, or any other simulator's
testbench, reads them back (:func:`read_vectors`, or ``$readmemh`` on the hex files). The word
layout is the one of rtl_models/array_top.v for the array's dataflow (docs/rtl.md), one
:class:`BufferLayout` per register-level machine (:data:`BUFFER_LAYOUTS`, keyed like
``hwsim.systolic.MACHINE_LAYOUTS`` by the operand the dataflow keeps stationary). For ``ws``:

* ``abuf.hex``: word ``kf*M + m`` holds ``A[m, kf*ROWS + r]`` at bits ``r*A_BITS`` (``r < ROWS``);
* ``wbuf.hex``: word ``(nf*KF + kf)*ROWS + j`` holds ``W[kf*ROWS + j, nf*COLS + c]`` at bits ``c*W_BITS``;
* ``expected_obuf.hex``: word ``nf*M + m`` holds ``Y[m, nf*COLS + c]`` at bits ``c*ACC_BITS``;
* ``carry_obuf.hex`` (only for an accumulating GEMM ``Y = C + A * W``): ``C`` in the layout of
  ``expected_obuf.hex``, what the output buffer holds before ``start`` with ``accumulate`` high;

with ``KF = ceil(K/ROWS)``; ``os`` and ``is`` are in :data:`BUFFER_LAYOUTS`. Codes outside A, W
or Y are 0. Every lane is a two's-complement (or unsigned) code of its width, one hex word per
line, most significant digit first.

A second kind of set holds one requantizer of a bundle (rtl_models/requant.v):
:func:`make_requant_vector_set` takes the node's inputs from the emulator's run (accumulators,
a residual branch's codes) as per-element stimulus of requant.v's ports (:data:`REQUANT_FIELDS`)
with the emulator's output codes as the expected values; :func:`write_requant_vectors` stores
them as ``stimulus.npz`` beside the manifest (``"kind": "requant"``), which
rtl_models/tb_requant.py reads. A manifest without ``kind`` is a GEMM set (``"kind": "gemm"``).
Nothing here imports torch or cocotb.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.bundle import Bundle, RequantNode
from hwsim.dataflows import Dataflow, dataflow, dataflow_at
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.errors import UserError
from hwsim.fixed import CodeFormat, IntFormat, requantize_sum, sign
from hwsim.gemm import gemm_exact
from hwsim.hwconfig import ArrayConfig, HardwareConfig, PEConfig, requant_parameters, verilog_parameters
from hwsim.limits import PE_CYCLES
from hwsim.mapping import GemmShape, fold_count
from hwsim.output import VECTORS, Output, publish_directory
from hwsim.systolic import execute_gemm, run_gemm_cycles
from hwsim.timing import native_gemm_cycles

FORMAT = "qnn-verify-rtl-vectors"
VERSION = 1
MANIFEST = "manifest.json"
KINDS: tuple[str, ...] = ("gemm", "requant")  # a manifest's "kind"; one without it is a gemm set
# requant.v's input ports, one value per element (one element per cycle), in this order
REQUANT_FIELDS: tuple[str, ...] = ("x0", "b0", "m0", "x1", "b1", "m1", "shift", "func_sign", "offset")
STIMULUS = "stimulus.npz"


class VectorError(UserError):
    """A vector directory that is missing a file or disagrees with its manifest."""


@dataclass(frozen=True)
class VectorSet:
    """Stimulus and expected results of one GEMM ``Y[M, N] = A[M, K] * W[K, N]`` (``+ C``) on one array."""

    name: str
    parameters: dict[str, int]  # Verilog parameters (ROWS, COLS, A_BITS, W_BITS, ACC_BITS, ...)
    a: np.ndarray  # [M, K] activation codes
    w: np.ndarray  # [K, N] weight codes
    expected: np.ndarray  # [M, N] accumulators after narrowing
    cycles: int  # start to done, docs/dataflow.md native ws timing
    overflow_events: int  # narrowings that changed a value, one per PE and product
    carry: np.ndarray | None = None  # [M, N] initial output buffer C when accumulating, else None

    @property
    def shape(self) -> tuple[int, int, int]:
        m, k = self.a.shape
        return m, k, int(self.w.shape[1])

    @property
    def dataflow(self) -> Dataflow:
        """The array's dataflow (``DATAFLOW`` parameter; a set without it is ``ws``)."""
        return dataflow_at(self.parameters.get("DATAFLOW", 0))

    @property
    def hardware(self) -> HardwareConfig:
        """The array these vectors were made for (rows, columns, dataflow, accumulators)."""
        p = self.parameters
        return HardwareConfig(
            array=ArrayConfig(rows=p["ROWS"], cols=p["COLS"], dataflow=self.dataflow.name),
            pe=PEConfig(acc_bits=p["ACC_BITS"], overflow="saturate" if p["SATURATE"] else "wrap"),
        )

    @property
    def folds(self) -> int:
        """Folds of the GEMM on the array (``hwsim.mapping.fold_count``)."""
        return fold_count(GemmShape(*self.shape), self.hardware.array)

    @property
    def addr_bits(self) -> int:
        """Address bits this GEMM needs (array_top's ADDR_BITS must be at least this).

        Every buffer's words must be addressable, and M, K and N must fit the size ports
        (``m_rows``, ``k_depth``, ``n_cols``, ``ADDR_BITS`` wide each).
        """
        return address_bits(*self.shape, self.parameters)

    def origin(self, m: int, n: int) -> str:
        """Where the array produces ``Y[m, n]``: the fold, the bottom PE and the cycle of its last write-back.

        From hwsim's register-level model (its write trace), for failure messages; slow on large GEMMs.
        """
        return gemm_origin(self.a, self.w, self.hardware, self.carry, m, n)


def gemm_origin(
    a: np.ndarray, w: np.ndarray, hw: HardwareConfig, carry: np.ndarray | None, m: int, n: int
) -> str:
    """Where ``hw``'s array makes ``Y[m, n]`` of ``(C +) A @ W``: fold, bottom PE, cycle of its last write."""
    run = run_gemm_cycles(a, w, hw, carry=carry, trace=True)
    last = [x for x in run.writes or () if (x.m, x.n) == (m, n)][-1]
    column = {"m": m, "n": n}[dataflow(hw.array.dataflow).cols_dim] % hw.array.cols
    return (
        f"fold {last.fold}, array column {column}, bottom PE ({hw.array.rows - 1}, {column}), "
        f"written in cycle {last.cycle} (0 = first after start)"
    )


# The register-level array model steps every PE every cycle; beyond hwsim.limits.PE_CYCLES (minutes of
# numpy, and far more for an RTL simulator) a vector set is refused: test the RTL on a smaller array.
NOTE_PE_CYCLES = 1_000_000_000  # from here `hwsim vectors` says up front that it will take a while


def array_model_steps(m: int, k: int, n: int, hw: HardwareConfig) -> tuple[int, int]:
    """``(cycles, PE-cycles)`` the register-level model spends on a GEMM ``[m, k] x [k, n]`` on ``hw``."""
    cycles = native_gemm_cycles(GemmShape(m=m, k=k, n=n), hw).total
    return cycles, cycles * hw.array.rows * hw.array.cols


def formats(parameters: dict[str, int]) -> tuple[IntFormat, IntFormat, IntFormat]:
    """``(a_fmt, w_fmt, acc_fmt)`` of a parameter set."""
    return (
        IntFormat(parameters["A_BITS"], bool(parameters.get("A_SIGNED", 0))),
        IntFormat(parameters["W_BITS"], bool(parameters.get("W_SIGNED", 1))),
        IntFormat(parameters["ACC_BITS"], True),
    )


def choose_image(bundle: Bundle, image: int = 0, seed: int = 0) -> np.ndarray:
    """The bundle's reference image ``image``, else a random input from ``seed``: codes ``[1, C, H, W]``."""
    spec = bundle.input_spec
    assert spec.fmt is not None
    if bundle.reference is not None:
        codes = bundle.reference.input_codes
        if not 0 <= image < len(codes):
            raise UserError(
                f"--image {image}: reference.npz holds {len(codes)} images; pick 0..{len(codes) - 1}"
            )
        return codes[image : image + 1]
    rng = np.random.default_rng(seed)
    return rng.integers(spec.fmt.min, spec.fmt.max, size=(1, *spec.shape), endpoint=True)


def gemm_parameters(hw: HardwareConfig, a_fmt: IntFormat, w_fmt: IntFormat) -> dict[str, int]:
    """The Verilog parameters of a GEMM set on ``hw`` with these operand formats (``ADDR_BITS`` aside)."""
    params = verilog_parameters(hw, a_bits=a_fmt.bits, w_bits=w_fmt.bits, a_signed=a_fmt.signed)
    return {**params, "W_SIGNED": 1}


def address_bits(m: int, k: int, n: int, parameters: dict[str, int]) -> int:
    """Address bits a GEMM ``[m, k] x [k, n]`` needs on the array of ``parameters`` (array_top's ADDR_BITS).

    Every buffer's words must be addressable (the dataflow's :class:`BufferLayout` says how many),
    and M, K and N must fit the size ports (``m_rows``, ``k_depth``, ``n_cols``, ``ADDR_BITS`` wide).
    """
    layout = buffer_layout(dataflow_at(parameters.get("DATAFLOW", 0)))
    rows, cols = parameters["ROWS"], parameters["COLS"]
    words = max(
        layout.abuf(np.zeros((m, k), np.int64), rows, cols).shape[0],
        layout.wbuf(np.zeros((k, n), np.int64), rows, cols).shape[0],
        layout.obuf(np.zeros((m, n), np.int64), rows, cols).shape[0],
        2,
    )
    return max(1, (words - 1).bit_length(), m.bit_length(), k.bit_length(), n.bit_length())


def make_vector_set(
    a: np.ndarray,
    w: np.ndarray,
    hw: HardwareConfig,
    *,
    a_fmt: IntFormat,
    w_fmt: IntFormat,
    name: str = "gemm",
    carry: np.ndarray | None = None,
) -> VectorSet:
    """Stimulus ``A``, ``W`` on ``hw`` with hwsim's expected accumulators, cycles and overflow events.

    The expected values, cycles and overflow events come from hwsim's register-level array model
    (:func:`hwsim.systolic.run_gemm_cycles`); its values must equal the emulator's GEMM
    (:func:`hwsim.gemm.gemm_exact`) and its cycles the analytic count (:mod:`hwsim.timing`), so
    one vector set holds all three levels' answer. ``carry`` (``[M, N]`` accumulator codes)
    makes it an accumulating GEMM ``Y = C + A * W`` (array_top's ``accumulate``); its values are
    then checked against hwsim's vectorized executor (:func:`hwsim.systolic.execute_gemm`) instead.
    """
    if not w_fmt.signed:
        raise UserError(
            f"{name}: weights must be signed codes (got {w_fmt}); the contract has signed weights"
        )
    a = np.asarray(a, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0] or 0 in a.shape or w.shape[1] == 0:
        raise UserError(f"{name}: A {a.shape} and W {w.shape} do not form a GEMM [M, K] x [K, N]")
    a_fmt.check(a, f"{name}: activation codes")
    w_fmt.check(w, f"{name}: weight codes")
    params = gemm_parameters(hw, a_fmt, w_fmt)
    acc = hw.pe.acc_format
    m, k = a.shape
    n = w.shape[1]
    if carry is not None:
        carry = np.asarray(carry, dtype=np.int64)
        if carry.shape != (m, n):
            raise UserError(f"{name}: carry {carry.shape} must have the output's shape [M, N] = {(m, n)}")
        acc.check(carry, f"{name}: carried accumulators")
    cycles, steps = array_model_steps(m, k, n, hw)
    limit = PE_CYCLES.value()
    if steps > limit:
        raise VectorError(
            f"{name}: GEMM M={m} K={k} N={n} on {hw.array.rows}x{hw.array.cols} PEs runs {cycles} cycles, "
            f"{steps:.2e} PE-cycles in the register-level array model, over the limit of "
            f"{limit:.2e}; vectors are for RTL simulation, where this array would take far longer: use "
            f"a smaller array (rows x cols) in the --hw file, or {PE_CYCLES.how_to_raise()}"
        )
    run = run_gemm_cycles(a, w, hw, carry=carry)
    if carry is None:
        emulated = gemm_exact(a, w, acc, hw.pe.overflow).acc
    else:
        emulated = execute_gemm(a, w, hw, carry=carry).values
    gemm = GemmShape(m=m, k=k, n=n)
    analytic = native_gemm_cycles(gemm, hw).total
    if carry is not None:
        analytic += dataflow(hw.array.dataflow).carry_load(gemm, hw.array)
    if not np.array_equal(run.values, emulated) or run.total_cycles != analytic:
        raise RuntimeError(
            f"{name}: hwsim's levels disagree (array model vs emulator values equal: "
            f"{np.array_equal(run.values, emulated)}; cycles {run.total_cycles} vs analytic {analytic})"
        )
    return VectorSet(name, params, a, w, run.values, run.total_cycles, run.overflow_events, carry)


# --- words -----------------------------------------------------------------------------------


_CHUNK_BITS = 1 << 24  # bits unpacked at once while packing or unpacking words (bounded memory)


def pack_words(lanes: np.ndarray, bits: int) -> list[int]:
    """``[words, lanes]`` integer codes -> one Python int per word, lane ``i`` at bits ``i*bits``."""
    lanes = np.asarray(lanes, dtype=np.int64)
    shifts = np.arange(bits, dtype=np.uint64)
    step = max(1, _CHUNK_BITS // max(1, lanes.shape[1] * bits))
    words: list[int] = []
    # Each lane's low ``bits`` bits (two's complement), least significant first, packed into
    # little-endian bytes: linear in the word's width (a shift-and-or per lane is quadratic).
    for start in range(0, lanes.shape[0], step):
        u = lanes[start : start + step].astype(np.uint64)
        planes = ((u[:, :, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        packed = np.packbits(planes.reshape(u.shape[0], -1), axis=1, bitorder="little")
        words += [int.from_bytes(row.tobytes(), "little") for row in packed]
    return words


def unpack_words(words: list[int], lanes: int, fmt: IntFormat) -> np.ndarray:
    """Inverse of :func:`pack_words`: ``[len(words), lanes]`` int64 codes of ``fmt``."""
    bits = fmt.bits
    width = lanes * bits
    nbytes = (width + 7) // 8
    mask = (1 << width) - 1
    weights = np.left_shift(np.uint64(1), np.arange(bits, dtype=np.uint64))
    out = np.empty((len(words), lanes), dtype=np.int64)
    step = max(1, _CHUNK_BITS // max(1, width))
    for start in range(0, len(words), step):
        chunk = words[start : start + step]
        raw = np.frombuffer(b"".join((int(w) & mask).to_bytes(nbytes, "little") for w in chunk), np.uint8)
        planes = np.unpackbits(raw.reshape(len(chunk), nbytes), axis=1, bitorder="little")[:, :width]
        u = (planes.reshape(len(chunk), lanes, bits).astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)
        if fmt.signed:  # sign-extend: the lane's top bit to bit 63, then an arithmetic shift back
            spare = np.uint64(64 - bits)
            out[start : start + len(chunk)] = (u << spare).view(np.int64) >> np.int64(64 - bits)
        else:
            out[start : start + len(chunk)] = u.view(np.int64)
    return out


def _fold_major(x: np.ndarray, width: int) -> np.ndarray:
    """X [M, L] -> lanes ``[F*M, width]``, ``F = ceil(L / width)``: zero-padded to whole folds, fold-major."""
    m, length = x.shape
    folds = math.ceil(length / width)
    padded = np.zeros((m, folds * width), dtype=np.int64)
    padded[:, :length] = x
    return padded.reshape(m, folds, width).transpose(1, 0, 2).reshape(folds * m, width)


def _tiles(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """X [K, P] -> lanes ``[PF*KF*rows, cols]``: ``rows x cols`` tiles, P-fold outer, K-fold inner, row j."""
    k, n = x.shape
    kf, nf = math.ceil(k / rows), math.ceil(n / cols)
    padded = np.zeros((kf * rows, nf * cols), dtype=np.int64)
    padded[:k, :n] = x
    return padded.reshape(kf * rows, nf, cols).transpose(1, 0, 2).reshape(nf * kf * rows, cols)


Image = Callable[[np.ndarray, int, int], np.ndarray]  # (matrix, ROWS, COLS) -> buffer words as lanes


@dataclass(frozen=True)
class BufferLayout:
    """Where one machine's array_top holds A [M, K], W [K, N] and Y [M, N] (also C) in its three buffers.

    Each function maps the matrix and the array's ``ROWS``, ``COLS`` to the buffer's words as
    lanes ``[words, lanes]`` (lane ``i`` at bits ``i * lane_bits``); :func:`from_image` inverts any of them.
    """

    abuf: Image
    wbuf: Image
    obuf: Image


# The stationary operand of a dataflow (hwsim.systolic.MACHINE_LAYOUTS) -> array_top's buffer layout.
BUFFER_LAYOUTS: dict[str, BufferLayout] = {
    # ws: A streamed by K-folds (word kf*M + m), W in R x C tiles (N-fold outer), Y by N-folds (nf*M + m)
    "W": BufferLayout(
        abuf=lambda a, rows, cols: _fold_major(a, rows),
        wbuf=lambda w, rows, cols: _tiles(w, rows, cols),
        obuf=lambda y, rows, cols: _fold_major(y, cols),
    ),
    # is: the ws core on Y^T = W^T A^T: A^T in R x C tiles (M-fold outer: word (mf*KF + kf)*R + j),
    # W^T streamed by K-folds (word kf*N + n, lane r = W[kf*R + r, n]), Y^T by M-folds (word mf*N + n)
    "A": BufferLayout(
        abuf=lambda a, rows, cols: _tiles(a.T, rows, cols),
        wbuf=lambda w, rows, cols: _fold_major(w.T, rows),
        obuf=lambda y, rows, cols: _fold_major(y.T, cols),
    ),
    # os: A by M-folds of rows (word mf*K + k, lane r = A[mf*R + r, k]), W by N-folds (word nf*K + k,
    # lane c = W[k, nf*C + c]), Y by N-folds (word nf*M + m), as ws
    "Y": BufferLayout(
        abuf=lambda a, rows, cols: _fold_major(a.T, rows),
        wbuf=lambda w, rows, cols: _fold_major(w, cols),
        obuf=lambda y, rows, cols: _fold_major(y, cols),
    ),
}


def buffer_layout(flow: Dataflow) -> BufferLayout:
    """array_top's buffer layout for ``flow`` (every dataflow with ``rtl=True`` has one)."""
    try:
        return BUFFER_LAYOUTS[flow.stationary]
    except KeyError:
        raise UserError(
            f"dataflow {flow.name!r}: no RTL buffer layout for a stationary {flow.stationary} "
            f"(hwsim.vectors.BUFFER_LAYOUTS has {sorted(BUFFER_LAYOUTS)})"
        ) from None


def from_image(image: Image, lanes: np.ndarray, shape: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    """Inverse of a :class:`BufferLayout` function: buffer lanes -> the ``shape`` matrix they hold.

    The layout of the matrix of element numbers ``1 .. size`` says which lane holds which element
    (0: padding). A lane array of another shape than the layout's is a :class:`VectorError`.
    """
    index = image(np.arange(1, shape[0] * shape[1] + 1, dtype=np.int64).reshape(shape), rows, cols)
    if index.shape != lanes.shape:
        raise VectorError(
            f"{lanes.shape[0]} words of {lanes.shape[1]} lanes do not hold a {shape[0]} x {shape[1]} "
            f"matrix on a {rows} x {cols} array (the layout has {index.shape[0]} words of "
            f"{index.shape[1]} lanes); regenerate the vectors"
        )
    flat = np.zeros(shape[0] * shape[1], dtype=np.int64)
    used = index > 0
    flat[index[used] - 1] = lanes[used]
    return flat.reshape(shape)


def buffer_images(vs: VectorSet) -> dict[str, np.ndarray]:
    """``vs``'s buffer contents as lanes: ``abuf``, ``wbuf``, ``expected_obuf`` (and ``carry_obuf``)."""
    layout = buffer_layout(vs.dataflow)
    rows, cols = vs.parameters["ROWS"], vs.parameters["COLS"]
    images = {
        "abuf": layout.abuf(vs.a, rows, cols),
        "wbuf": layout.wbuf(vs.w, rows, cols),
        "expected_obuf": layout.obuf(vs.expected, rows, cols),
    }
    if vs.carry is not None:
        images["carry_obuf"] = layout.obuf(vs.carry, rows, cols)
    return images


# --- files -----------------------------------------------------------------------------------


def _hex_lines(words: list[int], bits: int) -> str:
    digits = max(1, math.ceil(bits / 4))
    return "".join(f"{word:0{digits}x}\n" for word in words)


def write_vectors(vs: VectorSet, out_dir: str | os.PathLike[str] | Output) -> Path:
    """Write ``vs`` to ``out_dir``, published whole by the output policy (hwsim.output)."""
    out = Path(out_dir)
    p = vs.parameters
    a_fmt, w_fmt, acc_fmt = formats(p)
    m, k, n = vs.shape
    lane_formats = {"abuf": a_fmt, "wbuf": w_fmt}
    files = {key: (lanes, lane_formats.get(key, acc_fmt)) for key, lanes in buffer_images(vs).items()}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "gemm",
        "name": vs.name,
        "parameters": p,
        "dataflow": vs.dataflow.name,
        "gemm": {"m": m, "k": k, "n": n, "folds": vs.folds},
        "formats": {
            "a": {"bits": a_fmt.bits, "signed": a_fmt.signed},
            "w": {"bits": w_fmt.bits, "signed": w_fmt.signed},
            "acc": {"bits": acc_fmt.bits, "signed": True},
        },
        "overflow": "saturate" if p["SATURATE"] else "wrap",
        "addr_bits": vs.addr_bits,
        "accumulate": vs.carry is not None,
        "files": {},
        "expected": {"cycles": vs.cycles, "overflow_events": vs.overflow_events},
    }
    with publish_directory(out_dir, VECTORS) as tmp:
        for key, (lanes, fmt) in files.items():
            word_bits = lanes.shape[1] * fmt.bits
            (tmp / f"{key}.hex").write_text(_hex_lines(pack_words(lanes, fmt.bits), word_bits))
            manifest["files"][key] = {
                "path": f"{key}.hex",
                "words": int(lanes.shape[0]),
                "word_bits": word_bits,
                "lanes": int(lanes.shape[1]),
                "lane_bits": fmt.bits,
                "signed": fmt.signed,
            }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_hex(path: Path, expected_words: int) -> list[int]:
    """The words of a ``$readmemh`` file (one hex word per line)."""
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as err:
        raise VectorError(
            f"{path}: cannot read ({err.strerror}); regenerate the vectors with `hwsim vectors`"
        ) from None
    if len(lines) != expected_words:
        raise VectorError(
            f"{path}: {len(lines)} words, the manifest says {expected_words}; regenerate the vectors"
        )
    try:
        return [int(ln, 16) for ln in lines]
    except ValueError as err:
        raise VectorError(f"{path}: not a hex word per line ({err})") from None


def manifest_kind(manifest: dict[str, Any], where: object = MANIFEST) -> str:
    """The ``kind`` of a parsed manifest: ``gemm`` (also when absent, as in older sets) or ``requant``."""
    kind = manifest.get("kind", "gemm")
    if kind not in KINDS:
        raise VectorError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}; regenerate the vectors")
    return str(kind)


def _load_manifest(d: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except OSError:
        raise VectorError(f"{d}: no {MANIFEST}; pass a directory written by `hwsim vectors`") from None
    except json.JSONDecodeError as err:
        raise VectorError(f"{d / MANIFEST}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise VectorError(
            f"{d / MANIFEST}: not a vector set manifest (a JSON object); regenerate the vectors"
        )
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise VectorError(
            f"{d / MANIFEST}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}"
        )
    return manifest


_FILE = {"path": str, "words": int, "lanes": int}
# The keys a manifest of each kind must hold, with their types (nested dicts are nested schemas).
MANIFEST_SCHEMA: dict[str, dict[str, Any]] = {
    "gemm": {
        "name": str,
        "parameters": dict,
        "gemm": {"m": int, "k": int, "n": int},
        "addr_bits": int,
        "files": {"abuf": _FILE, "wbuf": _FILE, "expected_obuf": _FILE},
        "expected": {"cycles": int, "overflow_events": int},
    },
    "requant": {
        "name": str,
        "parameters": dict,
        "rounding": str,
        "function": str,
        "inputs": int,
        "formats": {"out": dict},
        "shape": list,
        "elements": int,
        "files": {"stimulus": {"path": str}},
        "expected": {"clamped": int},
    },
}
MANIFEST_PARAMETERS: dict[str, tuple[str, ...]] = {
    "gemm": ("ROWS", "COLS", "A_BITS", "W_BITS", "ACC_BITS"),
    "requant": ("X_BITS", "MULT_BITS"),
}


def _type_ok(value: object, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, expected)


def _check_schema(value: dict[str, Any], schema: dict[str, Any], where: str, prefix: str) -> None:
    for key, expected in schema.items():
        name = f"{prefix}{key}"
        if key not in value:
            raise VectorError(f"{where}: no {name!r}; regenerate the vectors with `hwsim vectors`")
        if isinstance(expected, dict):
            if not isinstance(value[key], dict):
                raise VectorError(f"{where}: {name!r} is a {type(value[key]).__name__}, expected an object")
            _check_schema(value[key], expected, where, f"{name}.")
        elif not _type_ok(value[key], expected):
            shown = "a non-negative integer" if expected is int else f"a {expected.__name__}"
            raise VectorError(
                f"{where}: {name!r} is {value[key]!r:.40}, expected {shown}; regenerate the vectors"
            )


def check_manifest(manifest: dict[str, Any], directory: Path) -> str:
    """The kind of a parsed manifest after checking every key its readers use, and that its files exist.

    ``parameters`` must map the Verilog parameter names to integers; a file must be a plain name
    inside ``directory``.
    """
    where = str(directory / MANIFEST)
    kind = manifest_kind(manifest, where)
    _check_schema(manifest, MANIFEST_SCHEMA[kind], where, "")
    params = manifest["parameters"]
    bad = [k for k, v in params.items() if not _type_ok(v, int)]
    absent = [k for k in MANIFEST_PARAMETERS[kind] if k not in params]
    if bad or absent:
        raise VectorError(
            f"{where}: 'parameters' lacks {absent} or has non-integer {bad[:5]}; "
            f"expected integers for at least {list(MANIFEST_PARAMETERS[kind])}; regenerate the vectors"
        )
    files = dict(manifest["files"])
    if kind == "gemm" and manifest.get("accumulate"):
        if not isinstance(files.get("carry_obuf"), dict):
            raise VectorError(f"{where}: 'accumulate' is set but 'files' has no carry_obuf; regenerate")
        _check_schema(files["carry_obuf"], _FILE, where, "files.carry_obuf.")
    for key, info in files.items():
        path = info.get("path") if isinstance(info, dict) else None
        if not isinstance(path, str) or Path(path).name != path or path in ("", ".", ".."):
            raise VectorError(f"{where}: files.{key}.path {path!r:.60} is not a file name in {directory}")
        if not (directory / path).is_file():
            raise VectorError(f"{where}: files.{key}: {directory / path} is missing; regenerate the vectors")
    return kind


def _manifest_of_kind(directory: str | os.PathLike[str], kind: str) -> tuple[Path, dict[str, Any]]:
    """The manifest of a vector set directory that must be of ``kind`` (``gemm`` or ``requant``)."""
    d = Path(directory)
    manifest = _load_manifest(d)
    found = check_manifest(manifest, d)
    if found != kind:
        reader = {"gemm": "read_vectors", "requant": "read_requant_vectors"}[found]
        raise VectorError(f"{d}: a {found} vector set, not a {kind} one; read it with {reader}")
    return d, manifest


def read_vectors(directory: str | os.PathLike[str]) -> VectorSet:
    """Read a directory written by :func:`write_vectors` back into a :class:`VectorSet`."""
    d, manifest = _manifest_of_kind(directory, "gemm")
    p = {key: int(v) for key, v in manifest["parameters"].items()}
    a_fmt, w_fmt, acc_fmt = formats(p)
    g = manifest["gemm"]
    m, k, n = int(g["m"]), int(g["k"]), int(g["n"])
    lanes: dict[str, np.ndarray] = {}
    keys = ["abuf", "wbuf", "expected_obuf"] + (["carry_obuf"] if manifest.get("accumulate") else [])
    for key in keys:
        fmt = {"abuf": a_fmt, "wbuf": w_fmt}.get(key, acc_fmt)
        if key not in manifest.get("files", {}):
            raise VectorError(f"{d / MANIFEST}: no entry for {key}.hex under 'files'; regenerate the vectors")
        info = manifest["files"][key]
        words = read_hex(d / info["path"], int(info["words"]))
        lanes[key] = unpack_words(words, int(info["lanes"]), fmt)
    rows, cols = p["ROWS"], p["COLS"]
    try:
        layout = buffer_layout(dataflow_at(p.get("DATAFLOW", 0)))
        a = from_image(layout.abuf, lanes["abuf"], (m, k), rows, cols)
        w = from_image(layout.wbuf, lanes["wbuf"], (k, n), rows, cols)
        y = from_image(layout.obuf, lanes["expected_obuf"], (m, n), rows, cols)
        carry = None
        if "carry_obuf" in lanes:
            carry = from_image(layout.obuf, lanes["carry_obuf"], (m, n), rows, cols)
    except UserError as err:
        raise VectorError(f"{d / MANIFEST}: {err}") from None
    exp = manifest["expected"]
    return VectorSet(
        str(manifest["name"]), p, a, w, y, int(exp["cycles"]), int(exp["overflow_events"]), carry
    )


# --- requantizer sets ------------------------------------------------------------------------


@dataclass(frozen=True)
class RequantVectorSet:
    """Stimulus and expected output codes of one requantizer, one element per requant.v cycle.

    Element ``j`` is the output at ``np.unravel_index(j, shape)`` (``shape`` = ``[N, C, ...]``, the
    node's output over the images run); its channel's constants are in the stimulus beside it.
    """

    name: str
    parameters: dict[str, int]  # requant.v's parameters (hwsim.hwconfig.requant_parameters)
    rounding: str  # one of hwsim.fixed.ROUNDING_MODES
    function: str  # clamp | sign
    out_format: CodeFormat  # the node's output format (lattice-aware)
    inputs: int  # 1 or 2
    shape: tuple[int, ...]
    stimulus: dict[str, np.ndarray]  # REQUANT_FIELDS -> int64 [elements]
    expected: np.ndarray  # int64 [elements]: the output codes

    @property
    def elements(self) -> int:
        return int(self.expected.size)

    def fixed_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, clamped)`` that hwsim.fixed computes from the stimulus (each element its own channel)."""
        return stimulus_codes(self.stimulus, self.out_format.min, self.out_format.max, self.rounding)

    @property
    def clamped(self) -> int:
        """How many elements the clamp changed."""
        return int(self.fixed_codes()[1].sum())


def stimulus_codes(
    s: dict[str, np.ndarray], lo: int, hi: int, rounding: str
) -> tuple[np.ndarray, np.ndarray]:
    """requant.v's port stimulus -> ``(codes, clamped)`` by hwsim.fixed (each element its own channel).

    ``lo``/``hi`` is the output range (the lattice's), ``rounding`` the mode; where ``func_sign``
    is set the code is ``sign`` of the rounded sum and nothing counts as clamped.
    """
    v = requantize_sum(
        [s["x0"], s["x1"]],
        [s["m0"], s["m1"]],
        s["shift"],
        channel_axis=0,
        biases=[s["b0"], s["b1"]],
        offset=s["offset"],
        rounding=rounding,
    )
    clipped = np.clip(v, lo, hi)
    is_sign = s["func_sign"] != 0
    return np.where(is_sign, sign(v), clipped), (clipped != v) & ~is_sign


def _input_bits(bundle: Bundle, tensor: str, config: EmulatorConfig) -> int:
    """Two's-complement width of a requantizer input: its accumulator's, or its codes' (+1 if unsigned)."""
    spec = bundle.tensors[tensor]
    if spec.kind == "acc":
        producer = bundle.producer(tensor)
        assert producer is not None
        return config.layer_acc_formats(bundle)[producer.name].bits
    assert spec.fmt is not None
    return int(spec.fmt.bits) + (0 if spec.fmt.signed else 1)


def make_requant_vector_set(
    bundle: Bundle,
    node: str,
    input_codes: np.ndarray,
    config: EmulatorConfig | None = None,
    *,
    name: str | None = None,
) -> RequantVectorSet:
    """The requantizer ``node`` of ``bundle`` on the emulator's run of ``input_codes`` ``[N, C, H, W]``.

    The stimulus is what the node reads in that run (accumulators narrowed as ``config`` says,
    a residual branch's codes) with each element's channel constants (bias, multiplier, shift,
    offset; 0 where the node has none); the expected codes are the emulator's output of the node,
    which must equal hwsim.fixed's requantizer on the stimulus with the node's rounding mode
    (checked here). requant.v takes one or two inputs; a node with more is refused.
    """
    config = config or EmulatorConfig()
    requants = [n.name for n in bundle.nodes if isinstance(n, RequantNode)]
    if node not in requants:
        raise UserError(f"no requant node named {node!r}; requant nodes: {', '.join(requants) or '(none)'}")
    rq = bundle.node(node)
    assert isinstance(rq, RequantNode)
    label = name or rq.name
    if len(rq.inputs) not in (1, 2):
        raise UserError(
            f"requant node {rq.name!r} has {len(rq.inputs)} inputs; requant.v adds one or two "
            "(x0, x1), so this node has no vector set"
        )
    out_fmt = bundle.tensors[rq.output].fmt
    assert out_fmt is not None
    x_bits = max(_input_bits(bundle, i.tensor, config) for i in rq.inputs)
    params = requant_parameters(
        out_fmt, rq.rounding, x_bits=x_bits, mult_bits=bundle.meta.mult_bits, function=rq.function
    )
    run = emulate(bundle, input_codes, config, keep=[*rq.reads, rq.output])
    shape = tuple(int(d) for d in run.tensors[rq.output].shape)
    channel = np.broadcast_to(np.arange(shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2)), shape).reshape(
        -1
    )
    zeros = np.zeros(channel.size, dtype=np.int64)

    def per_element(values: np.ndarray | None) -> np.ndarray:
        return zeros.copy() if values is None else np.asarray(values, dtype=np.int64)[channel]

    s: dict[str, np.ndarray] = {}
    for k, item in enumerate(rq.inputs):
        s[f"x{k}"] = run.tensors[item.tensor].astype(np.int64).reshape(-1)
        s[f"b{k}"] = per_element(item.bias)
        s[f"m{k}"] = per_element(item.multiplier)
    for k in range(len(rq.inputs), 2):
        s[f"x{k}"], s[f"b{k}"], s[f"m{k}"] = zeros.copy(), zeros.copy(), zeros.copy()
    s["shift"] = per_element(rq.shift)
    s["func_sign"] = np.full(channel.size, int(rq.function == "sign"), dtype=np.int64)
    s["offset"] = per_element(rq.offset)
    stimulus = {key: s[key] for key in REQUANT_FIELDS}
    for key, fmt in (
        ("x0", IntFormat(x_bits, True)),
        ("x1", IntFormat(x_bits, True)),
        ("b0", IntFormat(32, True)),
        ("b1", IntFormat(32, True)),
        ("m0", IntFormat(params["MULT_BITS"], True)),
        ("m1", IntFormat(params["MULT_BITS"], True)),
    ):
        if stimulus[key].size and not fmt.contains(stimulus[key]):
            raise UserError(f"{label}: {key} leaves {fmt}, the width requant.v is built with")
    vs = RequantVectorSet(
        label,
        params,
        rq.rounding,
        rq.function,
        out_fmt,
        len(rq.inputs),
        shape,
        stimulus,
        run.tensors[rq.output].astype(np.int64).reshape(-1),
    )
    fixed, _ = vs.fixed_codes()
    if not np.array_equal(fixed, vs.expected):
        bad = np.flatnonzero(fixed != vs.expected)
        j = int(bad[0])
        raise RuntimeError(
            f"{label}: hwsim's levels disagree: the emulator's codes of {rq.output!r} differ from "
            f"hwsim.fixed's requantizer (rounding {rq.rounding}) at {bad.size} of {vs.elements} elements; "
            f"first at {tuple(int(i) for i in np.unravel_index(j, shape))}: "
            f"{int(vs.expected[j])} vs {int(fixed[j])}"
        )
    return vs


def write_requant_vectors(vs: RequantVectorSet, out_dir: str | os.PathLike[str] | Output) -> Path:
    """Write ``vs`` to ``out_dir`` (``manifest.json`` and ``stimulus.npz``, published whole)."""
    out = Path(out_dir)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "requant",
        "name": vs.name,
        "parameters": vs.parameters,
        "rounding": vs.rounding,
        "function": vs.function,
        "inputs": vs.inputs,
        "formats": {"out": vs.out_format.to_yaml()},
        "shape": list(vs.shape),
        "elements": vs.elements,
        "files": {"stimulus": {"path": STIMULUS, "fields": [*REQUANT_FIELDS, "expected", "shape"]}},
        "expected": {"clamped": vs.clamped},
    }
    with publish_directory(out_dir, VECTORS) as tmp:
        with (tmp / STIMULUS).open("wb") as f:
            np.savez(f, **vs.stimulus, expected=vs.expected, shape=np.array(vs.shape, dtype=np.int64))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_requant_stimulus(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A stimulus .npz: :data:`REQUANT_FIELDS` (``offset`` 0 when absent), ``expected`` and ``shape``
    when present, each field int64 ``[elements]``; a missing field or a length mismatch is a VectorError."""
    p = Path(path)
    try:
        with np.load(p) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise VectorError(f"{p}: cannot read the stimulus ({err}); regenerate the vectors") from None
    arrays.setdefault("offset", np.zeros_like(arrays.get("x0", np.zeros(0, dtype=np.int64))))
    missing = [key for key in REQUANT_FIELDS if key not in arrays]
    if missing:
        raise VectorError(f"{p}: no {', '.join(missing)}; a stimulus holds {', '.join(REQUANT_FIELDS)}")
    out: dict[str, np.ndarray] = {}
    for key in (*REQUANT_FIELDS, "expected"):
        if key not in arrays:
            continue
        arr = arrays[key]
        if arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.shape != arrays["x0"].shape:
            raise VectorError(
                f"{p}: {key} is {arr.dtype} {list(arr.shape)}; every field is an integer vector of "
                f"{arrays['x0'].size} elements"
            )
        out[key] = arr.astype(np.int64)
    if "shape" in arrays:
        out["shape"] = np.asarray(arrays["shape"], dtype=np.int64).reshape(-1)
    return out


def read_requant_vectors(directory: str | os.PathLike[str]) -> RequantVectorSet:
    """Read a directory written by :func:`write_requant_vectors` back into a :class:`RequantVectorSet`."""
    d, manifest = _manifest_of_kind(directory, "requant")
    try:
        params = {key: int(v) for key, v in manifest["parameters"].items()}
        out_format = CodeFormat(**manifest["formats"]["out"])
        shape = tuple(int(v) for v in manifest["shape"])
        path = d / manifest["files"]["stimulus"]["path"]
        rounding, function, inputs = (
            str(manifest["rounding"]),
            str(manifest["function"]),
            int(manifest["inputs"]),
        )
        elements = int(manifest["elements"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise VectorError(
            f"{d / MANIFEST}: a requant manifest without a valid {err}; regenerate it"
        ) from None
    data = read_requant_stimulus(path)
    if "expected" not in data:
        raise VectorError(f"{path}: no expected codes; regenerate the vectors")
    if data["expected"].size != elements or math.prod(shape) != elements:
        raise VectorError(
            f"{path}: {data['expected'].size} elements, the manifest says {elements} (shape {list(shape)}); "
            "regenerate the vectors"
        )
    stimulus = {key: data[key] for key in REQUANT_FIELDS}
    return RequantVectorSet(
        str(manifest["name"]),
        params,
        rounding,
        function,
        out_format,
        inputs,
        shape,
        stimulus,
        data["expected"],
    )
