"""What a placement is: stages (rectangles of the mesh) and the ops that run on each.

A :class:`Placement` is plain data made by a :class:`PlacementStrategy` from a layer graph and a
:class:`~wse_sim.hardware.spec.WaferSpec`. Its ``schedule`` says how the stages combine in time:

* ``sequential``: every op runs after the previous one (``whole``, or a file with
  ``schedule = "sequential"``); total cycles are the sum over ops.
* ``pipeline``: each stage works on its own batch; a steady stream of batches advances one stage
  per interval, and the interval is the slowest (bottleneck) stage's cycles.
* ``stream``: one stage on the whole mesh whose weights arrive from off-wafer memory layer group
  by layer group (``spec.io.io_bytes_per_s``), overlapped with compute.

Units: ``resident_bytes`` are bytes summed over the stage's PEs (spread evenly over them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import networkx as nx

from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Region

SCHEDULES: tuple[str, ...] = ("sequential", "pipeline", "stream")

ACTIVATION_POLICIES: tuple[str, ...] = ("keep", "recompute")
"""What a training step does with the forward activations its backward pass needs: ``keep``
them on the wafer until the backward pass, or keep only each layer's input and ``recompute``
the layer's forward just before its backward (activation checkpointing; weight streaming)."""


@dataclass(frozen=True)
class Stage:
    """A rectangle of the mesh and the ops that run on it, in execution order.

    Attributes:
        name: for reports (``"whole"``, ``"L0-L3"``, a file rule's name...).
        region: the PEs.
        ops: op names (graph node ids) in execution order.
        resident_bytes: bytes kept on the stage's PEs for the whole run (weights, KV cache,
            optimizer state, saved activations), spread evenly over ``region``.
    """

    name: str
    region: Region
    ops: tuple[str, ...]
    resident_bytes: float = 0.0

    @property
    def resident_bytes_per_pe(self) -> float:
        """``resident_bytes`` over the stage's PEs (bytes per PE)."""
        return self.resident_bytes / self.region.num_pes


@dataclass(frozen=True)
class Placement:
    """Where every op of a graph runs.

    Attributes:
        strategy: the registry name (``whole``, ``pipeline``, ``stream``) or the file's name.
        schedule: one of :data:`SCHEDULES`.
        stages: disjoint rectangles for ``pipeline``; one stage for ``sequential`` placements made
            by ``whole`` and ``stream`` (a file may give several regions to a sequential run).
        notes: one-line remarks for the result (what was modelled, what was chosen).
        activations: one of :data:`ACTIVATION_POLICIES` (training only; ``recompute`` only
            under weight streaming): the lowering then runs each layer's forward ops again
            just before the layer's backward ops.
    """

    strategy: str
    schedule: str
    stages: tuple[Stage, ...]
    notes: tuple[str, ...] = field(default=())
    activations: str = "keep"

    def stage_index(self) -> dict[str, int]:
        """Map op name -> index of its stage in :attr:`stages`."""
        return {op: i for i, stage in enumerate(self.stages) for op in stage.ops}

    def region_of(self, op: str) -> Region:
        """The region op ``op`` runs on."""
        return self.stages[self.stage_index()[op]].region

    def ops(self) -> list[str]:
        """Every placed op, stage by stage."""
        return [op for stage in self.stages for op in stage.ops]


class PlacementStrategy(ABC):
    """Base of every placement in :data:`wse_sim.placement.registry.PLACEMENTS`."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def place(self, graph: nx.DiGraph, spec: WaferSpec) -> Placement:
        """Assign every op of ``graph`` to a stage; raise :class:`~wse_sim.errors.PlanError`
        (one line) when the resident bytes cannot fit."""


def whole_mesh(spec: WaferSpec) -> Region:
    """The whole mesh as a region."""
    return Region(0, 0, spec.mesh.width, spec.mesh.height)
