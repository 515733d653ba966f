"""Placement: which rectangle of the mesh each op of the layer graph runs on.

Strategies by name in :data:`registry.PLACEMENTS` (``whole``, ``pipeline``, ``stream``, ``auto``)
or a TOML / JSON file (:mod:`.file`); each makes a :class:`Placement` of :class:`Stage` objects.
"""

from wse_sim.placement.base import SCHEDULES, Placement, PlacementStrategy, Stage
from wse_sim.placement.registry import PLACEMENTS, get_placement

__all__ = ["PLACEMENTS", "SCHEDULES", "Placement", "PlacementStrategy", "Stage", "get_placement"]
