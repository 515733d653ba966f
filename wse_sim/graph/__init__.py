"""Layer graph: a networkx DiGraph of :class:`OpSpec` nodes for prefill, decode or training."""

from wse_sim.graph.ops import OP_KINDS, OpSpec

__all__ = ["OP_KINDS", "OpSpec"]
