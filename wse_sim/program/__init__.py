"""Kernel program IR (engine-independent)."""

from wse_sim.program.ir import (
    Compute,
    Coord,
    Dest,
    IntField,
    Op,
    Phase,
    Program,
    Recv,
    Region,
    Send,
    Stream,
    active,
    value_at,
)

__all__ = [
    "Compute",
    "Coord",
    "Dest",
    "IntField",
    "Op",
    "Phase",
    "Program",
    "Recv",
    "Region",
    "Send",
    "Stream",
    "active",
    "value_at",
]
