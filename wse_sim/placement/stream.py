"""``stream``: weight streaming. Activations stay on the wafer; weights arrive from off-wafer.

Every op runs on the whole mesh, as in ``whole``, but only the KV cache (and, in training, the
activations the backward pass needs) stay resident. Each layer group's weights (:mod:`.units`)
are loaded from the external weight store at ``spec.io.io_bytes_per_s`` while the previous
group computes; on the wafer an op holds its own weights and a prefetch buffer for the next
ones. The optimizer state never comes to the wafer: the weight store applies the update as the
gradients arrive. With ``--wafers N`` the wafers run data parallel: weights are broadcast to
every wafer and weight gradients reduced across them by the wafer interconnect
(``spec.io.wafer_interconnect_bytes_per_s``); the timing model is in
:mod:`wse_sim.lowering.schedule` and docs/placement.md.

Training keeps the forward activations in one of two ways (:data:`ACTIVATION_POLICIES`):
``keep`` (all of them, from the forward to the backward pass) or ``recompute`` (only each
layer's input; the layer's forward runs again just before its backward).
"""

from __future__ import annotations

import math

import networkx as nx

from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware.spec import WaferSpec
from wse_sim.placement.base import (
    ACTIVATION_POLICIES,
    Placement,
    PlacementStrategy,
    Stage,
    whole_mesh,
)
from wse_sim.placement.units import (
    kv_cache_bytes,
    recomputed_activation_bytes,
    saved_activation_bytes,
)


def streamed_resident_bytes(graph: nx.DiGraph, activations: str = "keep") -> float:
    """Bytes that stay on the wafer under weight streaming: the KV cache and (training) the
    activations kept for the backward pass under the ``activations`` policy (bytes).

    Weights pass through: the lowering adds each op's weights and a prefetch buffer of the same
    size to the op's working set; optimizer state stays off the wafer."""
    names = tuple(graph.nodes)
    if activations == "recompute":
        saved = recomputed_activation_bytes(graph)
    else:
        saved = saved_activation_bytes(graph, names)
    return kv_cache_bytes(graph, names) + saved


class Stream(PlacementStrategy):
    """Weight streaming with the training activation policy ``activations``."""

    name = "stream"
    description = (
        "weight streaming: activations on the wafer, weights from off-wafer memory overlapped "
        "with compute; --wafers N for data parallel"
    )

    def __init__(self, activations: str = "keep") -> None:
        if activations not in ACTIVATION_POLICIES:
            raise ConfigError(
                "activations", activations, f"use one of {', '.join(ACTIVATION_POLICIES)}"
            )
        self.activations = activations

    def place(self, graph: nx.DiGraph, spec: WaferSpec) -> Placement:
        names = tuple(graph.nodes)
        region = whole_mesh(spec)
        train = graph.graph.get("mode") == "train"
        policy = self.activations if train else "keep"
        resident = streamed_resident_bytes(graph, policy)
        per_pe = resident / region.num_pes
        cap = spec.pe.data_sram_bytes
        if per_pe > cap:
            what = "saved activations" if train else "KV cache"
            raise PlanError(
                f"placement stream: the {what} ({policy}) need {math.ceil(per_pe)} bytes per PE "
                f"but a PE has {cap} bytes (pe.data_sram_bytes) on its "
                f"{region.width}x{region.height} region; use a smaller --batch / --seq, more "
                "--wafers or a bigger --mesh"
            )
        notes = [
            "stream: weights loaded per layer group at io.io_bytes_per_s, overlapped with the "
            "previous group's compute; optimizer updates applied by the external weight store"
        ]
        if train:
            notes.append(
                "stream: saved activations kept on the wafer until the backward pass"
                if policy == "keep"
                else "stream: activations recomputed: each layer keeps only its input on the "
                "wafer and runs its forward again just before its backward (*.recompute ops)"
            )
        stage = Stage("wafer", region, names, resident)
        return Placement(self.name, "stream", (stage,), tuple(notes), policy)
