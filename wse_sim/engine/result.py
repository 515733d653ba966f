"""What an engine returns after executing one program: plain data and numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DIRECTIONS: tuple[str, ...] = ("east", "west", "north", "south")
"""Index order of the first axis of every per-link array."""


@dataclass(frozen=True)
class Span:
    """A busy interval of one PE, for traces: ``kind`` is compute, send, recv or stream."""

    x: int
    y: int
    kind: str
    name: str
    start: float
    end: float


@dataclass
class EngineResult:
    """Statistics of one program run; arrays are shaped like the whole mesh, indexed ``[y, x]``.

    Attributes:
        cycles: cycle at which the last PE finished (the program starts at cycle 0).
        pe_busy_cycles: cycles each PE's compute engine was busy (compute, injecting, draining).
        pe_flops: FLOPs executed per PE.
        pe_sram_peak_bytes: peak SRAM bytes allocated per PE.
        link_wavelets: ``(4, H, W)``: wavelets carried by the link leaving router ``[y, x]``
            towards east, west, north, south (:data:`DIRECTIONS`).
        link_busy_cycles: ``(4, H, W)``: cycles the link carried a wavelet.
        link_stall_cycles: ``(4, H, W)``: cycles a message held the link without moving
            (waiting for the next hop or for the receiver).
        messages: sends executed.
        wavelets_injected: wavelets pushed into the fabric by senders (once per send).
        wavelets_expected: wavelets owed to receivers (per send: wavelets x destinations).
        wavelets_delivered: wavelets consumed by receivers.
        events: SimPy events processed (0 for non-DES engines).
        wall_seconds: host time the run took.
        output: ``program.collect(memories)`` in functional mode, else ``None``.
        memories: per-PE memory in functional mode, else ``None``.
        spans: per-PE busy intervals when the engine was asked to record them.
    """

    cycles: float
    pe_busy_cycles: np.ndarray
    pe_flops: np.ndarray
    pe_sram_peak_bytes: np.ndarray
    link_wavelets: np.ndarray
    link_busy_cycles: np.ndarray
    link_stall_cycles: np.ndarray
    messages: int = 0
    wavelets_injected: int = 0
    wavelets_expected: int = 0
    wavelets_delivered: int = 0
    events: int = 0
    wall_seconds: float = 0.0
    output: Any = None
    memories: dict[tuple[int, int], dict[str, Any]] | None = None
    spans: list[Span] | None = field(default=None)

    @classmethod
    def empty(cls, height: int, width: int) -> EngineResult:
        z2 = np.zeros((height, width))
        z3 = np.zeros((4, height, width))
        return cls(0.0, z2.copy(), z2.copy(), z2.copy(), z3.copy(), z3.copy(), z3.copy())
