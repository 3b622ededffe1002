"""RTL test vectors: one GEMM's buffer images as ``$readmemh`` hex files plus a JSON manifest, and the reader.

Place in the flow: ``hwsim vectors`` (hwsim/commands/vectors.py) and the RTL tests call
:func:`make_vector_set` (stimulus + hwsim's expected outputs, cycles and overflow counts) and
:func:`write_vectors`; the cocotb testbench rtl_models/tb_array_top.py, or any other simulator's
testbench, reads them back (:func:`read_vectors`, or ``$readmemh`` on the hex files). The
word layout is the one of rtl_models/array_top.v (docs/rtl.md):

* ``abuf.hex``: word ``kf*M + m`` holds ``A[m, kf*ROWS + r]`` at bits ``r*A_BITS`` (``r < ROWS``);
* ``wbuf.hex``: word ``(nf*KF + kf)*ROWS + j`` holds ``W[kf*ROWS + j, nf*COLS + c]`` at bits ``c*W_BITS``;
* ``expected_obuf.hex``: word ``nf*M + m`` holds ``Y[m, nf*COLS + c]`` at bits ``c*ACC_BITS``;
* ``carry_obuf.hex`` (only for an accumulating GEMM ``Y = C + A * W``): ``C`` in the layout of
  ``expected_obuf.hex``, what the output buffer holds before ``start`` with ``accumulate`` high;

with ``KF = ceil(K/ROWS)``; codes outside A, W or Y are 0. Every lane is a two's-complement (or
unsigned) code of its width, one hex word per line, most significant digit first.
Nothing here imports torch or cocotb.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.atomic import replace_directory, staging_directory
from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.gemm import gemm_exact
from hwsim.hwconfig import HardwareConfig, verilog_parameters
from hwsim.mapping import GemmShape
from hwsim.systolic import execute_gemm, run_gemm_cycles
from hwsim.timing import native_gemm_cycles

FORMAT = "qnn-verify-rtl-vectors"
VERSION = 1
MANIFEST = "manifest.json"


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
    def folds(self) -> tuple[int, int]:
        """``(KF, NF)``: K-folds and N-folds."""
        m, k, n = self.shape
        return math.ceil(k / self.parameters["ROWS"]), math.ceil(n / self.parameters["COLS"])

    @property
    def addr_bits(self) -> int:
        """Address bits every buffer needs for this GEMM (array_top's ADDR_BITS must be at least this)."""
        m, _, _ = self.shape
        kf, nf = self.folds
        words = max(kf * m, nf * kf * self.parameters["ROWS"], nf * m, 2)
        return max(1, (words - 1).bit_length())

    def fold_of_column(self, n: int) -> tuple[int, int]:
        """``(nf, c)``: the N-fold and the array column that produce output column ``n``."""
        return divmod(n, self.parameters["COLS"])

    def write_cycle(self, m: int, n: int) -> int:
        """Cycle whose clock edge writes ``Y[m, n]`` in its last K-fold (0: the first cycle after start).

        The schedule of docs/dataflow.md, in the convention of hwsim.systolic's write trace.
        """
        rows, cols = self.parameters["ROWS"], self.parameters["COLS"]
        _, _, n_total = self.shape
        kf_count, _ = self.folds
        nf, c = self.fold_of_column(n)
        before = 0
        for f in range(nf * kf_count + kf_count - 1):
            nt = min(cols, n_total - (f // kf_count) * cols)
            before += rows + self.shape[0] + rows + nt - 2
        return before + rows + m + rows - 1 + c


def formats(parameters: dict[str, int]) -> tuple[IntFormat, IntFormat, IntFormat]:
    """``(a_fmt, w_fmt, acc_fmt)`` of a parameter set."""
    return (
        IntFormat(parameters["A_BITS"], bool(parameters.get("A_SIGNED", 0))),
        IntFormat(parameters["W_BITS"], bool(parameters.get("W_SIGNED", 1))),
        IntFormat(parameters["ACC_BITS"], True),
    )


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
    params = verilog_parameters(hw, a_bits=a_fmt.bits, w_bits=w_fmt.bits, a_signed=a_fmt.signed)
    params["W_SIGNED"] = 1
    acc = hw.pe.acc_format
    m, k = a.shape
    n = w.shape[1]
    if carry is not None:
        carry = np.asarray(carry, dtype=np.int64)
        if carry.shape != (m, n):
            raise UserError(f"{name}: carry {carry.shape} must have the output's shape [M, N] = {(m, n)}")
        acc.check(carry, f"{name}: carried accumulators")
    run = run_gemm_cycles(a, w, hw, carry=carry)
    if carry is None:
        emulated = gemm_exact(a, w, acc, hw.pe.overflow).acc
    else:
        emulated = execute_gemm(a, w, hw, carry=carry).values
    analytic = native_gemm_cycles(GemmShape(m=m, k=k, n=n), hw).total
    if not np.array_equal(run.values, emulated) or run.total_cycles != analytic:
        raise RuntimeError(
            f"{name}: hwsim's levels disagree (array model vs emulator values equal: "
            f"{np.array_equal(run.values, emulated)}; cycles {run.total_cycles} vs analytic {analytic})"
        )
    return VectorSet(name, params, a, w, run.values, run.total_cycles, run.overflow_events, carry)


# --- words -----------------------------------------------------------------------------------


def pack_words(lanes: np.ndarray, bits: int) -> list[int]:
    """``[words, lanes]`` integer codes -> one Python int per word, lane ``i`` at bits ``i*bits``."""
    mask = (1 << bits) - 1
    words: list[int] = []
    for row in np.asarray(lanes, dtype=np.int64).tolist():
        word = 0
        for i, value in enumerate(row):
            word |= (int(value) & mask) << (i * bits)
        words.append(word)
    return words


def unpack_words(words: list[int], lanes: int, fmt: IntFormat) -> np.ndarray:
    """Inverse of :func:`pack_words`: ``[len(words), lanes]`` int64 codes of ``fmt``."""
    bits = fmt.bits
    mask = (1 << bits) - 1
    out = np.empty((len(words), lanes), dtype=np.int64)
    for r, word in enumerate(words):
        for i in range(lanes):
            v = (int(word) >> (i * bits)) & mask
            if fmt.signed and v >> (bits - 1):
                v -= 1 << bits
            out[r, i] = v
    return out


def _fold_major(x: np.ndarray, width: int) -> np.ndarray:
    """X [M, L] -> lanes ``[F*M, width]``, ``F = ceil(L / width)``: zero-padded to whole folds, fold-major."""
    m, length = x.shape
    folds = math.ceil(length / width)
    padded = np.zeros((m, folds * width), dtype=np.int64)
    padded[:, :length] = x
    return padded.reshape(m, folds, width).transpose(1, 0, 2).reshape(folds * m, width)


def abuf_lanes(a: np.ndarray, rows: int) -> np.ndarray:
    """A [M, K] -> abuf words as lanes ``[KF*M, ROWS]`` (K-fold major)."""
    return _fold_major(a, rows)


def wbuf_lanes(w: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """W [K, N] -> wbuf words as lanes ``[NF*KF*ROWS, COLS]`` (N-fold outer, K-fold inner, row j)."""
    k, n = w.shape
    kf, nf = math.ceil(k / rows), math.ceil(n / cols)
    padded = np.zeros((kf * rows, nf * cols), dtype=np.int64)
    padded[:k, :n] = w
    return padded.reshape(kf * rows, nf, cols).transpose(1, 0, 2).reshape(nf * kf * rows, cols)


def obuf_lanes(y: np.ndarray, cols: int) -> np.ndarray:
    """Y [M, N] -> obuf words as lanes ``[NF*M, COLS]`` (N-fold major)."""
    return _fold_major(y, cols)


def y_from_obuf(lanes: np.ndarray, m: int, n: int) -> np.ndarray:
    """Inverse of :func:`obuf_lanes`: obuf lanes ``[NF*M, COLS]`` -> Y [M, N]."""
    cols = lanes.shape[1]
    nf = lanes.shape[0] // m
    return lanes.reshape(nf, m, cols).transpose(1, 0, 2).reshape(m, nf * cols)[:, :n]


# --- files -----------------------------------------------------------------------------------


def _hex_lines(words: list[int], bits: int) -> str:
    digits = max(1, math.ceil(bits / 4))
    return "".join(f"{word:0{digits}x}\n" for word in words)


def write_vectors(vs: VectorSet, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``vs`` to ``out_dir`` (replaced as a whole: written to a temporary directory, then renamed)."""
    out = Path(out_dir)
    p = vs.parameters
    a_fmt, w_fmt, acc_fmt = formats(p)
    rows, cols = p["ROWS"], p["COLS"]
    m, k, n = vs.shape
    kf, nf = vs.folds
    files = {
        "abuf": (abuf_lanes(vs.a, rows), a_fmt),
        "wbuf": (wbuf_lanes(vs.w, rows, cols), w_fmt),
        "expected_obuf": (obuf_lanes(vs.expected, cols), acc_fmt),
    }
    if vs.carry is not None:
        files["carry_obuf"] = (obuf_lanes(vs.carry, cols), acc_fmt)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "name": vs.name,
        "parameters": p,
        "gemm": {"m": m, "k": k, "n": n, "k_folds": kf, "n_folds": nf},
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
    tmp = staging_directory(out)
    try:
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
        replace_directory(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


def read_vectors(directory: str | os.PathLike[str]) -> VectorSet:
    """Read a directory written by :func:`write_vectors` back into a :class:`VectorSet`."""
    d = Path(directory)
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except OSError:
        raise VectorError(f"{d}: no {MANIFEST}; pass a directory written by `hwsim vectors`") from None
    except json.JSONDecodeError as err:
        raise VectorError(f"{d / MANIFEST}: not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise VectorError(
            f"{d / MANIFEST}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}"
        )
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
    kf, nf = math.ceil(k / rows), math.ceil(n / cols)
    a = lanes["abuf"].reshape(kf, m, rows).transpose(1, 0, 2).reshape(m, kf * rows)[:, :k]
    w = lanes["wbuf"].reshape(nf, kf * rows, cols).transpose(1, 0, 2).reshape(kf * rows, nf * cols)[:k, :n]
    y = y_from_obuf(lanes["expected_obuf"], m, n)
    carry = y_from_obuf(lanes["carry_obuf"], m, n) if "carry_obuf" in lanes else None
    exp = manifest["expected"]
    return VectorSet(
        str(manifest["name"]), p, a, w, y, int(exp["cycles"]), int(exp["overflow_events"]), carry
    )
