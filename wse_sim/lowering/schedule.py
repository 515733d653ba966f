"""When each op runs: the three schedules of a placement, as closed forms over op cycles.

Every op (and every transfer between regions) is an :class:`Item` with its cycles already
known from the engine; this module only places items in time.

* ``sequential``: one after another, ``total = sum(cycles)``.
* ``pipeline``: each stage repeats its items once per batch; a steady stream of batches advances
  at the bottleneck stage's interval ``max_s sum(cycles of stage s)``. The latency of one batch
  comes from a list schedule: an item starts when its inputs are done and its stage is free.
* ``stream`` (weight streaming): items form layer groups (one per unit and pass, in order); a
  group takes ``max(compute cycles, weight I/O cycles)`` because the next group's weights load
  while the current one computes: ``total = sum_g max(C_g, IO_g)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wse_sim.program.ir import Region


@dataclass
class Item:
    """An op or a transfer of the run.

    Attributes:
        name: op name, or ``"A -> B"`` for a transfer.
        kind: ``op``, ``transfer`` or ``external`` (run off the wafer: costs no wafer cycles).
        stage: index of the placement stage it runs on (transfers: the receiving stage).
        region: where its arrays sit on the mesh (the op's region; a transfer's bounding box).
        cycles: cycles of the item (all its calls).
        flops: FLOPs the graph counts for it (0 for transfers).
        group: layer group for weight streaming: ``(unit, pass)``.
        preds: names of the items it waits for (pipeline latency).
        start: first cycle (set by a schedule).
        extra: anything the assembly needs (choice, engine run, calls).
    """

    name: str
    kind: str
    stage: int
    region: Region
    cycles: float
    flops: float = 0.0
    group: tuple[str, str] = ("", "")
    preds: tuple[str, ...] = ()
    start: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.cycles


def sequential(items: list[Item]) -> float:
    """Start every item when the previous ends; return the total cycles."""
    t = 0.0
    for item in items:
        item.start = t
        t += item.cycles
    return t


def pipeline(items: list[Item], stages: int) -> tuple[float, float, list[float]]:
    """``(interval, latency, cycles per stage)``; sets each item's start along one batch.

    The interval is the largest per-stage sum (the bottleneck stage); the latency is when the
    last item of one batch ends when items start as soon as their inputs are done and their
    stage is free.
    """
    per_stage = [0.0] * stages
    for item in items:
        per_stage[item.stage] += item.cycles
    free = [0.0] * stages
    end: dict[str, float] = {}
    for item in items:
        ready = max((end.get(p, 0.0) for p in item.preds), default=0.0)
        item.start = max(ready, free[item.stage])
        free[item.stage] = item.end
        end[item.name] = item.end
    latency = max((i.end for i in items), default=0.0)
    return max(per_stage, default=0.0), latency, per_stage


@dataclass
class Group:
    """One layer group of a weight-streaming run.

    Attributes:
        unit, pass_: the layer group (``embed``, ``L3``, ``head``) and ``fwd`` / ``bwd``.
        compute: cycles of its ops on the wafer.
        io_in_bytes: weight bytes it loads from the weight store.
        io_out_bytes: weight-gradient bytes it sends out.
        io: cycles of that I/O: ``max(in / bandwidth in, out / bandwidth out) * clock``.
        start: its first cycle.
    """

    unit: str
    pass_: str
    compute: float = 0.0
    io_in_bytes: float = 0.0
    io_out_bytes: float = 0.0
    io: float = 0.0
    start: float = 0.0

    @property
    def cycles(self) -> float:
        """``max(compute, io)``: weights of the next group load while this one computes."""
        return max(self.compute, self.io)

    @property
    def io_bound(self) -> bool:
        return self.io > self.compute


def io_cycles(in_bytes: float, out_bytes: float, in_bps: float, out_bps: float, hz: float) -> float:
    """Cycles to load ``in_bytes`` and send ``out_bytes`` at the same time (full duplex)."""
    return max(in_bytes / in_bps, out_bytes / out_bps) * hz


def stream(items: list[Item], groups: dict[tuple[str, str], Group]) -> float:
    """Start the groups one after another, each taking ``max(compute, io)``; items of a group
    run back to back from its start. Returns the total cycles."""
    order: list[tuple[str, str]] = []
    for item in items:
        if item.kind == "external":
            continue
        if not order or order[-1] != item.group:
            order.append(item.group)
    for key in groups:
        if key not in order:
            order.append(key)
    t = 0.0
    seen: set[tuple[str, str]] = set()
    for key in order:
        if key in seen:
            continue
        seen.add(key)
        g = groups[key]
        g.compute = sum(i.cycles for i in items if i.group == key and i.kind != "external")
        g.start = t
        u = t
        for item in items:
            if item.group == key and item.kind != "external":
                item.start = u
                u += item.cycles
        t += g.cycles
    for item in items:
        if item.kind == "external":
            item.start = groups[item.group].start if item.group in groups else t
    return t
