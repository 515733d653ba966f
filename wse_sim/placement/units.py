"""Layer groups ("units") of a graph and the bytes a set of ops keeps resident.

Units are the grain of ``pipeline`` stages and of ``stream`` weight loads, in execution order:
``embed`` (the embedding lookups and their backward / optimizer ops), ``L0`` ... ``L{n-1}`` (one
per Transformer layer: forward, backward and optimizer ops of that layer) and ``head`` (final
norm, LM head, loss and their backward / optimizer ops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from wse_sim.graph.ops import OpSpec
from wse_sim.graph.summary import peak_live_activation_bytes


def unit_of(op: OpSpec) -> str:
    """The unit an op belongs to: ``L{layer}``, ``embed`` or ``head``."""
    if op.layer is not None:
        return f"L{op.layer}"
    if op.name.startswith("embed"):
        return "embed"
    return "head"


@dataclass(frozen=True)
class Unit:
    """One layer group: its name, its ops in execution order and its forward FLOPs and weights.

    Attributes:
        name: ``embed``, ``L{i}`` or ``head``.
        ops: op names in graph (execution) order.
        flops: FLOPs of all its ops.
        weight_bytes: parameter bytes its ops read (each matrix once).
    """

    name: str
    ops: tuple[str, ...]
    flops: float
    weight_bytes: float


def ops_of(graph: nx.DiGraph) -> list[OpSpec]:
    return [data["op"] for _, data in graph.nodes(data=True)]


def units(graph: nx.DiGraph) -> list[Unit]:
    """The graph's units in execution order (``embed``, ``L0``.., ``head``); empty ones left out."""
    groups: dict[str, list[OpSpec]] = {}
    for op in ops_of(graph):
        groups.setdefault(unit_of(op), []).append(op)
    layers = sorted((k for k in groups if k.startswith("L")), key=lambda k: int(k[1:]))
    order = [k for k in ("embed", *layers, "head") if k in groups]
    return [
        Unit(
            name=k,
            ops=tuple(o.name for o in groups[k]),
            flops=math.fsum(o.flops for o in groups[k]),
            weight_bytes=weight_bytes(graph, [o.name for o in groups[k]]),
        )
        for k in order
    ]


def weight_bytes(graph: nx.DiGraph, names: list[str] | tuple[str, ...]) -> float:
    """Parameter bytes the ops ``names`` need, each matrix counted once (bytes).

    Forward ops carry the weights they read; backward ops re-read them and are not counted again.
    A tied LM head (``graph.graph["shared_weights"]``) shares the embedding table: counted once
    when both ops are in ``names``. In training the optimizer ops carry each parameter group's
    bytes, so a set holding an optimizer op counts those instead (the two agree per layer).
    """
    chosen = set(names)
    shared = graph.graph.get("shared_weights", {})
    fwd = 0.0
    opt = 0.0
    has_opt = False
    for name in names:
        op: OpSpec = graph.nodes[name]["op"]
        if op.kind == "optimizer":
            has_opt = True
            opt += op.weight_bytes
        elif op.stage == "fwd":
            if shared.get(name) in chosen:
                continue
            fwd += op.weight_bytes
    return max(fwd, opt) if has_opt else fwd


def state_bytes(graph: nx.DiGraph, names: list[str] | tuple[str, ...]) -> float:
    """KV cache and optimizer state (with gradients) of the ops ``names`` (bytes)."""
    total = 0.0
    for name in names:
        op: OpSpec = graph.nodes[name]["op"]
        if op.kind in ("attention", "optimizer") and op.stage != "bwd":
            total += op.state_bytes
    return total


def kv_cache_bytes(graph: nx.DiGraph, names: list[str] | tuple[str, ...]) -> float:
    """KV cache of the attention ops among ``names`` (bytes; 0 in training)."""
    total = 0.0
    for name in names:
        op: OpSpec = graph.nodes[name]["op"]
        if op.kind == "attention" and op.stage == "fwd":
            total += op.state_bytes
    return total


def saved_activation_bytes(graph: nx.DiGraph, names: list[str] | tuple[str, ...]) -> float:
    """Peak live activation bytes of the ops ``names`` when they run in graph order (training:
    forward activations kept for the backward pass); 0 outside training (bytes)."""
    if graph.graph.get("mode") != "train":
        return 0.0
    chosen = set(names)
    ordered = [n for n in graph.nodes if n in chosen]  # subgraph views do not keep node order
    sub = nx.DiGraph()
    sub.add_nodes_from((n, graph.nodes[n]) for n in ordered)
    sub.add_edges_from((u, v, d) for u, v, d in graph.out_edges(ordered, data=True) if v in chosen)
    return peak_live_activation_bytes(sub)


def layer_input_bytes(graph: nx.DiGraph) -> dict[str, float]:
    """Per Transformer layer unit (``L{i}``), the bytes of forward activations it reads from
    outside the layer (its input hidden state): what activation checkpointing keeps (bytes)."""
    producers: dict[str, dict[str, float]] = {}
    for u, v, d in graph.edges(data=True):
        if d.get("tensor") not in ("activation", "saved"):
            continue
        src: OpSpec = graph.nodes[u]["op"]
        dst: OpSpec = graph.nodes[v]["op"]
        unit = unit_of(dst)
        if src.stage != "fwd" or not unit.startswith("L") or unit_of(src) == unit:
            continue
        producers.setdefault(unit, {})[u] = src.output_bytes
    return {unit: math.fsum(p.values()) for unit, p in producers.items()}


def recomputed_activation_bytes(graph: nx.DiGraph) -> float:
    """Activation bytes a training step keeps at its peak when each layer keeps only its input
    and recomputes its forward just before its backward (activation checkpointing); 0 outside
    training (bytes).

    ``checkpoints`` (every layer's input, :func:`layer_input_bytes`) + the largest unit's own
    peak when its forward and backward run back to back (:func:`saved_activation_bytes` of the
    unit's ops; the head's logits and their gradient are usually the largest) + the gradient
    that enters a layer's backward from the layer above (as large as the largest layer input).
    """
    if graph.graph.get("mode") != "train":
        return 0.0
    inputs = layer_input_bytes(graph)
    peak = max((saved_activation_bytes(graph, u.ops) for u in units(graph)), default=0.0)
    return math.fsum(inputs.values()) + peak + max(inputs.values(), default=0.0)


def resident_bytes(graph: nx.DiGraph, names: list[str] | tuple[str, ...]) -> float:
    """Bytes a stage running ``names`` keeps for the whole run: weights, KV cache, optimizer
    state and (training) saved activations."""
    return (
        weight_bytes(graph, names)
        + state_bytes(graph, names)
        + saved_activation_bytes(graph, names)
    )


def heaviest_op(graph: nx.DiGraph, names: list[str] | tuple[str, ...]) -> str:
    """The op among ``names`` with the most weight and state bytes (to name in fit errors)."""
    return max(
        names,
        key=lambda n: graph.nodes[n]["op"].weight_bytes + graph.nodes[n]["op"].state_bytes,
    )
