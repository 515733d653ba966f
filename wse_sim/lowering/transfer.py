"""Activations moving between two regions of the mesh: a tiny fabric program of its own.

The bytes cross the gap between the two rectangles in parallel *lanes*, one message per lane:

* side by side (their rows overlap): one lane per shared row, from the source's column that faces
  the destination to the destination's facing column;
* one above the other (their columns overlap): one lane per shared column, likewise;
* neither (diagonal): one lane from the source's corner nearest the destination to the
  destination's nearest corner (routed X then Y).

Each lane carries ``ceil(bytes / lanes / link bytes)`` wavelets. The gather of the data to the
facing edge inside the source region is not modelled (nor the scatter inside the destination).
Overlapping regions share PEs: no transfer is charged. ``analytic`` costs a lane with
:func:`wse_sim.hardware.cost.message_cycles`; ``des`` runs the :class:`Program` below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wse_sim.engine.result import DIRECTIONS
from wse_sim.hardware.cost import message_cycles, wavelets
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Dest, Phase, Program, Recv, Region, Send

EAST, WEST, NORTH, SOUTH = (DIRECTIONS.index(d) for d in ("east", "west", "north", "south"))


@dataclass(frozen=True)
class Lanes:
    """Geometry of a transfer, relative to the bounding box of the two regions.

    Attributes:
        box: the bounding box (absolute).
        senders: ``(x, y)`` of each lane's sender, relative to ``box``.
        dx, dy: offset from a sender to its receiver (the same for every lane).
        n: wavelets per lane.
    """

    box: Region
    senders: tuple[tuple[int, int], ...]
    dx: int
    dy: int
    n: int

    @property
    def hops(self) -> int:
        return abs(self.dx) + abs(self.dy)

    def key(self) -> tuple:
        return (self.box.width, self.box.height, self.senders, self.dx, self.dy, self.n)


def _span(a0: int, a1: int, b0: int, b1: int) -> tuple[int, int]:
    return max(a0, b0), min(a1, b1)


def lanes(spec: WaferSpec, src: Region, dst: Region, nbytes: float) -> Lanes | None:
    """The lanes that carry ``nbytes`` bytes from ``src`` to ``dst``; ``None`` when the regions
    overlap (or nothing moves)."""
    if nbytes <= 0:
        return None
    rows = _span(src.y, src.y + src.height, dst.y, dst.y + dst.height)
    cols = _span(src.x, src.x + src.width, dst.x, dst.x + dst.width)
    if rows[0] < rows[1] and cols[0] < cols[1]:
        return None
    box_x0, box_y0 = min(src.x, dst.x), min(src.y, dst.y)
    box_x1 = max(src.x + src.width, dst.x + dst.width)
    box_y1 = max(src.y + src.height, dst.y + dst.height)
    box = Region(box_x0, box_y0, box_x1 - box_x0, box_y1 - box_y0)
    east = dst.x >= src.x + src.width
    south = dst.y >= src.y + src.height
    sx = src.x + src.width - 1 if east else src.x
    rx = dst.x if east else dst.x + dst.width - 1
    sy = src.y + src.height - 1 if south else src.y
    ry = dst.y if south else dst.y + dst.height - 1
    if rows[0] < rows[1]:  # side by side
        pts = [(sx, y) for y in range(*rows)]
        dx, dy = rx - sx, 0
    elif cols[0] < cols[1]:  # one above the other
        pts = [(x, sy) for x in range(*cols)]
        dx, dy = 0, ry - sy
    else:  # diagonal: corner to corner
        pts = [(sx, sy)]
        dx, dy = rx - sx, ry - sy
    n = wavelets(spec, math.ceil(nbytes / len(pts)))
    rel = tuple((x - box.x, y - box.y) for x, y in pts)
    return Lanes(box, rel, dx, dy, n)


def transfer_cycles(spec: WaferSpec, lane: Lanes) -> float:
    """Closed form: every lane is one message on its own links (``message_cycles``)."""
    return float(message_cycles(spec, lane.hops, lane.n))


def link_wavelets(lane: Lanes) -> np.ndarray:
    """``(4, H, W)`` wavelets on the box's links: each lane's X-then-Y path carries ``n``."""
    out = np.zeros((4, lane.box.height, lane.box.width))
    for x, y in lane.senders:
        step = 1 if lane.dx > 0 else -1
        for i in range(abs(lane.dx)):
            out[EAST if step > 0 else WEST, y, x + i * step] += lane.n
        x2 = x + lane.dx
        step = 1 if lane.dy > 0 else -1
        for i in range(abs(lane.dy)):
            out[SOUTH if step > 0 else NORTH, y + i * step, x2] += lane.n
    return out


def program(lane: Lanes) -> Program:
    """The transfer as an IR program on the box (at the origin of a box-sized mesh)."""
    h, w = lane.box.height, lane.box.width
    send = np.zeros((h, w), dtype=bool)
    recv = np.zeros((h, w), dtype=bool)
    for x, y in lane.senders:
        send[y, x] = True
        recv[y + lane.dy, x + lane.dx] = True
    ops = [
        Send(0, lane.n, Dest.to(lane.dx, lane.dy), mask=send),
        Recv(0, lane.n, src=(-lane.dx, -lane.dy), mask=recv),
    ]
    return Program(
        name="transfer", region=Region(0, 0, w, h), phases=[Phase("transfer", ops)], flops=0.0
    )
