"""Drivers and monitors of the kit, one per protocol of ``rtl_models.kit.spec.PROTOCOLS``.

Place in the flow: inside the simulator, ``rtl_models.kit.tb`` picks the driver of the description's
protocol (:data:`DRIVERS`) and hands it the work items; the driver moves them through the design's
ports and returns what came out, element by element with the beat and cycle that carried it.

Every driver runs one loop per clock cycle: it writes the design's inputs just after the falling
edge, then waits for the read-only phase, where every handshake signal has settled for the coming
rising edge, and records the transfers that edge will make (valid and ready both high). Stress mode
(``rtl_models.kit.stress``) lowers valid and ready at random (seeded), and a watchdog ends a run
that makes no progress for ``timeout_cycles`` with a :class:`Hang` that names the item and the beat awaited.
Stream port names are resolved through cocotbext-axi's ``AxiStreamBus`` when the description uses
AXI-Stream names (``axis: true``), else taken as given.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import FallingEdge, ReadOnly

from hwsim.fixed import IntFormat
from rtl_models.kit.layout import BlockLayout
from rtl_models.kit.spec import BuffersProtocol, DutSpec, ParallelProtocol, Stream, StreamProtocol
from rtl_models.kit.stress import Stress
from rtl_models.kit.work import WorkItem

TAIL_CYCLES = 32  # cycles the output stream is watched for beats beyond the last one expected


class Hang(AssertionError):
    """The design stopped making progress (no transfer for the description's ``timeout_cycles``)."""


class Mismatch(AssertionError):
    """An output element differs from hwsim's."""


@dataclass
class Observed:
    """What came out for one item: its matrix ``y`` [m, n], and the cycle before the edge that took its
    first input and the cycle whose edge gave its last output (``last - first``: the item's cycles)."""

    y: np.ndarray
    first_cycle: int = -1
    last_cycle: int = -1
    counter: int | None = None  # the design's own cycle counter, where it has one
    overflow: int | None = None  # the design's overflow counter, where described


def lane_format(spec: DutSpec, matrix: str) -> IntFormat:
    """The code format of one lane of a matrix on the design's ports."""
    g = spec.gemm
    return {"a": g.a.fmt, "w": g.w.fmt, "y": g.acc}[matrix[0]]


def read_lanes(handle: SimHandleBase, fmt: IntFormat, wanted: np.ndarray, what: str) -> np.ndarray:
    """The lanes of a port's current word (lane ``i`` at bits ``i*bits``) as codes; an X or Z in a
    wanted lane fails, naming it (lanes holding no element may be anything)."""
    bits = str(handle.value)
    out = np.zeros(len(wanted), dtype=np.int64)
    for i, want in enumerate(wanted):
        if not want:
            continue
        hi, lo = len(bits) - i * fmt.bits, len(bits) - (i + 1) * fmt.bits
        lane = bits[max(lo, 0) : hi]
        if lo < 0 or not set(lane) <= {"0", "1"}:
            raise Mismatch(
                f"{what}, lane {i}: reads {lane!r} ({len(bits)}-bit port), not a {fmt.bits}-bit code"
            )
        u = int(lane, 2)
        out[i] = u - (1 << fmt.bits) if fmt.signed and u >> (fmt.bits - 1) else u
    return out


def element_mismatch(item: WorkItem, m: int, n: int, at: str, expected: object, actual: object) -> Mismatch:
    """The failure of one output element: the layer's element, the item's, where it was read, both values."""
    return Mismatch(
        f"{item.where()}: Y[m={item.m0 + m}, n={item.n0 + n}] of the layer (element [{m}, {n}] of the item) "
        f"on {at}: expected {int(expected)}, actual {int(actual)}"  # type: ignore[call-overload]
    )


def check_beat(
    item: WorkItem,
    matrix: str,
    layout: BlockLayout,
    beat: int,
    obs: Observed,
    read: Callable[[np.ndarray, str], np.ndarray],
    where: str,
    lane_at: Callable[[int], str],
) -> None:
    """One output beat of an item: ``read(wanted, where)`` gives its lanes; each lane's element of
    ``matrix`` (``y`` or ``y_t``) goes into ``obs.y`` and must equal the item's expected value, a
    failure naming the lane's place (``lane_at(lane)``)."""
    expected = item.matrix(matrix)
    pos = layout.positions(expected.shape)[beat]
    wanted = pos[:, 0] >= 0
    lanes = read(wanted, f"{item.where()}: {where}")
    for lane in np.flatnonzero(wanted):
        r, c = int(pos[lane, 0]), int(pos[lane, 1])
        m, n = (c, r) if matrix.endswith("_t") else (r, c)
        obs.y[m, n] = lanes[lane]
        if lanes[lane] != expected[r, c]:
            raise element_mismatch(item, m, n, lane_at(int(lane)), expected[r, c], lanes[lane])


def is_array(handle: SimHandleBase) -> bool:
    """An unpacked array port (one element per index), rather than one packed word."""
    from cocotb.handle import ArrayObject

    return isinstance(handle, ArrayObject)


def write_matrix(handle: SimHandleBase, layout: BlockLayout, x: np.ndarray, fmt: IntFormat) -> None:
    """A whole matrix onto one port: a packed word (lane ``i`` at bits ``i*bits``), or an unpacked
    array written element by element (index ``i`` = lane ``i``; whole-array writes are reversed on Icarus)."""
    lanes = layout.lanes_of(x)
    if lanes.shape[0] != 1:
        raise Mismatch(
            f"port {handle._name}: its layout cuts a matrix into {lanes.shape[0]} beats; a parallel "
            "port takes the whole matrix: give one block that holds it"
        )
    if is_array(handle):
        mask = (1 << fmt.bits) - 1
        for i, v in enumerate(lanes[0]):
            handle[i].value = int(v) & mask
    else:
        handle.value = layout.words(x, fmt)[0]


def read_elements(handle: SimHandleBase, fmt: IntFormat, wanted: np.ndarray, what: str) -> np.ndarray:
    """The elements of an unpacked array port as codes of ``fmt`` (an X or Z in a wanted one fails)."""
    out = np.zeros(len(wanted), dtype=np.int64)
    for i in np.flatnonzero(wanted):
        bits = str(handle[int(i)].value)[-fmt.bits :]
        if not set(bits) <= {"0", "1"}:
            raise Mismatch(f"{what}, element {i}: reads {bits!r}, not a {fmt.bits}-bit code")
        u = int(bits, 2)
        out[i] = u - (1 << fmt.bits) if fmt.signed and len(bits) == fmt.bits and u >> (fmt.bits - 1) else u
    return out


class Driver:
    """Common state of every protocol driver: the DUT, the cycle count, stress and the watchdog."""

    def __init__(self, dut: SimHandleBase, spec: DutSpec, stress: Stress) -> None:
        self.dut, self.spec, self.stress = dut, spec, stress
        self.rng = random.Random(stress.seed)
        self.cycle = 0
        self.idle = 0
        self._fall = FallingEdge(getattr(dut, spec.clock.port))

    def port(self, name: str) -> SimHandleBase:
        return getattr(self.dut, name)

    async def tick(self) -> None:
        """To just after the next falling edge (inputs may be written), counting cycles."""
        await self._fall
        self.cycle += 1

    def progress(self, moved: bool, waiting: str) -> None:
        self.idle = 0 if moved else self.idle + 1
        if self.idle >= self.spec.timeout_cycles:
            raise Hang(
                f"no progress for {self.idle} cycles (timeout_cycles {self.spec.timeout_cycles}) at cycle "
                f"{self.cycle}: waiting for {waiting}"
            )

    def pause(self, p: float) -> bool:
        return self.stress.enabled and self.rng.random() < p

    async def run(self, items: list[WorkItem]) -> list[Observed]:
        raise NotImplementedError


@dataclass
class _Endpoint:
    stream: Stream
    handles: dict[str, SimHandleBase]
    fmt: IntFormat
    beats: list[tuple[int, int, int, bool]] = field(default_factory=list)  # (item, beat, word, last)
    pos: int = 0
    holding: bool = False  # a beat presented and not yet taken: valid stays up (AXI-Stream's rule)


def stream_handles(dut: SimHandleBase, s: Stream) -> dict[str, SimHandleBase]:
    """The stream's signals (``data``, ``valid``, ``ready``, ``last`` where described); AXI-Stream
    names (``axis: true``) through cocotbext-axi's bus, which also finds the optional ones."""
    if s.axis:
        from cocotbext.axi import AxiStreamBus

        bus = AxiStreamBus.from_prefix(dut, s.name)
        found = {"data": bus.tdata, "valid": bus.tvalid}
        found |= {k: getattr(bus, f"t{k}") for k in ("ready", "last") if hasattr(bus, f"t{k}")}
        return found
    names = {"data": s.data, "valid": s.valid, "ready": s.ready, "last": s.last}
    return {k: getattr(dut, v) for k, v in names.items() if v is not None}


class StreamDriver(Driver):
    """Valid/ready streams: every input stream sends each item's matrix, the output stream's beats
    are matched to items in order; items follow each other back to back."""

    async def run(self, items: list[WorkItem]) -> list[Observed]:
        proto = self.spec.protocol
        assert isinstance(proto, StreamProtocol)
        ins, out = [], None
        for s in proto.streams:
            ep = _Endpoint(s, stream_handles(self.dut, s), lane_format(self.spec, s.matrix))
            if s.is_input:
                for it in items:
                    words = s.layout.words(it.matrix(s.matrix), ep.fmt)
                    ep.beats += [(it.index, b, w, b == len(words) - 1) for b, w in enumerate(words)]
                ins.append(ep)
            else:
                out = ep
        assert out is not None
        index = {it.index: i for i, it in enumerate(items)}
        observed = [Observed(np.zeros(it.expected.shape, np.int64)) for it in items]
        expected_beats = [
            (it, b)
            for it in items
            for b in range(out.stream.layout.beat_count(it.matrix(out.stream.matrix).shape))
        ]
        for ep in ins:
            ep.handles["valid"].value = 0
        got = 0
        while got < len(expected_beats):
            await self.tick()
            for ep in ins:
                live = ep.pos < len(ep.beats) and (ep.holding or not self.pause(self.stress.valid_pause))
                ep.handles["valid"].value = int(live)
                if live:
                    item, _, word, last = ep.beats[ep.pos]
                    ep.handles["data"].value = word
                    if "last" in ep.handles:
                        ep.handles["last"].value = int(last)
            ready = not self.pause(self.stress.ready_pause)
            if "ready" in out.handles:
                out.handles["ready"].value = int(ready)
            await ReadOnly()
            moved = False
            for ep in ins:
                presented = ep.pos < len(ep.beats) and bool(int(ep.handles["valid"].value))
                taken = presented and ("ready" not in ep.handles or str(ep.handles["ready"].value) == "1")
                ep.holding = presented and not taken
                if taken:
                    item = ep.beats[ep.pos][0]
                    obs = observed[index[item]]
                    # the cycle before the edge that takes the first beat: last - first spans the item
                    obs.first_cycle = self.cycle - 1 if obs.first_cycle < 0 else obs.first_cycle
                    ep.pos += 1
                    moved = True
            if str(out.handles["valid"].value) == "1" and (ready or "ready" not in out.handles):
                it, beat = expected_beats[got]
                self._collect(out, it, beat, observed[index[it.index]])
                got += 1
                moved = True
            if got < len(expected_beats):
                it, beat = expected_beats[got]
                sent = ", ".join(f"{ep.stream.name} {ep.pos}/{len(ep.beats)} beats sent" for ep in ins)
                self.progress(moved, f"{it.where()}: output beat {beat} on {out.stream.name} ({sent})")
        await self.tick()
        for ep in ins:
            ep.handles["valid"].value = 0
        await self._no_extra_beats(out, items[-1] if items else None)
        return observed

    async def _no_extra_beats(self, out: _Endpoint, last: WorkItem | None) -> None:
        """After the last expected beat, ready stays up for :data:`TAIL_CYCLES` cycles and no more
        output may come (a duplicated or spurious beat at the end would otherwise go unseen)."""
        if "ready" in out.handles:
            out.handles["ready"].value = 1
        for _ in range(TAIL_CYCLES):
            await ReadOnly()
            if str(out.handles["valid"].value) == "1":
                after = f" after {last.where()}" if last is not None else ""
                raise Mismatch(
                    f"an output beat on {out.stream.name} at cycle {self.cycle} beyond the last one "
                    f"expected{after}: the design sent more beats than the work items' outputs"
                )
            await self.tick()

    def _collect(self, ep: _Endpoint, item: WorkItem, beat: int, obs: Observed) -> None:
        s = ep.stream
        count = s.layout.beat_count(item.matrix(s.matrix).shape)
        check_beat(
            item,
            s.matrix,
            s.layout,
            beat,
            obs,
            lambda wanted, what: read_lanes(ep.handles["data"], ep.fmt, wanted, what),
            f"{s.name}, beat {beat} of {count}, cycle {self.cycle}",
            lambda lane: f"{s.name}, beat {beat} of {count}, lane {lane}, cycle {self.cycle}",
        )
        obs.last_cycle = self.cycle


class ParallelDriver(Driver):
    """All operands at once with ``in_valid`` (held until ``in_ready``, where wired); outputs read
    when ``out_valid`` is high, from the cycle after the inputs were taken; one item at a time."""

    async def run(self, items: list[WorkItem]) -> list[Observed]:
        p = self.spec.protocol
        assert isinstance(p, ParallelProtocol)
        valid = self.port(p.in_valid)
        valid.value = 0
        observed = []
        for it in items:
            while self.pause(self.stress.valid_pause):
                await self.tick()
            await self.tick()
            for x in p.inputs:
                write_matrix(
                    self.port(x.port), x.layout, it.matrix(x.matrix), lane_format(self.spec, x.matrix)
                )
            valid.value = 1
            obs = Observed(np.zeros(it.expected.shape, np.int64), first_cycle=self.cycle)
            await ReadOnly()
            while p.in_ready and str(self.port(p.in_ready).value) != "1":
                await self.tick()
                await ReadOnly()
                self.progress(False, f"{it.where()}: {p.in_ready} to take the operands")
            await self.tick()
            valid.value = 0
            await ReadOnly()
            while str(self.port(p.out_valid).value) != "1":
                self.progress(False, f"{it.where()}: {p.out_valid} (the result)")
                await self.tick()
                await ReadOnly()
            self.idle = 0
            obs.last_cycle = self.cycle
            for x in p.outputs:
                handle, fmt = self.port(x.port), lane_format(self.spec, x.matrix)
                read = read_elements if is_array(handle) else read_lanes
                check_beat(
                    it,
                    x.matrix,
                    x.layout,
                    0,
                    obs,
                    lambda wanted, what, handle=handle, fmt=fmt, read=read: read(handle, fmt, wanted, what),
                    f"{x.port}, cycle {self.cycle}",
                    lambda lane, port=x.port: f"{port}, lane {lane}, cycle {self.cycle}",
                )
            observed.append(obs)
        return observed


class BuffersDriver(Driver):
    """array_top's host ports: write the activation and weight buffers (hwsim's layouts of the
    dataflow), pulse ``start`` with the GEMM size, wait for ``done``, read the output buffer."""

    async def run(self, items: list[WorkItem]) -> list[Observed]:
        from hwsim.dataflows import dataflow
        from hwsim.vectors import buffer_layout, gemm_origin, pack_words
        from rtl_models.tb_array_top import read_output_buffer, write_buffer

        p = self.spec.protocol
        assert isinstance(p, BuffersProtocol)
        g = self.spec.gemm
        layout = buffer_layout(dataflow(p.dataflow))
        for name in ("a_we", "w_we", "o_we", "start", "accumulate"):
            self.port(name).value = 0
        observed = []
        for it in items:
            m, k, n = it.shape
            await self.tick()
            await write_buffer(
                self.dut, "a", pack_words(layout.abuf(it.a, p.rows, p.cols), g.a.bits), self.tick
            )
            await write_buffer(
                self.dut, "w", pack_words(layout.wbuf(it.w, p.rows, p.cols), g.w.bits), self.tick
            )
            if it.carry is not None:  # Y = C + A @ W: the output buffer starts from C
                await write_buffer(
                    self.dut, "o", pack_words(layout.obuf(it.carry, p.rows, p.cols), g.acc_bits), self.tick
                )
            self.port("m_rows").value, self.port("k_depth").value, self.port("n_cols").value = m, k, n
            self.port("accumulate").value = int(it.carry is not None)
            self.port("start").value = 1
            await self.tick()
            obs = Observed(np.zeros((m, n), np.int64), first_cycle=self.cycle)
            self.port("start").value = 0
            self.port("accumulate").value = 0
            await ReadOnly()
            while str(self.port("done").value) != "1":
                self.progress(False, f"{it.where()}: done")
                await self.tick()
                await ReadOnly()
            self.idle = 0
            obs.last_cycle = self.cycle
            if p.cycle_counter:
                obs.counter = int(self.port(p.cycle_counter).value.to_unsigned())
            if self.spec.compare.overflow_counter:
                obs.overflow = int(self.port(self.spec.compare.overflow_counter).value.to_unsigned())
            await self.tick()
            obs.y = await read_output_buffer(self.dut, layout, (m, n), p.rows, p.cols, g.acc, self.tick)
            bad = np.argwhere(obs.y != it.expected)
            if len(bad):
                r, c = (int(v) for v in bad[0])
                origin = gemm_origin(it.a, it.w, p.hardware(g), it.carry, r, c)
                at = (
                    f"the output buffer ({origin}); {len(bad)} of {obs.y.size} outputs differ, this the first"
                )
                raise element_mismatch(it, r, c, at, it.expected[r, c], obs.y[r, c])
            observed.append(obs)
        return observed


DRIVERS: dict[str, type[Driver]] = {
    "stream": StreamDriver,
    "parallel": ParallelDriver,
    "buffers": BuffersDriver,
}
