"""Layer graph: a networkx DiGraph of :class:`OpSpec` nodes for prefill, decode or training."""

from wse_sim.graph.build import MODES, build_graph
from wse_sim.graph.ops import OP_KINDS, OpSpec
from wse_sim.graph.summary import MemoryBudget, Totals, memory_budget, totals, totals_by

__all__ = [
    "MODES",
    "OP_KINDS",
    "MemoryBudget",
    "OpSpec",
    "Totals",
    "build_graph",
    "memory_budget",
    "totals",
    "totals_by",
]
