"""Totals over a layer graph (for reports) and its memory budget.

All byte counts are bytes, FLOPs are FLOPs (an FMAC is 2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import networkx as nx

from wse_sim.errors import ConfigError
from wse_sim.graph.ops import OpSpec
from wse_sim.hardware.spec import DTYPE_BYTES

GROUP_KEYS: tuple[str, ...] = ("kind", "stage", "kernel", "layer")


@dataclass(frozen=True)
class Totals:
    """Sums over a set of ops.

    Attributes:
        ops: number of ops.
        flops: FLOPs.
        weight_bytes: parameter bytes the ops read (a tied matrix counts for each op reading it).
        activation_bytes: activation (or gradient) bytes the ops write (``output_bytes``).
        input_bytes: activation bytes the ops read.
        state_bytes: resident state: KV cache, optimizer state and gradients.
    """

    ops: int = 0
    flops: float = 0.0
    weight_bytes: float = 0.0
    activation_bytes: float = 0.0
    input_bytes: float = 0.0
    state_bytes: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def ops(graph: nx.DiGraph) -> list[OpSpec]:
    """The graph's ops in node (execution) order."""
    return [data["op"] for _, data in graph.nodes(data=True)]


def _sum(items: list[OpSpec]) -> Totals:
    return Totals(
        ops=len(items),
        flops=math.fsum(o.flops for o in items),
        weight_bytes=math.fsum(o.weight_bytes for o in items),
        activation_bytes=math.fsum(o.output_bytes for o in items),
        input_bytes=math.fsum(o.input_bytes for o in items),
        state_bytes=math.fsum(o.state_bytes for o in items),
    )


def totals(graph: nx.DiGraph) -> Totals:
    """Sums over every op of the graph."""
    return _sum(ops(graph))


def totals_by(graph: nx.DiGraph, key: str = "kind") -> dict[str, Totals]:
    """Sums grouped by an op attribute (``kind``, ``stage``, ``kernel`` or ``layer``).

    Groups appear in the order their first op appears; ``layer`` groups are named ``"0"``,
    ``"1"``, ... and ``"-"`` for ops outside the layers.
    """
    if key not in GROUP_KEYS:
        raise ConfigError("key", key, f"use one of {', '.join(GROUP_KEYS)}")
    groups: dict[str, list[OpSpec]] = {}
    for op in ops(graph):
        value = getattr(op, key)
        groups.setdefault("-" if value is None else str(value), []).append(op)
    return {name: _sum(items) for name, items in groups.items()}


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes a model run keeps resident.

    Attributes:
        weights: parameters, each shared matrix once (``params * element bytes``).
        kv_cache: KV cache (sum of the attention ops' ``state_bytes``; 0 in training).
        activations: peak bytes of live activations and gradients when the ops run one after
            another in node order: an op's output lives from the op to its last consumer
            (weight gradients excluded: they are counted in ``optimizer_state``). In training
            this includes the forward activations saved for the backward pass.
        optimizer_state: AdamW state and gradients (sum of the optimizer ops' ``state_bytes``).
    """

    weights: float
    kv_cache: float
    activations: float
    optimizer_state: float

    @property
    def total(self) -> float:
        """Sum of the four parts (bytes)."""
        return self.weights + self.kv_cache + self.activations + self.optimizer_state

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def peak_live_activation_bytes(graph: nx.DiGraph) -> float:
    """Peak of the summed ``output_bytes`` live at once when ops run in node order (bytes)."""
    order = {name: i for i, name in enumerate(graph.nodes)}
    delta = [0.0] * (len(order) + 1)
    for name, i in order.items():
        op: OpSpec = graph.nodes[name]["op"]
        if op.output_bytes <= 0:
            continue
        succ = list(graph.successors(name))
        uses = [order[s] for s in succ if graph.edges[name, s].get("tensor") != "weight_grad"]
        if succ and not uses:
            continue  # a weight gradient: counted in the optimizer state
        last = max(uses, default=i)
        delta[i] += op.output_bytes
        delta[last + 1] -= op.output_bytes
    peak = live = 0.0
    for d in delta:
        live += d
        peak = max(peak, live)
    return peak


def memory_budget(graph: nx.DiGraph) -> MemoryBudget:
    """Weights, KV cache, activations and optimizer state of a graph from :func:`build_graph`."""
    all_ops = ops(graph)
    return MemoryBudget(
        weights=float(graph.graph["params"] * DTYPE_BYTES[graph.graph["dtype"]]),
        kv_cache=math.fsum(o.state_bytes for o in all_ops if o.kind == "attention"),
        activations=peak_live_activation_bytes(graph),
        optimizer_state=math.fsum(o.state_bytes for o in all_ops if o.kind == "optimizer"),
    )
