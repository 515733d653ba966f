"""``pipeline``: layer-pipelined placement on contiguous strips of the mesh.

The graph's units (``embed``, one per layer, ``head``; see :mod:`.units`) are cut into at most
as many contiguous groups as the mesh's longer side has PEs, balancing their FLOPs. Each group is
a stage: a full-height strip (full-width when the mesh is taller than wide) whose length is
first what its resident bytes need, then shared out in proportion to the stages' FLOPs. A stage
keeps its weights, and the per-batch state of every batch in flight (:meth:`Pipeline.in_flight`:
decode KV caches, training activations).
Activations flow strip to strip over the fabric. Batches follow each other through the stages,
so throughput is one batch per bottleneck-stage interval.
"""

from __future__ import annotations

import heapq
import math

import networkx as nx

from wse_sim.hardware.spec import WaferSpec
from wse_sim.placement.base import Placement, PlacementStrategy, Stage
from wse_sim.placement.fit import fit_error
from wse_sim.placement.units import (
    Unit,
    heaviest_op,
    kv_cache_bytes,
    resident_bytes,
    saved_activation_bytes,
    units,
)
from wse_sim.program.ir import Region

WORKING_RESERVE: tuple[float, ...] = (0.25, 0.1, 0.0)
"""Fractions of a PE's data SRAM kept free for kernels' working sets when strips are sized by
their resident bytes: the first that leaves every stage enough lines is used."""


def partition(works: list[float], parts: int) -> list[tuple[int, int]]:
    """Cut ``works`` into at most ``parts`` contiguous groups minimising the largest group sum.

    Returns ``[(start, end), ...]`` (end exclusive) covering every item in order.
    """
    n = len(works)
    if parts >= n:
        return [(i, i + 1) for i in range(n)]

    def groups_for(limit: float) -> list[tuple[int, int]]:
        out, start, acc = [], 0, 0.0
        for i, w in enumerate(works):
            if acc + w > limit and i > start:
                out.append((start, i))
                start, acc = i, 0.0
            acc += w
        out.append((start, n))
        return out

    lo, hi = max(works), sum(works)
    for _ in range(60):  # bisection on the largest group sum
        mid = (lo + hi) / 2
        if len(groups_for(mid)) <= parts:
            hi = mid
        else:
            lo = mid
    return groups_for(hi)


def allocate(works: list[float], minimum: list[int], total: int) -> list[int]:
    """Lengths ``>= minimum`` summing to ``total``: each spare PE line goes to the stage with
    the most work per line so far (proportional to work, rounded)."""
    lengths = list(minimum)
    heap = [(-w / max(n, 1), i) for i, (w, n) in enumerate(zip(works, lengths))]
    heapq.heapify(heap)
    for _ in range(total - sum(lengths)):
        _, i = heapq.heappop(heap)
        lengths[i] += 1
        heapq.heappush(heap, (-works[i] / lengths[i], i))
    return lengths


def _name(group: list[Unit]) -> str:
    return group[0].name if len(group) == 1 else f"{group[0].name}-{group[-1].name}"


class Pipeline(PlacementStrategy):
    name = "pipeline"
    description = (
        "layer-pipelined: a strip of the mesh per layer group, sized by work; steady stream of "
        "batches, throughput set by the bottleneck stage"
    )

    def place(self, graph: nx.DiGraph, spec: WaferSpec) -> Placement:
        return self.layout(graph, spec)

    def rebalance(
        self, graph: nx.DiGraph, spec: WaferSpec, placed: Placement, stage_cycles: list[float]
    ) -> Placement:
        """The same stages with strip lengths re-shared by measured work: a stage that took
        ``c`` cycles on ``n`` PE lines did about ``c * n`` line-cycles of work."""
        along_x = spec.mesh.width >= spec.mesh.height
        lines = [s.region.width if along_x else s.region.height for s in placed.stages]
        works = [max(c, 1.0) * n for c, n in zip(stage_cycles, lines)]
        return self.layout(graph, spec, works)

    def layout(
        self, graph: nx.DiGraph, spec: WaferSpec, works: list[float] | None = None
    ) -> Placement:
        """Stages cut by FLOPs; strip lengths shared by ``works`` (default: the FLOPs)."""
        mesh = spec.mesh
        along_x = mesh.width >= mesh.height
        length, across = (mesh.width, mesh.height) if along_x else (mesh.height, mesh.width)
        us = units(graph)
        cuts = partition([max(u.flops, 1.0) for u in us], min(len(us), length))
        groups = [us[a:b] for a, b in cuts]
        ops = [tuple(o for u in g for o in u.ops) for g in groups]
        if works is None or len(works) != len(groups):
            works = [max(sum(u.flops for u in g), 1.0) for g in groups]
        resident = [
            resident_bytes(graph, o) + (self.in_flight(graph, i, len(ops)) - 1) * per_batch
            for i, o in enumerate(ops)
            for per_batch in [kv_cache_bytes(graph, o) + saved_activation_bytes(graph, o)]
        ]
        cap = spec.pe.data_sram_bytes
        for reserve in WORKING_RESERVE:
            minimum = [max(1, math.ceil(r / (cap * (1 - reserve) * across))) for r in resident]
            if sum(minimum) <= length:
                break
        else:
            self._too_big(graph, spec, ops, resident, length, across)
        lengths = allocate(works, minimum, length)
        stages, start = [], 0
        for g, o, r, n in zip(groups, ops, resident, lengths):
            region = Region(start, 0, n, across) if along_x else Region(0, start, across, n)
            stages.append(Stage(_name(g), region, o, r))
            start += n
        notes = (
            f"pipeline: {len(stages)} stages in {'columns' if along_x else 'rows'} of the mesh; "
            "cycles are the bottleneck stage's interval per batch",
        )
        return Placement(self.name, "pipeline", tuple(stages), notes)

    @staticmethod
    def in_flight(graph: nx.DiGraph, stage: int, stages: int) -> int:
        """Batches whose state stage ``stage`` holds at once in the steady state: decode keeps
        the KV cache of every sequence in the pipeline (one per stage); training (one forward,
        one backward) keeps saved activations for ``stages - stage`` micro-batches; a prefill
        stage hands its activations on, and its KV cache counts once."""
        mode = graph.graph.get("mode")
        if mode == "decode":
            return stages
        if mode == "train":
            return stages - stage
        return 1

    def _too_big(self, graph, spec, ops, resident, length, across) -> None:
        """Raise the fit error for the stage that is furthest over when strips are sized by
        their resident bytes, suggesting the smallest mesh (same aspect) whose strips fit."""
        total = sum(resident)
        shares = [max(1, int(length * r / total)) if total else 1 for r in resident]
        worst = max(range(len(ops)), key=lambda i: resident[i] / shares[i])
        along_x = spec.mesh.width >= spec.mesh.height
        w, h = (shares[worst], across) if along_x else (across, shares[worst])
        region = Region(0, 0, w, h)
        cap = spec.pe.data_sram_bytes
        scale = 1.0
        while scale < 1e4:
            scale *= 1.05
            lines, side = math.ceil(length * scale), math.ceil(across * scale)
            if sum(max(1, math.ceil(r / (cap * side))) for r in resident) <= lines:
                break
        big = (lines, side) if along_x else (side, lines)
        raise fit_error(
            self.name,
            heaviest_op(graph, ops[worst]),
            region,
            spec,
            resident[worst] / region.num_pes,
            0.0,
            total,
            big,
        )
