"""Resolve a program's SPMD operations into per-PE operation tuples for the DES.

Per-PE fields (ints or arrays over the region) are resolved once per operation with numpy, and
each active PE gets one small tuple per operation. Route trees are looked up here, so the
simulation loop never routes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.engine.routing import Router, RouteTree
from wse_sim.errors import WseSimError
from wse_sim.hardware.cost import flops as op_flops
from wse_sim.hardware.cost import vector_cycles
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Compute, Program, Recv, Region, Send, Stream

# Operation codes of the compiled per-PE programs.
COMPUTE, SEND, RECV, STREAM = 0, 1, 2, 3


class ProgramError(WseSimError):
    """The program is inconsistent (bad mask, color out of range, route off the mesh...)."""


def _values(value: Any, region: Region, ys: np.ndarray, xs: np.ndarray) -> list:
    """A per-PE field at the active PEs, as a Python list."""
    if isinstance(value, np.ndarray):
        return np.broadcast_to(value, region.shape)[ys, xs].tolist()
    return [value] * len(ys)


def _active(mask: np.ndarray | None, region: Region) -> tuple[np.ndarray, np.ndarray]:
    if mask is None:
        ys, xs = np.indices(region.shape)
        return ys.ravel(), xs.ravel()
    m = np.asarray(mask, dtype=bool)
    if m.shape != region.shape:
        raise ProgramError(f"mask of shape {m.shape} does not match region shape {region.shape}")
    return np.nonzero(m)


class Compiler:
    """Turns a :class:`Program` into ``{(x, y): [op tuple, ...]}`` for every PE of its region.

    Tuples: ``(COMPUTE, cycles, flops, fn, name)``, ``(SEND, color, n, interval, tree, buffer,
    name, background)``, ``(RECV, color, n, interval, src, buffer, name)`` and ``(STREAM, recv_part,
    (cycles, flops), send_part | None, fn, name)``.
    """

    def __init__(self, program: Program, spec: WaferSpec, router: Router) -> None:
        self.program = program
        self.spec = spec
        self.router = router
        self.colors = spec.fabric.colors
        self.region = program.region
        self._cycles_cache: dict[tuple, int] = {}
        # Programs repeat the same mask and destination many times (one per step): resolve the
        # active PEs and their route trees once per (mask, destination offsets).
        self._masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._mask_key = 0
        self._tree_lists: dict[tuple, list[RouteTree]] = {}
        self._src_lists: dict[tuple, list[tuple[int, int]]] = {}
        self._pe_lists: dict[int, list[list[tuple]]] = {}

    def compile(self) -> dict[tuple[int, int], list[tuple]]:
        reg = self.region
        coords = list(reg.coords())
        lists: list[list[tuple]] = [[] for _ in coords]
        w = reg.width
        for phase, op in self.program.ops():
            mask_key = id(op.mask)
            active = self._masks.get(mask_key)
            if active is None:
                active = self._masks[mask_key] = _active(op.mask, reg)
                self._pe_lists[mask_key] = [lists[i] for i in (active[0] * w + active[1]).tolist()]
            ys, xs = active
            self._mask_key = mask_key
            if len(ys) == 0:
                continue
            for pe_list, tup in zip(self._pe_lists[mask_key], self._op(op, phase.name, ys, xs)):
                pe_list.append(tup)
        return dict(zip(coords, lists))

    def shared_trees(self) -> set[int]:
        """``id`` of every route tree routed so far that uses a link another sender uses too.

        Messages on such trees must be put on the fabric in simulated-time order; a tree whose
        links only its own sender uses can be reserved whenever the sender gets there.
        """
        trees = {id(tree): tree for tree in self.router.trees()}
        owner: dict[int, tuple[int, int]] = {}
        shared_links: set[int] = set()
        for tree in trees.values():
            src = tree.src
            for link in tree.links:
                first = owner.setdefault(link, src)
                if first != src:
                    shared_links.add(link)
        return {key for key, tree in trees.items() if not shared_links.isdisjoint(tree.links)}

    # -- fields -------------------------------------------------------------------------------
    def _color(self, colors: list) -> list:
        bad = [c for c in set(colors) if not 0 <= c < self.colors]
        if bad:
            raise ProgramError(
                f"{self.program.name}: color {bad[0]} is out of range; the fabric has colors "
                f"0..{self.colors - 1} (fabric.colors)"
            )
        return colors

    def _tree(self, x: int, y: int, x0: int, x1: int, y0: int, y1: int) -> RouteTree:
        try:
            tree = self.router.tree(x, y, x0, x1, y0, y1)
        except ValueError as exc:
            raise ProgramError(f"{self.program.name}: {exc}") from None
        return tree

    def _compute(self, c: Compute, ys: np.ndarray, xs: np.ndarray) -> list[tuple[int, int]]:
        reg = self.region
        cols = [
            _values(v, reg, ys, xs)
            for v in (c.elements, c.instructions, c.sram_read_bytes, c.sram_write_bytes)
        ]
        cache = self._cycles_cache
        out = []
        for e, i, r, wr in zip(*cols):
            key = (c.kind, c.dtype, e, i, r, wr)
            cyc = cache.get(key)
            if cyc is None:
                cyc = cache[key] = vector_cycles(self.spec, c.kind, c.dtype, e, i, r, wr)
            out.append((cyc, op_flops(c.kind, e)))
        return out

    def _send(self, s: Send, ys: np.ndarray, xs: np.ndarray, *head: Any) -> list[tuple]:
        """Per-PE ``(*head, color, n, interval, tree, *tail)`` for a send (head may be empty)."""
        reg = self.region
        ax = (xs + reg.x).tolist()
        ay = (ys + reg.y).tolist()
        d = s.dest
        dx0, dx1, dy0, dy1 = (_values(v, reg, ys, xs) for v in (d.dx0, d.dx1, d.dy0, d.dy1))
        colors = self._color(_values(s.color, reg, ys, xs))
        counts = _values(s.wavelets, reg, ys, xs)
        intervals = [float(v) for v in _values(s.interval, reg, ys, xs)]
        offsets = (d.dx0, d.dx1, d.dy0, d.dy1)
        list_key = None
        if all(isinstance(v, int) for v in offsets):
            list_key = (self._mask_key, *offsets)
        trees = self._tree_lists.get(list_key) if list_key is not None else None
        if trees is None:
            cached = self.router.cached
            trees = []
            for x, y, a, b, c, e in zip(ax, ay, dx0, dx1, dy0, dy1):
                key = (x, y, x + a, x + b, y + c, y + e)
                tree = cached(key)
                trees.append(tree if tree is not None else self._tree(*key))
            if list_key is not None:
                self._tree_lists[list_key] = trees
        if not head:
            return list(zip(colors, counts, intervals, trees))
        code, buf, name, background = head
        return [
            (code, c, n, k, t, buf, name, background)
            for c, n, k, t in zip(colors, counts, intervals, trees)
        ]

    def _srcs(self, r: Recv, ys: np.ndarray, xs: np.ndarray) -> list:
        """Absolute ``(x, y)`` of each active PE's source (``None`` when not named)."""
        if r.src is None:
            return [None] * len(ys)
        key = None
        if all(isinstance(v, int) for v in r.src):
            key = (self._mask_key, *r.src)
            cached = self._src_lists.get(key)
            if cached is not None:
                return cached
        reg = self.region
        sx = [x + reg.x + d for x, d in zip(xs.tolist(), _values(r.src[0], reg, ys, xs))]
        sy = [y + reg.y + d for y, d in zip(ys.tolist(), _values(r.src[1], reg, ys, xs))]
        srcs = list(zip(sx, sy))
        if key is not None:
            self._src_lists[key] = srcs
        return srcs

    def _recv(self, r: Recv, ys: np.ndarray, xs: np.ndarray, *head: Any) -> list[tuple]:
        """Per-PE ``(*head, color, n, interval, src, *tail)`` for a receive."""
        reg = self.region
        srcs = self._srcs(r, ys, xs)
        colors = self._color(_values(r.color, reg, ys, xs))
        counts = _values(r.wavelets, reg, ys, xs)
        intervals = [float(v) for v in _values(r.interval, reg, ys, xs)]
        if not head:
            return list(zip(colors, counts, intervals, srcs))
        code, buf, name = head
        return [
            (code, c, n, k, src, buf, name) for c, n, k, src in zip(colors, counts, intervals, srcs)
        ]

    def _op(self, op: Any, name: str, ys: np.ndarray, xs: np.ndarray) -> list[tuple]:
        if isinstance(op, Compute):
            return [(COMPUTE, cyc, fl, op.fn, name) for cyc, fl in self._compute(op, ys, xs)]
        if isinstance(op, Send):
            return self._send(op, ys, xs, SEND, op.buffer, name, bool(op.background))
        if isinstance(op, Recv):
            return self._recv(op, ys, xs, RECV, op.buffer, name)
        if isinstance(op, Stream):
            recvs = self._recv(op.recv, ys, xs)
            comps = self._compute(op.compute, ys, xs)
            sends = self._send(op.send, ys, xs) if op.send is not None else [None] * len(ys)
            fn = op.fn
            return [(STREAM, r, c, s, fn, name) for r, c, s in zip(recvs, comps, sends)]
        raise ProgramError(f"unknown operation {type(op).__name__} in program {self.program.name}")
