"""Link reservations on the mesh: the timing of a message's head along its route tree.

Pure Python, no SimPy: the DES calls :meth:`Fabric.transmit` when a message starts, and gets back
when its head reaches every receiver. A message reserves ``n`` cycles of each link of its route
(see docs/engine.md).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from wse_sim.engine.routing import Router, RouteTree
from wse_sim.hardware.spec import WaferSpec


class Fabric:
    """Per-link reservations and statistics of one mesh.

    Each directed link keeps its reserved intervals ``[start, end)`` in time order. A message
    takes the earliest gap of ``n`` cycles at or after its head is ready, so reservations made in
    any order give the same arbitration as first-come-first-served in simulated time. Intervals
    that end before :attr:`horizon` (no later reservation can start before it) are pruned.
    """

    def __init__(self, spec: WaferSpec) -> None:
        self.spec = spec
        self.width = spec.mesh.width
        self.height = spec.mesh.height
        self.router = Router(self.width, self.height)
        n = self.router.num_links
        self.schedules: dict[int, tuple[list[float], list[float]]] = {}
        self.wavelets: list[float] = [0.0] * n
        self.stall: list[float] = [0.0] * n
        self.hop = float(spec.fabric.hop_latency_cycles)
        self.ramp = float(spec.fabric.ramp_latency_cycles)
        self.depth = spec.fabric.buffer_depth_wavelets
        self.horizon = 0.0
        """No reservation will start before this cycle (set by the engine)."""

    def reserve(self, link: int, ready: float, n: int) -> float:
        """Reserve ``n`` cycles of ``link`` in its earliest gap at or after ``ready``; return
        the start of the reservation."""
        sched = self.schedules.get(link)
        if sched is None:
            self.schedules[link] = ([ready], [ready + n])
            return ready
        starts, ends = sched
        last = ends[-1]
        if ready >= last:  # after everything reserved so far: the usual case
            if ready == last:
                ends[-1] = ready + n
            else:
                if len(starts) > 64:
                    self._prune(starts, ends)
                starts.append(ready)
                ends.append(ready + n)
            return ready
        i = bisect_right(ends, ready)
        start = ready
        count = len(starts)
        while i < count:
            if starts[i] >= start + n:
                break
            if ends[i] > start:
                start = ends[i]
            i += 1
        end = start + n
        if i > 0 and ends[i - 1] == start:
            if i < count and starts[i] == end:
                ends[i - 1] = ends[i]
                del starts[i], ends[i]
            else:
                ends[i - 1] = end
        elif i < count and starts[i] == end:
            starts[i] = start
        else:
            starts.insert(i, start)
            ends.insert(i, end)
        return start

    def _prune(self, starts: list[float], ends: list[float]) -> None:
        cut = bisect_right(ends, self.horizon)
        if cut:
            del starts[:cut], ends[:cut]

    def transmit(
        self, tree: RouteTree, t0: float, n: int, interval: float
    ) -> tuple[list[float], float]:
        """Reserve the links of ``tree`` for a message of ``n`` wavelets whose sender starts
        injecting at ``t0``, one wavelet every ``interval`` cycles.

        Returns the head's arrival cycle at each receiver's compute engine and the cycle the
        sender has injected its last wavelet, allowing for head-of-line waits on the path (not
        yet for slow receivers).
        """
        hop, ramp = self.hop, self.ramp
        depth = self.depth
        reserve = self.reserve
        earliest_first = t0 + ramp
        inject_end = t0 + n * interval
        links = tree.links
        if len(links) == 1:  # one hop: the common nearest-neighbour case
            link = links[0]
            sched = self.schedules.get(link)
            if sched is not None and earliest_first > sched[1][-1] and len(sched[0]) <= 64:
                sched[0].append(earliest_first)  # after all reserved so far: no search
                sched[1].append(earliest_first + n)
                start = earliest_first
            else:
                start = reserve(link, earliest_first, n)
            if start > earliest_first:
                self.stall[link] += start - earliest_first
                if n > depth:
                    end = start + (n - depth) * interval - ramp
                    if end > inject_end:
                        inject_end = end
            self.wavelets[link] += n
            return [start + hop + ramp], inject_end
        carried = self.wavelets
        heads: list[float] = []
        for link, parent, d in zip(links, tree.parents, tree.depths):
            ready = earliest_first if parent < 0 else heads[parent] + hop
            start = reserve(link, ready, n)
            if start > ready:
                self.stall[link] += start - ready
            heads.append(start)
            carried[link] += n
            # Head-of-line wait: the sender can run ahead by the buffers up to this link only.
            ahead = n - d * depth
            if ahead > 0:
                wait = start - (earliest_first + (d - 1) * hop)
                if wait > 0:
                    end = t0 + wait + ahead * interval
                    if end > inject_end:
                        inject_end = end
        late = hop + ramp
        return [heads[i] + late for i in tree.dest_link], inject_end

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(wavelets, busy, stall)`` per link, each shaped ``(4, height, width)``."""
        shape = (4, self.height, self.width)
        wavelets = np.asarray(self.wavelets, dtype=float).reshape(shape)
        stall = np.asarray(self.stall, dtype=float).reshape(shape)
        return wavelets, wavelets.copy(), stall
