"""Lower a placed graph and run it: kernel choices, engine runs, transfers and the schedule.

:func:`simulate` is the compiler's back end. For every op it picks a kernel call that fits
(:mod:`.choose`), runs each distinct call once on the engine (:mod:`.execute`), adds a transfer
wherever a tensor crosses from one region to another (:mod:`.transfer`), and places everything in
time by the placement's schedule (:mod:`.schedule`). Arrays and the :class:`RunResult` are made
from the outcome by :mod:`.assemble`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from wse_sim.graph.ops import OpSpec
from wse_sim.hardware.spec import WaferSpec
from wse_sim.lowering.choose import Choice, Lowerer
from wse_sim.lowering.execute import Executor
from wse_sim.lowering.schedule import Group, Item, io_cycles, pipeline, sequential, stream
from wse_sim.lowering.transfer import lanes
from wse_sim.placement.base import Placement
from wse_sim.placement.units import unit_of

DATA_TENSORS = ("activation", "gradient", "saved")
"""Edge tensors that move between regions (weight gradients reach their optimizer in place)."""


@dataclass
class Simulation:
    """Everything a run produced, before it becomes a :class:`RunResult`.

    Attributes:
        items: ops and transfers with cycles and start cycles, in execution order.
        cycles: the run's cycles (pipeline: the steady-state interval per batch).
        latency: cycles from the first op starting to the last ending for one batch.
        stage_cycles: per placement stage, cycles of its items per batch.
        groups: weight streaming: the layer groups with compute and I/O cycles.
        notes: one-line remarks.
        simulations: DES simulations run (memo misses).
    """

    placement: Placement
    items: list[Item]
    cycles: float
    latency: float
    stage_cycles: list[float]
    groups: list[Group] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    simulations: int = 0


def streamed_weight_bytes(op: OpSpec) -> float:
    """Weight bytes an op loads under weight streaming: an embedding lookup loads only the rows
    it gathers (at most its output), every other op its whole weights."""
    if op.kind == "embedding":
        return min(op.weight_bytes, op.output_bytes)
    return op.weight_bytes


def _pass(op: OpSpec) -> str:
    return "bwd" if op.stage == "bwd" else ("opt" if op.stage == "opt" else "fwd")


@contextmanager
def _progress(total: int, label: str, enabled: bool) -> Iterator[Any]:
    if not enabled or total <= 0:
        with nullcontext() as none:
            yield none
        return
    try:
        from wse_sim.report.progress import progress
    except ImportError:  # pragma: no cover - the reports package is optional here
        yield None
        return
    with progress(total, label) as bar:
        yield bar


def lower(graph: nx.DiGraph, placement: Placement, lowerer: Lowerer) -> list[Item]:
    """An :class:`Item` per op (with its :class:`Choice` in ``extra``), in graph order."""
    stream_ = placement.schedule == "stream"
    index = placement.stage_index()
    items = []
    for name in graph.nodes:
        op: OpSpec = graph.nodes[name]["op"]
        s = index[name]
        stage = placement.stages[s]
        group = (unit_of(op), _pass(op))
        preds = tuple(graph.predecessors(name))
        if stream_ and op.kind == "optimizer":
            items.append(
                Item(
                    name, "external", s, stage.region, 0.0, op.flops, group, preds, extra={"op": op}
                )
            )
            continue
        choice = lowerer.choose(
            graph, op, stage.region, stage.resident_bytes_per_pe, not stream_, placement.strategy
        )
        items.append(
            Item(
                name,
                "op",
                s,
                stage.region,
                0.0,
                op.flops,
                group,
                preds,
                extra={"op": op, "choice": choice},
            )
        )
    return items


RECOMPUTE_SUFFIX = ".recompute"
"""Suffix of the ops a ``recompute`` training step runs again before a layer's backward."""


def with_recompute(items: list[Item]) -> list[Item]:
    """``items`` with each layer's forward ops run again just before the layer's backward.

    Under the ``recompute`` activation policy a layer keeps only its input; its forward ops are
    copied (same kernel choice, named ``<op>.recompute``) into the layer's backward group, ahead
    of its first backward item. The copies count no graph FLOPs (the graph has each op once)
    but their cycles and executed per-PE FLOPs are real."""
    forward: dict[str, list[Item]] = {}
    for item in items:
        unit, pass_ = item.group
        if item.kind == "op" and pass_ == "fwd" and unit.startswith("L"):
            forward.setdefault(unit, []).append(item)
    out: list[Item] = []
    done: set[str] = set()
    for item in items:
        unit, pass_ = item.group
        if pass_ == "bwd" and unit in forward and unit not in done:
            done.add(unit)
            for f in forward[unit]:
                extra = {"op": f.extra["op"], "choice": f.extra["choice"], "recompute": True}
                name = f.name + RECOMPUTE_SUFFIX
                out.append(
                    Item(name, "op", f.stage, f.region, 0.0, 0.0, (unit, "bwd"), (), 0.0, extra)
                )
        out.append(item)
    return out


def transfers(graph: nx.DiGraph, placement: Placement, spec: WaferSpec) -> dict[str, list[Item]]:
    """Transfers between regions, keyed by the op that waits for them: one per (producer,
    receiving region), carrying the producer's output bytes."""
    index = placement.stage_index()
    out: dict[str, list[Item]] = {}
    done: set[tuple[str, int]] = set()
    for v in graph.nodes:
        for u in graph.predecessors(v):
            if graph.edges[u, v].get("tensor") not in DATA_TENSORS:
                continue
            su, sv = index[u], index[v]
            if su == sv or (u, sv) in done:
                continue
            done.add((u, sv))
            src, dst = placement.stages[su].region, placement.stages[sv].region
            nbytes = graph.nodes[u]["op"].output_bytes
            lane = lanes(spec, src, dst, nbytes)
            if lane is None:
                continue
            op_v: OpSpec = graph.nodes[v]["op"]
            item = Item(
                f"{u} -> {placement.stages[sv].name}",
                "transfer",
                sv,
                lane.box,
                0.0,
                0.0,
                (unit_of(op_v), _pass(op_v)),
                (u,),
                extra={"lane": lane, "bytes": nbytes},
            )
            out.setdefault(v, []).append(item)
    return out


def _execute(items: list[Item], lowerer: Lowerer, executor: Executor, progress: bool) -> None:
    """Run every distinct call once (with a progress bar for DES) and set each item's cycles."""
    todo: dict[tuple, Item] = {}
    for item in items:
        if item.kind == "op":
            choice: Choice = item.extra["choice"]
            if not executor.cached(choice):
                todo.setdefault(choice.key(), item)
    with _progress(len(todo), f"{executor.engine} kernels", progress) as bar:
        for item in todo.values():
            choice = item.extra["choice"]
            executor.call(choice, lowerer.local_spec(item.region.width, item.region.height))
            if bar is not None:
                bar.advance()
    for item in items:
        if item.kind == "op":
            choice = item.extra["choice"]
            run = executor.call(choice, lowerer.local_spec(item.region.width, item.region.height))
            item.extra["run"] = run
            item.extra["calls"] = choice.runs
            item.cycles = run.cycles * choice.runs
        elif item.kind == "transfer":
            run = executor.transfer(item.extra["lane"])
            item.extra["run"] = run
            item.extra["calls"] = 1.0
            item.cycles = run.cycles


def stream_groups(graph: nx.DiGraph, spec: WaferSpec, wafers: int) -> dict[tuple[str, str], Group]:
    """The layer groups of a weight-streaming run with their I/O bytes and cycles.

    Forward: a group loads its ops' weights (:func:`streamed_weight_bytes`). Backward: it loads
    the weights again (the data-gradient matmuls and norms read them) and sends its weight
    gradients out, both at once. One wafer talks to the weight store at
    ``io.io_bytes_per_s``; several wafers receive the broadcast weights and send gradients into
    the in-network reduction through the interconnect, so each direction runs at
    ``min(io.io_bytes_per_s, io.wafer_interconnect_bytes_per_s)``.
    """
    bw = spec.io.io_bytes_per_s
    if wafers > 1:
        bw = min(bw, spec.io.wafer_interconnect_bytes_per_s)
    groups: dict[tuple[str, str], Group] = {}
    for name in graph.nodes:
        op: OpSpec = graph.nodes[name]["op"]
        p = _pass(op)
        if p == "opt":
            continue
        key = (unit_of(op), p)
        g = groups.setdefault(key, Group(*key))
        g.io_in_bytes += streamed_weight_bytes(op) if p == "fwd" else op.weight_bytes
        for _, _, d in graph.out_edges(name, data=True):
            if d.get("tensor") == "weight_grad":
                g.io_out_bytes += d.get("bytes", 0.0)
    for g in groups.values():
        g.io = io_cycles(g.io_in_bytes, g.io_out_bytes, bw, bw, spec.pe.clock_hz)
    return groups


def simulate(
    graph: nx.DiGraph,
    placement: Placement,
    spec: WaferSpec,
    engine: str = "analytic",
    gemm: str = "auto",
    wafers: int = 1,
    record_spans: bool = False,
    progress: bool = False,
    lowerer: Lowerer | None = None,
) -> Simulation:
    """Lower, execute and schedule ``graph`` as ``placement`` says (see the module doc)."""
    lowerer = lowerer or Lowerer(spec, gemm)
    executor = Executor(spec, engine, record_spans)
    ops = lower(graph, placement, lowerer)
    if placement.activations == "recompute" and graph.graph.get("mode") == "train":
        ops = with_recompute(ops)
    moves = transfers(graph, placement, spec)
    items: list[Item] = []
    for item in ops:
        items.extend(moves.get(item.name, []))
        items.append(item)
    # an op waits for its transfers, not for the producer directly
    for item in items:
        if item.kind != "transfer" and item.name in moves:
            moved = {t.preds[0] for t in moves[item.name]}
            item.preds = tuple(p for p in item.preds if p not in moved) + tuple(
                t.name for t in moves[item.name]
            )
    _execute(items, lowerer, executor, progress)
    notes = list(placement.notes)
    groups: list[Group] = []
    n_stages = len(placement.stages)
    if placement.schedule == "pipeline":
        cycles, latency, stage_cycles = pipeline(items, n_stages)
    elif placement.schedule == "stream":
        table = stream_groups(graph, spec, wafers)
        cycles = stream(items, table)
        latency = cycles
        stage_cycles = [cycles]
        groups = list(table.values())
    else:
        cycles = sequential(items)
        latency = cycles
        stage_cycles = [0.0] * n_stages
        for item in items:
            stage_cycles[item.stage] += item.cycles
    return Simulation(
        placement, items, cycles, latency, stage_cycles, groups, notes, executor.simulations
    )
