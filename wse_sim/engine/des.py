"""The discrete-event engine: executes a kernel :class:`~wse_sim.program.ir.Program` with SimPy.

Every PE of the program's region is one SimPy process walking its operations in order with a
*local time* (the cycle its compute engine is free). Timing comes from closed-form rules per
message (docs/engine.md), so a process only yields to SimPy when it must:

* when it waits for a message that has not been sent yet, or for receivers to start draining a
  send larger than the buffers on its path (these waits are what can deadlock);
* before it puts a message on links that other senders also use, so that contended links are
  granted in simulated-time order (first come, first served);
* when it runs more than ``lookahead`` cycles ahead of the SimPy clock.

A message therefore costs a handful of events at most, not one per wavelet; traffic on private
links (nearest-neighbour shifts) costs almost none.
"""

from __future__ import annotations

import gc
import math
import time
from collections import deque
from collections.abc import Generator
from typing import Any

import networkx as nx
import numpy as np
import simpy

from wse_sim.engine.compile import COMPUTE, RECV, SEND, Compiler, ProgramError
from wse_sim.engine.fabric import Fabric
from wse_sim.engine.result import EngineResult, Span
from wse_sim.engine.routing import RouteTree
from wse_sim.errors import DeadlockError, SramOverflowError
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Program, Region


class _Message:
    """One send in flight: its receivers match it one by one."""

    __slots__ = (
        "n",
        "interval",
        "src",
        "color",
        "tree",
        "arrivals",
        "payload",
        "unmatched",
        "starts",
        "rates",
        "event",
        "inject_end",
    )

    def __init__(
        self,
        n: int,
        interval: float,
        src: tuple[int, int],
        color: int,
        tree: RouteTree,
        arrivals: list[float],
        inject_end: float,
        payload: Any,
    ) -> None:
        self.n = n
        self.interval = interval
        self.src = src
        self.color = color
        self.tree = tree
        self.arrivals = arrivals
        self.inject_end = inject_end
        self.payload = payload
        self.unmatched = len(arrivals)
        self.starts: list[float] | None = None  # per receiver: consumption start
        self.rates: list[float] | None = None  # per receiver: cycles per wavelet consumed
        self.event: Any = None  # set while the sender waits for every receiver to start

    def match(self, i: int, start: float, rate: float) -> None:
        if self.starts is None:
            self.starts = [math.nan] * len(self.arrivals)
            self.rates = [1.0] * len(self.arrivals)
        self.starts[i] = start
        self.rates[i] = rate  # type: ignore[index]
        self.unmatched -= 1
        if self.unmatched == 0 and self.event is not None:
            self.event.succeed()


class _Mailbox:
    """Messages delivered to one (PE, color), oldest first, and the receiver waiting on it."""

    __slots__ = ("queue", "waiter", "wanted")

    def __init__(self) -> None:
        self.queue: deque[tuple[_Message, int]] = deque()
        self.waiter: Any = None
        self.wanted: tuple[int, int] | None = None

    def take(self, src: tuple[int, int] | None) -> tuple[_Message, int] | None:
        """Remove and return the oldest message from ``src`` (from anyone when ``None``)."""
        queue = self.queue
        if not queue:
            return None
        if src is None or queue[0][0].src == src:
            return queue.popleft()
        for j, item in enumerate(queue):
            if item[0].src == src:
                del queue[j]
                return item
        return None


def _field(value: Any, region: Region) -> np.ndarray:
    """A per-PE field as an array of the region's shape."""
    return np.broadcast_to(np.asarray(value), region.shape)


DEFAULT_LOOKAHEAD = 4096.0
"""Cycles a PE may run ahead of the simulation clock before it yields to SimPy."""


class DesRun:
    """One execution of a program on a fresh fabric."""

    def __init__(
        self,
        program: Program,
        spec: WaferSpec,
        functional: bool = False,
        record_spans: bool = False,
        lookahead: float = DEFAULT_LOOKAHEAD,
    ) -> None:
        reg = program.region
        if reg.x + reg.width > spec.mesh.width or reg.y + reg.height > spec.mesh.height:
            raise ProgramError(
                f"program {program.name!r} needs region {reg.width}x{reg.height} at "
                f"({reg.x}, {reg.y}), which leaves the {spec.mesh.width}x{spec.mesh.height} mesh"
            )
        self.program = program
        self.spec = spec
        self.functional = functional
        self.record_spans = record_spans
        self.lookahead = float(lookahead)
        self.shared: set[int] = set()
        self.env = simpy.Environment()
        self.fabric = Fabric(spec)
        self.boxes: dict[int, _Mailbox] = {}
        self.width = spec.mesh.width
        self.colors = spec.fabric.colors
        self.waiting: dict[Any, tuple] = {}
        self.background_end: dict[tuple[int, int], float] = {}
        self.finish: dict[tuple[int, int], float] = {}
        self.events = 0
        h, w = spec.mesh.height, spec.mesh.width
        self.busy = np.zeros((h, w))
        self.flops = np.zeros((h, w))
        self.sram = np.zeros((h, w))
        self.messages = 0
        self.injected = 0
        self.expected = 0
        self.delivered = 0
        self.spans: list[Span] = []
        self.memories: dict[tuple[int, int], dict[str, Any]] | None = None
        self.ramp = float(spec.fabric.ramp_latency_cycles)
        self.hop = float(spec.fabric.hop_latency_cycles)
        self.depth = spec.fabric.buffer_depth_wavelets
        self.overhead = float(spec.pe.instruction_overhead_cycles)

    # -- set-up -----------------------------------------------------------------------------
    def _allocate(self) -> None:
        reg = self.program.region
        need = _field(self.program.sram_bytes, reg).astype(float)
        cap = self.spec.pe.data_sram_bytes
        if need.max(initial=0) > cap:
            iy, ix = np.unravel_index(int(np.argmax(need)), need.shape)
            raise SramOverflowError(
                f"{self.program.name}: PE ({reg.x + ix}, {reg.y + iy}) needs {int(need.max())} "
                f"bytes of SRAM but a PE has {cap} bytes for data; use a larger region or "
                "smaller tiles"
            )
        self.sram[reg.y : reg.y + reg.height, reg.x : reg.x + reg.width] = need

    def _box(self, x: int, y: int, color: int) -> _Mailbox:
        key = (y * self.width + x) * self.colors + color
        box = self.boxes.get(key)
        if box is None:
            box = self.boxes[key] = _Mailbox()
        return box

    # -- fabric operations --------------------------------------------------------------------
    def _post(
        self,
        x: int,
        y: int,
        t: float,
        color: int,
        n: int,
        interval: float,
        tree: RouteTree,
        payload: Any,
    ) -> _Message:
        """Put a message on the fabric at cycle ``t`` and deliver it to its receivers' boxes."""
        arrivals, inject_end = self.fabric.transmit(tree, t, n, interval)
        msg = _Message(n, interval, (x, y), color, tree, arrivals, inject_end, payload)
        boxes = self.boxes
        colors = self.colors
        for i, dest in enumerate(tree.dest_ids):
            key = dest * colors + color
            box = boxes.get(key)
            if box is None:
                box = boxes[key] = _Mailbox()
            box.queue.append((msg, i))
            if box.waiter is not None and (box.wanted is None or box.wanted == msg.src):
                ev, box.waiter = box.waiter, None
                ev.succeed()
                self.events += 1
        return msg

    def _send_end(self, msg: _Message) -> float:
        """Cycle the sender has injected its last wavelet, given the receivers' progress."""
        end = msg.inject_end
        n, k = msg.n, msg.interval
        hops_all = msg.tree.dest_hops
        starts, rates = msg.starts, msg.rates
        assert starts is not None and rates is not None
        for i, hops in enumerate(hops_all):
            cap = (hops + 1) * self.depth
            if n <= cap:
                continue
            j = n - 1 - cap
            consumed = max(msg.arrivals[i] + j * k, starts[i] + j * rates[i])
            latency = 2 * self.ramp + hops * self.hop
            end = max(end, consumed + 1 - latency)
        return end

    def _send(self, xy: tuple[int, int], msg: _Message, t: float, key: Any = None) -> Generator:
        """Finish a send: wait for the receivers when the message outgrows the buffers."""
        if msg.n <= (msg.tree.min_hops + 1) * self.depth:
            return msg.inject_end
        if msg.unmatched > 0:
            key = xy if key is None else key
            msg.event = self.env.event()
            self.waiting[key] = ("send", t, xy, msg)
            yield msg.event
            self.events += 1
            del self.waiting[key]
        return self._send_end(msg)

    def _drain(self, xy: tuple[int, int], msg: _Message, t: float) -> Generator:
        """A background send larger than its path's buffers: wait for the receivers."""
        end = yield from self._send(xy, msg, t, key=(xy, id(msg)))
        if end > self.background_end.get(xy, 0.0):
            self.background_end[xy] = end

    def _wait(
        self, xy: tuple[int, int], box: _Mailbox, color: int, n: int, src: Any, t: float
    ) -> Generator:
        """Block until a message from ``src`` (anyone when ``None``) is in ``box``; take it."""
        item = None
        while item is None:
            box.waiter = self.env.event()
            box.wanted = src
            self.waiting[xy] = ("recv", t, xy, color, n, src)
            yield box.waiter
            self.events += 1
            del self.waiting[xy]
            item = box.take(src)
        return item

    def _mismatch(self, xy: tuple[int, int], color: int, n: int, msg: _Message) -> ProgramError:
        return ProgramError(
            f"{self.program.name}: PE {xy} receives {n} wavelets on color {color} but the "
            f"message from PE {msg.src} has {msg.n}"
        )

    # -- the PE process -----------------------------------------------------------------------
    def _pe(self, x: int, y: int, ops: list[tuple]) -> Generator:
        env = self.env
        t = 0.0
        xy = (x, y)
        mem = self.memories[xy] if self.memories is not None else None
        busy = 0.0
        flops = 0.0
        spans = self.spans if self.record_spans else None
        boxes = self.boxes
        box_base = (y * self.width + x) * self.colors
        depth = self.depth
        fabric = self.fabric
        stall = fabric.stall
        sent = injected = expected = delivered = 0
        lookahead = self.lookahead
        shared = self.shared
        ramp_free = 0.0  # when the output ramp is free of background sends
        for op in ops:
            code = op[0]
            if code == COMPUTE:
                _, cyc, fl, fn, name = op
                if spans is not None:
                    spans.append(Span(x, y, "compute", name, t, t + cyc))
                t += cyc
                busy += cyc
                flops += fl
                if mem is not None and fn is not None:
                    fn(mem, x, y)
            elif code == SEND:
                _, color, n, interval, tree, buf, name, background = op
                t0 = t if t >= ramp_free else ramp_free  # after earlier background sends
                if t0 > env.now + lookahead or (t0 > env.now and id(tree) in shared):
                    yield env.timeout(t0 - env.now)
                    self.events += 1
                    fabric.horizon = env.now
                payload = np.array(mem[buf], copy=True) if mem is not None and buf else None
                msg = self._post(x, y, t0, color, n, interval, tree, payload)
                sent += 1
                injected += n
                expected += n * len(msg.arrivals)
                if n <= (msg.tree.min_hops + 1) * depth:
                    end = msg.inject_end
                elif background:
                    end = msg.inject_end  # the drain process extends it if receivers lag
                    env.process(self._drain(xy, msg, t0))
                else:
                    end = yield from self._send(xy, msg, t0)
                if spans is not None:
                    spans.append(Span(x, y, "send", name, t0, end))
                if background:
                    ramp_free = end
                    busy += self.overhead
                    t += self.overhead
                else:
                    busy += end - t
                    t = end
            elif code == RECV:
                _, color, n, rate, src, buf, name = op
                box = boxes.get(box_base + color) or self._box(x, y, color)
                item = box.take(src)
                if item is None:
                    item = yield from self._wait(xy, box, color, n, src, t)
                msg, i = item
                if msg.n != n:
                    raise self._mismatch(xy, color, n, msg)
                head = msg.arrivals[i]
                start = t if t > head else head
                if msg.event is not None or n > (msg.tree.min_hops + 1) * depth:
                    msg.match(i, start, rate)
                tail = head + (n - 1) * msg.interval
                end = start + (n - 1) * rate
                if end > tail:  # the receiver holds the last link back
                    stall[msg.tree.links[msg.tree.dest_link[i]]] += end - tail
                else:
                    end = tail
                delivered += n
                if mem is not None and buf:
                    mem[buf] = msg.payload
                if spans is not None:
                    spans.append(Span(x, y, "recv", name, start, end))
                busy += n * rate
                t = end
            else:  # _STREAM
                _, recv, comp, send, fn, name = op
                color, n, rate, src = recv
                cyc, fl = comp
                box = boxes.get(box_base + color) or self._box(x, y, color)
                item = box.take(src)
                if item is None:
                    item = yield from self._wait(xy, box, color, n, src, t)
                msg, i = item
                if msg.n != n:
                    raise self._mismatch(xy, color, n, msg)
                head = msg.arrivals[i]
                start = t if t > head else head
                per_wavelet = max(msg.interval, rate, (cyc - self.overhead) / n)
                if msg.event is not None or n > (msg.tree.min_hops + 1) * depth:
                    msg.match(i, start, per_wavelet)
                tail = head + (n - 1) * msg.interval
                end = max(tail, start + self.overhead + (n - 1) * per_wavelet) + 1
                delivered += n
                flops += fl
                out = None
                if mem is not None:
                    out = fn(mem, x, y, msg.payload) if fn is not None else msg.payload
                if send is not None:
                    scolor, sn, sinterval, stree = send
                    t_out = start + self.overhead
                    if t_out > env.now + lookahead or (t_out > env.now and id(stree) in shared):
                        yield env.timeout(t_out - env.now)
                        self.events += 1
                        fabric.horizon = env.now
                    k_out = max(sinterval, per_wavelet * n / max(sn, 1))
                    smsg = self._post(x, y, t_out, scolor, sn, k_out, stree, out)
                    sent += 1
                    injected += sn
                    expected += sn * len(smsg.arrivals)
                    send_end = yield from self._send(xy, smsg, t_out)
                    end = max(end, send_end)
                if spans is not None:
                    spans.append(Span(x, y, "stream", name, start, end))
                busy += max(cyc, end - start)
                t = end
        self.finish[xy] = t if t >= ramp_free else ramp_free
        self.busy[y, x] = busy
        self.messages += sent
        self.injected += injected
        self.expected += expected
        self.delivered += delivered
        self.flops[y, x] = flops

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> EngineResult:
        # The run allocates many small, short-lived objects and no reference cycles that matter;
        # the cyclic garbage collector would rescan them over and over (and make the wall time
        # erratic), so it is paused for the run.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if collecting:
                gc.enable()

    def _run(self) -> EngineResult:
        wall = time.perf_counter()
        self._allocate()
        compiler = Compiler(self.program, self.spec, self.fabric.router)
        per_pe = compiler.compile()
        self.shared = compiler.shared_trees()
        if self.functional:
            init = self.program.init
            self.memories = {xy: (init(*xy) if init is not None else {}) for xy in per_pe}
        for (x, y), ops in per_pe.items():
            self.env.process(self._pe(x, y, ops))
        self.env.run()
        self.events += len(per_pe)
        if len(self.finish) < len(per_pe) or self.waiting:
            raise self._deadlock()
        for xy, end in self.background_end.items():
            self.finish[xy] = max(self.finish[xy], end)
        wavelets, busy, stall = self.fabric.arrays()
        output = None
        if self.functional and self.program.collect is not None:
            output = self.program.collect(self.memories)
        return EngineResult(
            cycles=float(math.ceil(max(self.finish.values(), default=0.0))),
            pe_busy_cycles=self.busy,
            pe_flops=self.flops,
            pe_sram_peak_bytes=self.sram,
            link_wavelets=wavelets,
            link_busy_cycles=busy,
            link_stall_cycles=stall,
            messages=self.messages,
            wavelets_injected=self.injected,
            wavelets_expected=self.expected,
            wavelets_delivered=self.delivered,
            events=self.events,
            wall_seconds=time.perf_counter() - wall,
            output=output,
            memories=self.memories,
            spans=self.spans if self.record_spans else None,
        )

    def _deadlock(self) -> DeadlockError:
        """Describe who waits on whom, and the cycle of the wait-for graph if there is one."""
        graph = nx.DiGraph()
        waits: list[tuple[str, str, str]] = []
        describe: dict[tuple[tuple[int, int], tuple[int, int] | None], str] = {}
        for what in sorted(self.waiting.values(), key=lambda w: w[2]):
            xy = what[2]
            if what[0] == "recv":
                _, _, _, color, n, src = what
                resource = f"{n} wavelets on color {color}"
                holder = f"PE{src}" if src is not None else "no sender"
                waits.append((f"PE{xy}", f"receive {resource}", holder))
                describe[(xy, src)] = f"PE{xy} waits to receive {resource} from {holder}"
                if src is not None:
                    graph.add_edge(xy, src)
            else:
                msg = what[3]
                starts = msg.starts or [math.nan] * len(msg.tree.dests)
                pending = [d for i, d in enumerate(msg.tree.dests) if math.isnan(starts[i])]
                first = self.fabric.router.unravel(msg.tree.links[0])
                for d in pending:
                    resource = (
                        f"its {msg.n}-wavelet send on color {msg.color} (holding the link leaving "
                        f"router {first[:2]} {('east', 'west', 'north', 'south')[first[2]]})"
                    )
                    waits.append((f"PE{xy}", resource, f"PE{d}"))
                    describe[(xy, d)] = f"PE{xy} waits for PE{d} to start receiving {resource}"
                    graph.add_edge(xy, d)
        cycle_desc: list[str] = []
        try:
            cycle = nx.find_cycle(graph)
            cycle_desc = [describe.get((a, b), f"PE{a} waits on PE{b}") for a, b in cycle]
        except nx.NetworkXNoCycle:
            pass
        now = max((what[1] for what in self.waiting.values()), default=self.env.now)
        if cycle_desc:
            msg = f"deadlock at cycle {now:g} in {self.program.name}: " + " -> ".join(cycle_desc)
        else:
            sentences = list(describe.values())
            shown = "; ".join(sentences[:4])
            more = f" (+{len(sentences) - 4} more)" if len(sentences) > 4 else ""
            msg = f"stalled at cycle {now:g} in {self.program.name}: {shown}{more}"
        return DeadlockError(msg, cycle_desc, waits, now)


def run_program(
    program: Program,
    spec: WaferSpec,
    functional: bool = False,
    record_spans: bool = False,
    lookahead: float = DEFAULT_LOOKAHEAD,
) -> EngineResult:
    """Execute ``program`` on the discrete-event engine.

    Args:
        program: the kernel program (its region must lie inside ``spec.mesh``).
        spec: the hardware.
        functional: move real data (``Program.init`` / buffers / ``fn``) and return
            ``program.collect(memories)`` as ``output``.
        record_spans: also return per-PE busy intervals for traces.
        lookahead: cycles a PE may run ahead of the SimPy clock before it yields; any value
            gives the same timing (link reservations are order-independent), larger ones fewer
            events and longer reservation lists.

    Raises:
        DeadlockError: when operations are left that can never run.
        SramOverflowError: when a PE's footprint exceeds its SRAM.
    """
    return DesRun(program, spec, functional, record_spans, lookahead).run()
