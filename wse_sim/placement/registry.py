"""Placements by name (``--placement NAME``), or a TOML / JSON file (``--placement FILE``)."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware.spec import WaferSpec
from wse_sim.placement.base import Placement, PlacementStrategy
from wse_sim.placement.file import FilePlacement
from wse_sim.placement.pipeline import Pipeline
from wse_sim.placement.stream import Stream
from wse_sim.placement.whole import Whole


class Auto(PlacementStrategy):
    """``whole`` when the weights fit on the mesh, else ``stream`` (the run says which).

    ``pipeline`` is never chosen automatically: its throughput needs as many independent
    batches in flight as it has stages, and its one-batch latency is no better than ``whole``'s;
    ask for it with ``--placement pipeline``."""

    name = "auto"
    description = "whole when all weights fit on the mesh, else stream"

    def place(self, graph: nx.DiGraph, spec: WaferSpec) -> Placement:
        try:
            return Whole().place(graph, spec)
        except PlanError as exc:
            placed = Stream().place(graph, spec)
            note = f"auto: whole does not fit ({exc}); using stream"
            return Placement(placed.strategy, placed.schedule, placed.stages, (note, *placed.notes))


PLACEMENTS: dict[str, PlacementStrategy] = {
    p.name: p for p in (Whole(), Pipeline(), Stream(), Auto())
}
"""Every named placement; ``wse-sim presets placements`` lists them."""

DEFAULT_PLACEMENT = "auto"
"""The placement of ``wse-sim run`` and ``wse_sim.run`` when none is given (one source for
both)."""

FILE_SUFFIXES = (".toml", ".json")


def get_placement(name_or_path: str | Path) -> PlacementStrategy:
    """A registered placement, or a :class:`FilePlacement` for a ``.toml`` / ``.json`` path."""
    key = str(name_or_path)
    if key in PLACEMENTS:
        return PLACEMENTS[key]
    path = Path(key)
    if path.suffix.lower() in FILE_SUFFIXES or path.is_file():
        if not path.is_file():
            raise ConfigError("placement", key, "no such file")
        return FilePlacement(path)
    raise ConfigError(
        "placement", key, f"use one of {', '.join(PLACEMENTS)} or a .toml / .json placement file"
    )
