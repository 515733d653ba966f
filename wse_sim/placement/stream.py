"""``stream``: weight streaming. Activations stay on the wafer; weights arrive from off-wafer.

Every op runs on the whole mesh, as in ``whole``, but only the KV cache (and, in training, the
saved activations) stay resident. Each layer group's weights (:mod:`.units`) are loaded from the
external weight store at ``spec.io.io_bytes_per_s`` while the previous group computes; on the
wafer an op holds its own weights and a prefetch buffer for the next ones. With ``--wafers N`` the wafers run data parallel:
weights are broadcast to every wafer and weight gradients reduced across them by the wafer
interconnect (``spec.io.wafer_interconnect_bytes_per_s``); the timing model is in
:mod:`wse_sim.lowering.schedule` and docs/placement.md.
"""

from __future__ import annotations

import networkx as nx

from wse_sim.hardware.spec import WaferSpec
from wse_sim.placement.base import Placement, PlacementStrategy, Stage, whole_mesh
from wse_sim.placement.fit import check_resident
from wse_sim.placement.units import heaviest_op, saved_activation_bytes


def streamed_resident_bytes(graph: nx.DiGraph) -> float:
    """Bytes that stay on the wafer under weight streaming: the KV cache and (training) the saved
    activations. Weights pass through: the lowering adds each op's weights and a prefetch buffer
    of the same size to the op's working set; optimizer state stays off the wafer."""
    names = tuple(graph.nodes)
    kv = sum(
        graph.nodes[n]["op"].state_bytes
        for n in names
        if graph.nodes[n]["op"].kind == "attention" and graph.nodes[n]["op"].stage == "fwd"
    )
    return kv + saved_activation_bytes(graph, names)


class Stream(PlacementStrategy):
    name = "stream"
    description = (
        "weight streaming: activations on the wafer, weights from off-wafer memory overlapped "
        "with compute; --wafers N for data parallel"
    )

    def place(self, graph: nx.DiGraph, spec: WaferSpec) -> Placement:
        names = tuple(graph.nodes)
        region = whole_mesh(spec)
        resident = streamed_resident_bytes(graph)
        check_resident(self.name, heaviest_op(graph, names), region, spec, resident, resident)
        notes = (
            "stream: weights loaded per layer group at io.io_bytes_per_s, overlapped with the "
            "previous group's compute; optimizer updates applied by the external weight store",
        )
        return Placement(self.name, "stream", (Stage("wafer", region, names, resident),), notes)
