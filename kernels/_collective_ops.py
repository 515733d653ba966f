"""Collective building blocks as IR operations: chain and tree reduce, multicast, relay, ring.

Every block works on :class:`Line` objects: parallel 1D lines of a region (every row, every
column, or only the first row or column), all running at once on disjoint links. Position 0 of a
line is its root end (the region's west column for rows, its north row for columns).

Functional mode: a block operates on one key of each PE's memory, a 1D numpy array. Reductions
combine in place (``memory[key]`` holds the PE's contribution before, and at the root the result
after); broadcasts overwrite ``memory[key]`` on every receiver. Timing-only programs carry the same
operations; the engine ignores ``buffer`` and ``fn`` then.

Colors: messages on one (receiver, color) are matched in the order they were sent, so the kernels
give every (receiver, color) pair a single sender over the whole program; then program order is
message order. Callers pass the colors in.

Sizes are per-PE fields (:data:`IntField`): ``n`` is wavelets per message, ``elements`` the
elements the combine step touches. The matching closed forms are in :mod:`._collective_cost`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from wse_sim.hardware.cost import dtype_bytes
from wse_sim.program.ir import Compute, Dest, IntField, Op, Recv, Region, Send, Stream

from ._common import bookkeeping, ring_hops, ring_layout

COMBINE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "max": np.maximum,
}
"""Reduction operators; the key is also the vector-op kind that costs them."""


class Line:
    """Parallel 1D lines of ``region`` along ``axis``.

    ``axis="x"``: every row is a line and a PE's position is its column in the region;
    ``axis="y"``: every column is a line and the position is the row. With ``first_only`` only
    the first line takes part (row 0 for ``x``, column 0 for ``y``).
    """

    def __init__(self, region: Region, axis: str, first_only: bool = False) -> None:
        if axis not in ("x", "y"):
            raise ValueError(f"axis={axis!r}: use 'x' or 'y'")
        self.region = region
        self.axis = axis
        ys, xs = np.indices(region.shape)
        self.pos: np.ndarray = xs if axis == "x" else ys
        self.length: int = region.width if axis == "x" else region.height
        if first_only:
            self.mask: np.ndarray = (ys == 0) if axis == "x" else (xs == 0)
        else:
            self.mask = np.ones(region.shape, dtype=bool)

    def offset(self, d: IntField) -> tuple[IntField, IntField]:
        """``(dx, dy)`` of a move by ``d`` positions along the line."""
        return (d, 0) if self.axis == "x" else (0, d)

    def to(self, d: IntField) -> Dest:
        """Unicast to the PE ``d`` positions further along the line."""
        return Dest.to(*self.offset(d))

    def span(self, lo: IntField, hi: IntField) -> Dest:
        """Multicast to positions ``pos + lo .. pos + hi`` of the sender's line."""
        if self.axis == "x":
            return Dest(lo, hi, 0, 0)
        return Dest(0, 0, lo, hi)

    def where(self, cond: np.ndarray) -> np.ndarray:
        return self.mask & cond

    @property
    def toward_root(self) -> tuple[IntField, IntField]:
        """Offset from a PE to the next one towards position 0."""
        return self.offset(-1)

    @property
    def from_far(self) -> tuple[IntField, IntField]:
        """Offset from a PE to the previous one (position + 1)."""
        return self.offset(1)


class Snake:
    """One chain through every PE of a region, boustrophedon: position 0 is the north-west PE,
    row 0 runs east, row 1 back west, and so on. Same interface as :class:`Line` for
    :func:`chain_reduce`."""

    def __init__(self, region: Region) -> None:
        self.region = region
        w = region.width
        ys, xs = np.indices(region.shape)
        even = ys % 2 == 0
        self.pos: np.ndarray = ys * w + np.where(even, xs, w - 1 - xs)
        self.length: int = region.num_pes
        self.mask: np.ndarray = np.ones(region.shape, dtype=bool)
        # Towards position 0: along the row, or north at the row's first PE.
        row_start = np.where(even, xs == 0, xs == w - 1)
        self.toward_root = (
            np.where(row_start, 0, np.where(even, -1, 1)),
            np.where(row_start, -1, 0),
        )
        # From the next PE away from the root: along the row, or from the south at its end.
        row_end = np.where(even, xs == w - 1, xs == 0)
        self.from_far = (
            np.where(row_end, 0, np.where(even, 1, -1)),
            np.where(row_end, 1, 0),
        )

    def where(self, cond: np.ndarray) -> np.ndarray:
        return self.mask & cond


def combine_bytes(elements: IntField, dtype: str, store: bool) -> tuple[IntField, IntField]:
    """SRAM ``(read, write)`` bytes of a streaming combine: it reads the PE's own operand and,
    when ``store``, writes the result (a forwarding PE sends it on instead)."""
    nbytes = elements * dtype_bytes(dtype)
    return nbytes, (nbytes if store else 0)


def _combine_compute(
    kind: str, elements: IntField, dtype: str, mask: np.ndarray, store: bool
) -> Compute:
    reads, writes = combine_bytes(elements, dtype, store)
    return Compute(
        kind,
        elements,
        dtype,
        instructions=1,
        sram_read_bytes=reads,
        sram_write_bytes=writes,
        mask=mask,
    )


def _combine_fn(combine: str, key: str) -> Callable:
    op = COMBINE[combine]

    def fn(mem: dict, x: int, y: int, payload: np.ndarray) -> np.ndarray:
        mem[key] = op(mem[key], payload)
        return mem[key]

    return fn


def chain_reduce(
    line: Line | Snake,
    n: IntField,
    elements: IntField,
    dtype: str,
    combine: str,
    color: int,
    key: str,
) -> list[Op]:
    """Pipelined chain: the far end sends, each PE streams (receive, combine, forward) towards
    position 0, which keeps the result. About ``n + c * L`` cycles (see the cost module)."""
    L = line.length
    if L == 1:
        return []
    start = line.where(line.pos == L - 1)
    middle = line.where((line.pos > 0) & (line.pos < L - 1))
    root = line.where(line.pos == 0)
    fn = _combine_fn(combine, key)
    ops: list[Op] = [Send(color, n, Dest.to(*line.toward_root), mask=start, buffer=key)]
    if middle.any():
        ops.append(
            Stream(
                Recv(color, n, src=line.from_far, mask=middle),
                _combine_compute(combine, elements, dtype, middle, store=False),
                Send(color, n, Dest.to(*line.toward_root), mask=middle),
                mask=middle,
                fn=fn,
            )
        )
    ops.append(
        Stream(
            Recv(color, n, src=line.from_far, mask=root),
            _combine_compute(combine, elements, dtype, root, store=True),
            None,
            mask=root,
            fn=fn,
        )
    )
    return ops


def tree_schedule(length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Levels of the binary tree over positions ``0..length-1`` that reduces into position 0:
    per level, the receivers' and the senders' positions (pairwise).

    With ``length = 2^K + e``, a first level folds the far end pairwise (``L-1 -> L-2``,
    ``L-3 -> L-4``, ... ``e`` one-hop transfers); then recursive halving over the ``2^K``
    survivors (the near ones and the far receivers, in position order). Every sender is then
    ready no earlier than its receiver (the far survivors, which did more, send towards the near
    ones), so no message starts early over links that a lower level still uses: the levels never
    contend. ``ceil(log2 L)`` levels; a power of two is plain recursive halving."""
    if length <= 1:
        return []
    k = length.bit_length() - 1
    base = 1 << k
    extra = length - base
    levels = []
    if extra:
        senders = np.arange(length - 1, length - 2 * extra, -2)
        levels.append((senders - 1, senders))
    survivors = np.concatenate(
        (np.arange(0, length - 2 * extra), np.arange(length - 2 * extra, length, 2))
    )
    for j in range(k):
        idx = np.arange(0, base, 2 << j)
        levels.append((survivors[idx], survivors[idx + (1 << j)]))
    return levels


def tree_levels(length: int) -> int:
    """Levels of :func:`tree_schedule`: ``ceil(log2(length))``."""
    return max(0, int(length - 1).bit_length())


def tree_reduce(
    line: Line,
    n: IntField,
    elements: IntField,
    dtype: str,
    combine: str,
    colors: Sequence[int],
    key: str,
) -> list[Op]:
    """Binary tree towards position 0 (:func:`tree_schedule`): at each level every sender sends
    its partial result to its receiver, which combines it while it arrives.

    Level ``k`` uses ``colors[k]`` (``tree_levels(L)`` colors): messages on one (receiver,
    color) are matched in the order they were sent, so levels do not share a color."""
    fn = _combine_fn(combine, key)
    ops: list[Op] = []
    for k, (recv_pos, send_pos) in enumerate(tree_schedule(line.length)):
        partner = np.zeros(line.length, dtype=np.int64)
        partner[recv_pos] = send_pos - recv_pos
        partner[send_pos] = recv_pos - send_pos
        offset = partner[line.pos]
        receivers = line.where(np.isin(line.pos, recv_pos))
        senders = line.where(np.isin(line.pos, send_pos))
        ops.append(
            Stream(
                Recv(colors[k], n, src=line.offset(offset), mask=receivers),
                _combine_compute(combine, elements, dtype, receivers, store=True),
                None,
                mask=receivers,
                fn=fn,
            )
        )
        ops.append(Send(colors[k], n, line.to(offset), mask=senders, buffer=key))
    return ops


def line_multicast(line: Line, n: IntField, color: int, key: str) -> list[Op]:
    """Position 0 multicasts ``memory[key]`` to the rest of its line (hardware multicast)."""
    L = line.length
    if L == 1:
        return []
    root = line.where(line.pos == 0)
    others = line.where(line.pos > 0)
    return [
        Send(color, n, line.span(1, L - 1), mask=root, buffer=key),
        Recv(color, n, src=line.offset(-line.pos), mask=others, buffer=key),
    ]


def region_multicast(region: Region, n: IntField, color: int, key: str) -> list[Op]:
    """The region's north-west PE multicasts ``memory[key]`` to every other PE of the region:
    one multicast tree, along row 0 and then down every column."""
    if region.num_pes == 1:
        return []
    ys, xs = np.indices(region.shape)
    root = (xs == 0) & (ys == 0)
    return [
        Send(color, n, Dest(0, region.width - 1, 0, region.height - 1), mask=root, buffer=key),
        Recv(color, n, src=(-xs, -ys), mask=~root, buffer=key),
    ]


def _copy_fn(key: str) -> Callable:
    def fn(mem: dict, x: int, y: int, payload: np.ndarray) -> np.ndarray:
        mem[key] = payload
        return payload

    return fn


def relay(
    line: Line, n: IntField, elements: IntField, dtype: str, color: int, key: str
) -> list[Op]:
    """Software relay from position 0: each PE streams the message on to the next one while
    storing it (a ``copy`` vector instruction), the last one only stores it."""
    L = line.length
    if L == 1:
        return []
    root = line.where(line.pos == 0)
    middle = line.where((line.pos > 0) & (line.pos < L - 1))
    end = line.where(line.pos == L - 1)
    ops: list[Op] = [Send(color, n, line.to(1), mask=root, buffer=key)]
    if middle.any():
        ops.append(
            Stream(
                Recv(color, n, src=line.offset(-1), mask=middle),
                _combine_compute("copy", elements, dtype, middle, store=True),
                Send(color, n, line.to(1), mask=middle),
                mask=middle,
                fn=_copy_fn(key),
            )
        )
    ops.append(Recv(color, n, src=line.offset(-1), mask=end, buffer=key))
    return ops


# -- ring ------------------------------------------------------------------------------------


def folded_ring(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The interleaved ring of :func:`._common.ring_layout` over positions ``0..length-1`` of a
    line (no link longer than 2 hops: even positions one way, odd ones back). Returns per
    position its rank on the ring, the offset to the next PE and the offset to the previous."""
    order, rank = ring_layout(length, interleaved=True)
    positions = np.arange(length)
    nxt = np.empty(length, dtype=np.int64)
    prv = np.empty(length, dtype=np.int64)
    nxt[order] = np.roll(order, -1)
    prv[order] = np.roll(order, 1)
    return rank, nxt - positions, prv - positions


def ring_link_hops(length: int) -> int:
    """Sum over the folded ring's links of their hop counts."""
    if length <= 1:
        return 0
    order, _ = ring_layout(length, interleaved=True)
    return int(ring_hops(order).sum())


def ring_phase(
    line: Line,
    phase: str,
    m: int,
    chunk: int,
    dtype: str,
    color: int,
    key: str,
    base: np.ndarray,
) -> list[Op]:
    """One half of a ring allreduce over every line: ``phase="rs"`` (reduce-scatter) or
    ``"ag"`` (allgather), ``L - 1`` steps of one chunk of ``chunk`` elements (``m`` wavelets).

    The segment being reduced on a PE is ``memory[key][base : base + L * chunk]`` (``base`` is a
    per-PE array). After ``rs`` the PE of ring rank ``r`` holds the reduced chunk ``r + 1``; after
    ``ag`` every PE holds the whole reduced segment.

    Every PE sends its chunk in the background (one instruction issue; the wavelets leave through
    its output ramp) and at once streams the chunk arriving from the previous PE (receive and
    combine): all ranks do the same, no PE waits for another's receive, and a step costs one
    transfer. The chunk sent at step ``s + 1`` is the one combined at step ``s``: it lives in the
    reduced vector itself (``out0``/``out1`` only model the send descriptor in functional mode),
    so the background send needs no extra buffer."""
    L = line.length
    if L == 1:
        return []
    rank_of, nxt, prv = folded_ring(L)
    rank = rank_of[line.pos]
    to_next = line.to(nxt[line.pos])
    from_prev = line.offset(prv[line.pos])
    region = line.region
    first = 0 if phase == "rs" else 1
    out = (f"{key}.out0", f"{key}.out1")

    def where(x: int, y: int, k: int) -> int:
        r = int(rank[y - region.y, x - region.x])
        return int(base[y - region.y, x - region.x]) + ((r + k) % L) * chunk

    def stage(mem: dict, x: int, y: int) -> None:
        b = where(x, y, first)
        mem[out[0]] = mem[key][b : b + chunk].copy()

    def receive(step: int) -> Callable:
        k = -step - 1 if phase == "rs" else -step

        def fn(mem: dict, x: int, y: int, payload: np.ndarray) -> None:
            b = where(x, y, k)
            if phase == "rs":
                mem[key][b : b + chunk] += payload
            else:
                mem[key][b : b + chunk] = payload
            mem[out[(step + 1) % 2]] = mem[key][b : b + chunk].copy()

        return fn

    kind = "add" if phase == "rs" else "copy"
    nbytes = chunk * dtype_bytes(dtype)
    # Staging the first outgoing chunk only points a send descriptor at it: zero cycles.
    ops: list[Op] = [bookkeeping(stage, mask=line.mask)]
    for step in range(L - 1):
        buf = out[step % 2]
        ops.append(Send(color, m, to_next, mask=line.mask, buffer=buf, background=True))
        ops.append(
            Stream(
                Recv(color, m, src=from_prev, mask=line.mask),
                Compute(
                    kind,
                    chunk,
                    dtype,
                    sram_read_bytes=nbytes if phase == "rs" else 0,
                    sram_write_bytes=nbytes,
                    mask=line.mask,
                ),
                None,
                mask=line.mask,
                fn=receive(step),
            )
        )
    return ops
