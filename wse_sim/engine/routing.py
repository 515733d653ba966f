"""Static dimension-order routes on the 2D mesh, as trees of directed links.

A directed link is identified by the router it leaves and its direction; its flat index is
``(direction * height + y) * width + x`` with directions east, west, north, south
(:data:`wse_sim.engine.result.DIRECTIONS`). North is ``y - 1``.

A route from one sender to a rectangle of receivers is the union of the dimension-order (X then
Y) paths to every receiver: along the sender's row first, then along each column. That union is a
tree; every link in it carries the message once (hardware multicast copies at routers).
"""

from __future__ import annotations

from dataclasses import dataclass

EAST, WEST, NORTH, SOUTH = 0, 1, 2, 3


@dataclass(frozen=True)
class RouteTree:
    """Links of a route in parent-before-child order.

    Attributes:
        links: flat link indices.
        parents: for each link, the position in ``links`` of the link before it (-1: it leaves
            the sender's own router).
        depths: hops from the sender's router to the far end of each link (1 for the first).
        dests: receivers ``(x, y)``.
        dest_link: for each receiver, the position in ``links`` of the link that enters it.
    """

    links: tuple[int, ...]
    parents: tuple[int, ...]
    depths: tuple[int, ...]
    dests: tuple[tuple[int, int], ...]
    dest_link: tuple[int, ...]
    dest_hops: tuple[int, ...]
    """Manhattan distance from the sender to each receiver."""
    min_hops: int
    """The smallest of ``dest_hops``."""
    dest_ids: tuple[int, ...]
    """``y * width + x`` of each receiver (a compact key)."""
    src: tuple[int, int]
    """The sender."""

    def hops(self, i: int) -> int:
        """Manhattan distance from the sender to receiver ``i``."""
        return self.dest_hops[i]


class Router:
    """Builds and caches route trees for one mesh size."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._cache: dict[tuple[int, int, int, int, int, int], RouteTree] = {}
        self.cached = self._cache.get
        """``cached((sx, sy, x0, x1, y0, y1))``: the tree if it was built before, else None."""

    @property
    def num_links(self) -> int:
        return 4 * self.width * self.height

    def trees(self) -> list[RouteTree]:
        """Every tree built so far."""
        return list(self._cache.values())

    def link(self, x: int, y: int, direction: int) -> int:
        """Flat index of the link leaving router ``(x, y)`` towards ``direction``."""
        return (direction * self.height + y) * self.width + x

    def unravel(self, link: int) -> tuple[int, int, int]:
        """``(x, y, direction)`` of a flat link index."""
        direction, rest = divmod(link, self.width * self.height)
        y, x = divmod(rest, self.width)
        return x, y, direction

    def tree(self, sx: int, sy: int, x0: int, x1: int, y0: int, y1: int) -> RouteTree:
        """The route from ``(sx, sy)`` to every PE of ``[x0, x1] x [y0, y1]`` but the sender.

        Raises ``ValueError`` when the rectangle leaves the mesh or holds only the sender.
        """
        key = (sx, sy, x0, x1, y0, y1)
        tree = self._cache.get(key)
        if tree is None:
            tree = self._build(*key)
            self._cache[key] = tree
        return tree

    def _build(self, sx: int, sy: int, x0: int, x1: int, y0: int, y1: int) -> RouteTree:
        if x0 > x1 or y0 > y1 or x0 < 0 or y0 < 0 or x1 >= self.width or y1 >= self.height:
            raise ValueError(
                f"destination rectangle x {x0}..{x1}, y {y0}..{y1} of the send from "
                f"({sx}, {sy}) is empty or leaves the {self.width}x{self.height} mesh"
            )
        links: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        entering: dict[tuple[int, int], int] = {}  # router -> position of the link entering it

        def walk(x: int, y: int, parent: int, depth: int, direction: int, steps: int) -> None:
            """Add ``steps`` links from ``(x, y)`` towards ``direction``."""
            dx = {EAST: 1, WEST: -1}.get(direction, 0)
            dy = {SOUTH: 1, NORTH: -1}.get(direction, 0)
            for _ in range(steps):
                links.append(self.link(x, y, direction))
                parents.append(parent)
                depth += 1
                depths.append(depth)
                parent = len(links) - 1
                x, y = x + dx, y + dy
                entering[(x, y)] = parent

        # Along the sender's row: to the east and west ends of the rectangle's columns.
        if x1 > sx:
            walk(sx, sy, -1, 0, EAST, x1 - sx)
        if x0 < sx:
            walk(sx, sy, -1, 0, WEST, sx - x0)
        # Then along every column of the rectangle.
        for x in range(x0, x1 + 1):
            start = entering.get((x, sy), -1)
            base = depths[start] if start >= 0 else 0
            if y1 > sy:
                walk(x, sy, start, base, SOUTH, y1 - sy)
            if y0 < sy:
                walk(x, sy, start, base, NORTH, sy - y0)
        dests: list[tuple[int, int]] = []
        dest_link: list[int] = []
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                if (x, y) != (sx, sy):
                    dests.append((x, y))
                    dest_link.append(entering[(x, y)])
        if not dests:
            raise ValueError(f"the send from ({sx}, {sy}) has no destination besides itself")
        hops = tuple(depths[i] for i in dest_link)
        return RouteTree(
            tuple(links),
            tuple(parents),
            tuple(depths),
            tuple(dests),
            tuple(dest_link),
            hops,
            min(hops),
            tuple(y * self.width + x for x, y in dests),
            (sx, sy),
        )
