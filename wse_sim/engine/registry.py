"""Engines by name: one source of truth for ``--engine`` and ``wse-sim presets engines``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineInfo:
    name: str
    description: str


ENGINES: dict[str, EngineInfo] = {
    e.name: e
    for e in (
        EngineInfo(
            "des",
            "discrete-event (SimPy): every PE and message simulated; exact cut-through timing, "
            "contention, backpressure and deadlock detection; small and medium meshes",
        ),
        EngineInfo(
            "analytic",
            "closed-form estimates of each kernel (docs/kernels.md); any mesh size, instant",
        ),
    )
}
