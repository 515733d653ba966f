"""The kernel program IR: per-PE phases of send / receive / compute over a rectangle of the mesh.

The IR is plain data (no SimPy, no engine state), so that every engine can execute it:

* A :class:`Program` runs on a :class:`Region` and is a list of :class:`Phase` objects.
* A phase is a list of SPMD operations. Every PE of the region walks the operations in order and
  executes those whose ``mask`` is true at its position; phases add no barrier, they only group
  operations for traces and reports.
* Per-PE quantities are :data:`IntField` values: a Python int for every PE, or an integer numpy
  array of shape ``(region.height, region.width)`` indexed ``[row, column]`` (that is ``[y, x]``
  relative to the region's north-west corner).

Coordinates are ``(x, y)``: x grows to the east (columns), y grows to the south (rows).

Timing semantics (engines must honour them, docs/engine.md gives the formulas):

* :class:`Send` pushes ``wavelets`` wavelets on ``color`` into the fabric, one every ``interval``
  cycles, towards every PE of its :class:`Dest` rectangle (a multicast tree when more than one).
* :class:`Recv` consumes ``wavelets`` wavelets from ``color``, one every ``interval`` cycles at
  best. It takes the oldest message on that color from its ``src`` PE (from any PE when ``src``
  is ``None``; then several senders on one color are matched in the order the engine saw them,
  so give each sender its own color or name the source).
* :class:`Compute` runs vector instructions; its cycles come from
  :func:`wse_sim.hardware.cost.vector_cycles`.
* :class:`Stream` fuses a receive, a per-element computation and an optional send: the output
  starts leaving as soon as the first input wavelet arrives (cut-through through the PE).

Functional mode: each PE owns a ``dict`` of numpy arrays (``Program.init``); a send ships a copy
of ``memory[buffer]``; a receive stores the payload in ``memory[buffer]``; ``Compute.fn`` and
``Stream.fn`` update the memory. Timing-only runs ignore all of these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Coord = tuple[int, int]
IntField = int | np.ndarray
"""An int for every PE, or an int array of shape (region.height, region.width)."""

Memory = dict[str, Any]
ComputeFn = Callable[[Memory, int, int], None]
"""``fn(memory, x, y)``: update the PE's memory in place (absolute mesh coordinates)."""
StreamFn = Callable[[Memory, int, int, Any], Any]
"""``fn(memory, x, y, incoming_payload) -> outgoing_payload`` (``None`` when nothing is sent)."""


@dataclass(frozen=True)
class Region:
    """A rectangle of PEs: north-west corner ``(x, y)`` and its size, all in PEs."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.x < 0 or self.y < 0:
            raise ValueError(f"region {self} must have x, y >= 0 and width, height > 0")

    @property
    def num_pes(self) -> int:
        return self.width * self.height

    @property
    def shape(self) -> tuple[int, int]:
        """Array shape ``(height, width)`` of per-PE fields."""
        return (self.height, self.width)

    def contains(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height

    def coords(self) -> Iterator[Coord]:
        """Absolute coordinates, row by row."""
        for y in range(self.y, self.y + self.height):
            for x in range(self.x, self.x + self.width):
                yield (x, y)


def value_at(v: IntField, region: Region, x: int, y: int) -> int:
    """The value of a per-PE field at absolute ``(x, y)``."""
    if isinstance(v, np.ndarray):
        return int(v[y - region.y, x - region.x])
    return int(v)


@dataclass(frozen=True)
class Dest:
    """Destinations of a send, relative to the sender: every PE with
    ``dx0 <= x - sender_x <= dx1`` and ``dy0 <= y - sender_y <= dy1``, the sender excluded.

    One PE is a unicast, routed dimension-order (X then Y). Several PEs form a multicast tree:
    along the sender's row first, then branching north/south along each column; each link of the
    tree carries every wavelet once.
    """

    dx0: IntField = 0
    dx1: IntField = 0
    dy0: IntField = 0
    dy1: IntField = 0

    @staticmethod
    def to(dx: IntField, dy: IntField) -> Dest:
        """A unicast to the PE at offset ``(dx, dy)``."""
        return Dest(dx, dx, dy, dy)

    def resolve(self, region: Region, x: int, y: int) -> tuple[int, int, int, int]:
        """Absolute inclusive bounds ``(x0, x1, y0, y1)`` for the sender at ``(x, y)``."""
        return (
            x + value_at(self.dx0, region, x, y),
            x + value_at(self.dx1, region, x, y),
            y + value_at(self.dy0, region, x, y),
            y + value_at(self.dy1, region, x, y),
        )


@dataclass
class Send:
    """Push ``wavelets`` wavelets on ``color`` to ``dest``, one every ``interval`` cycles.

    A blocking send (the default) keeps the compute engine busy until its last wavelet has left.
    A ``background`` send costs the compute engine one instruction issue; its wavelets leave
    through the PE's output ramp while the engine goes on (a receive or a computation can overlap
    it), after any earlier background send of the same PE. The data must stay untouched until
    the send is done (kernels double-buffer).
    """

    color: IntField
    wavelets: IntField
    dest: Dest
    mask: np.ndarray | None = None
    buffer: str | None = None
    interval: IntField = 1
    background: bool = False


@dataclass
class Recv:
    """Consume ``wavelets`` wavelets arriving on ``color`` (sent from offset ``src``)."""

    color: IntField
    wavelets: IntField
    src: tuple[IntField, IntField] | None = None
    mask: np.ndarray | None = None
    buffer: str | None = None
    interval: IntField = 1


@dataclass
class Compute:
    """Vector instructions: ``elements`` element-ops of ``kind`` (see ``hardware.cost``)."""

    kind: str
    elements: IntField
    dtype: str = "fp16"
    instructions: IntField = 1
    sram_read_bytes: IntField = 0
    sram_write_bytes: IntField = 0
    mask: np.ndarray | None = None
    fn: ComputeFn | None = None


@dataclass
class Stream:
    """Consume a message while computing on it and (optionally) forwarding a result.

    ``compute.elements`` is the work for the whole message. The output's first wavelet leaves
    ``instruction_overhead`` cycles after the first input wavelet arrives; the stream then runs at
    the slower of the input rate and the compute rate per wavelet.
    """

    recv: Recv
    compute: Compute
    send: Send | None = None
    mask: np.ndarray | None = None
    fn: StreamFn | None = None


Op = Send | Recv | Compute | Stream


@dataclass
class Phase:
    """A named group of SPMD operations (no barrier between phases)."""

    name: str
    ops: list[Op] = field(default_factory=list)


@dataclass
class Program:
    """A kernel program: phases of SPMD operations over ``region``.

    Attributes:
        name: kernel name (for reports).
        region: the PEs it runs on.
        phases: executed in order by every PE.
        sram_bytes: data footprint per PE in bytes (int or per-PE array), allocated before the run.
        flops: total FLOPs the program executes (for conservation checks).
        init: functional mode: ``init(x, y) -> memory`` for each PE.
        collect: functional mode: ``collect({(x, y): memory}) -> result`` assembles the output.
    """

    name: str
    region: Region
    phases: list[Phase] = field(default_factory=list)
    sram_bytes: IntField = 0
    flops: float = 0.0
    init: Callable[[int, int], Memory] | None = None
    collect: Callable[[dict[Coord, Memory]], Any] | None = None

    def ops(self) -> Iterator[tuple[Phase, Op]]:
        for phase in self.phases:
            for op in phase.ops:
                yield phase, op


def active(mask: np.ndarray | None, region: Region, x: int, y: int) -> bool:
    """Whether the PE at absolute ``(x, y)`` executes an op with ``mask``."""
    return mask is None or bool(mask[y - region.y, x - region.x])
