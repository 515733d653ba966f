"""``whole``: every op runs on the whole mesh, one after another; all weights stay resident.

As in WaferLLM, the weights (and KV cache, and in training the optimizer state and the saved
activations) of every layer are tiled over all PEs for the whole run, and each op uses the whole
grid in turn. The run's cycles are the sum of the ops' cycles.
"""

from __future__ import annotations

import networkx as nx

from wse_sim.hardware.spec import WaferSpec
from wse_sim.placement.base import Placement, PlacementStrategy, Stage, whole_mesh
from wse_sim.placement.fit import check_resident
from wse_sim.placement.units import heaviest_op, resident_bytes


class Whole(PlacementStrategy):
    name = "whole"
    description = (
        "every op on the whole mesh in turn; all layers' weights resident, tiled over the grid"
    )

    def place(self, graph: nx.DiGraph, spec: WaferSpec) -> Placement:
        names = tuple(graph.nodes)
        region = whole_mesh(spec)
        resident = resident_bytes(graph, names)
        check_resident(self.name, heaviest_op(graph, names), region, spec, resident, resident)
        stage = Stage("whole", region, names, resident)
        return Placement(self.name, "sequential", (stage,))
