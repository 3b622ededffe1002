"""How a matrix travels as beats (stream transfers, port words): blocks of elements, one block a beat.

Place in the flow: ``rtl_models.kit.work`` makes each work item's matrices, and the cocotb drivers
(``rtl_models.kit.protocols``) turn them into words with a :class:`BlockLayout` and the output words
back into a matrix, knowing for every element the beat that carried it. Pure numpy, no cocotb.

A layout cuts the matrix into blocks of ``rows x cols`` elements (the last blocks padded with 0),
visits the blocks row by row (``order="row"``) or column by column (``order="col"``), and packs
each block's elements into one word, element ``i`` of the block (row-major within the block, or
column-major with ``lanes="col"``) at bits ``i*bits`` (``lane0="lsb"``) or with element 0 in the
top lane (``lane0="msb"``). Examples: a whole matrix in one port word is ``BlockLayout(M, N)``; a
vector in beats of 4 elements is ``BlockLayout(1, 4)`` over the vector as a ``[1, K]`` matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.errors import UserError
from hwsim.fixed import IntFormat
from hwsim.vectors import pack_words, unpack_words

ORDERS: tuple[str, ...] = ("row", "col")
LANE0: tuple[str, ...] = ("lsb", "msb")


@dataclass(frozen=True)
class BlockLayout:
    """Blocks of ``rows x cols`` elements, one per beat; see the module docstring."""

    rows: int
    cols: int
    order: str = "row"
    lanes: str = "row"
    lane0: str = "lsb"

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"block {name}: {value!r} is not a positive integer")
        if self.order not in ORDERS or self.lanes not in ORDERS:
            raise UserError(f"block order/lanes: {self.order!r}/{self.lanes!r}; expected one of {ORDERS}")
        if self.lane0 not in LANE0:
            raise UserError(f"lane0: {self.lane0!r} is not one of {LANE0}")

    @property
    def width(self) -> int:
        """Elements per beat."""
        return self.rows * self.cols

    def beat_count(self, shape: tuple[int, int]) -> int:
        return math.ceil(shape[0] / self.rows) * math.ceil(shape[1] / self.cols)

    def positions(self, shape: tuple[int, int]) -> np.ndarray:
        """``[beats, width, 2]``: the ``(row, col)`` of the matrix element in each lane, -1 in padding."""
        r, c = shape
        br, bc = math.ceil(r / self.rows), math.ceil(c / self.cols)
        blocks = [(i, j) for i in range(br) for j in range(bc)]
        if self.order == "col":
            blocks = [(i, j) for j in range(bc) for i in range(br)]
        ii, jj = np.meshgrid(np.arange(self.rows), np.arange(self.cols), indexing="ij")
        if self.lanes == "col":
            ii, jj = ii.T, jj.T
        lane_r, lane_c = ii.reshape(-1), jj.reshape(-1)
        if self.lane0 == "msb":
            lane_r, lane_c = lane_r[::-1], lane_c[::-1]
        out = np.full((len(blocks), self.width, 2), -1, dtype=np.int64)
        for b, (i, j) in enumerate(blocks):
            rr, cc = i * self.rows + lane_r, j * self.cols + lane_c
            inside = (rr < r) & (cc < c)
            out[b, inside, 0], out[b, inside, 1] = rr[inside], cc[inside]
        return out

    def lanes_of(self, x: np.ndarray) -> np.ndarray:
        """``[beats, width]`` codes of matrix ``x`` (0 in padding lanes)."""
        x = np.asarray(x, dtype=np.int64)
        pos = self.positions(x.shape)
        inside = pos[..., 0] >= 0
        out = np.zeros(pos.shape[:2], dtype=np.int64)
        out[inside] = x[pos[..., 0][inside], pos[..., 1][inside]]
        return out

    def words(self, x: np.ndarray, fmt: IntFormat) -> list[int]:
        """One integer per beat: matrix ``x``'s codes of ``fmt`` packed as two's complement lanes."""
        fmt.check(x, "a matrix sent to the design")
        return pack_words(self.lanes_of(x), fmt.bits)

    def matrix(self, words: list[int], shape: tuple[int, int], fmt: IntFormat) -> np.ndarray:
        """The inverse of :meth:`words`: a ``shape`` matrix from beat words (padding lanes ignored)."""
        lanes = unpack_words(words, self.width, fmt)
        pos = self.positions(shape)[: len(words)]
        inside = pos[..., 0] >= 0
        out = np.zeros(shape, dtype=np.int64)
        out[pos[..., 0][inside], pos[..., 1][inside]] = lanes[inside]
        return out

    def beat_of(self, shape: tuple[int, int]) -> np.ndarray:
        """``[rows, cols]``: the beat that carries each element of a ``shape`` matrix."""
        pos = self.positions(shape)
        out = np.zeros(shape, dtype=np.int64)
        for b in range(pos.shape[0]):
            inside = pos[b, :, 0] >= 0
            out[pos[b, inside, 0], pos[b, inside, 1]] = b
        return out
