"""Prefill attention: flash-style, query tiles resident, key/value tiles broadcast along PE rows.

Layout (docs/kernels-attention.md has the picture and the formulas):

* A *unit* is one (sequence, kv-head) pair with its ``g = heads / kv_heads`` query heads.
* Units are mapped to *blocks* of ``ring`` columns x ``rows`` rows; blocks are stacked north to
  south, then in further block columns west to east. A block holds ``units_per_block`` units.
* The (padded) sequence is cut into ``2 * ring`` chunks of ``chunk`` positions. Column ``i`` of a
  block owns query chunks ``i`` and ``2*ring-1-i`` (zigzag, which balances causal work) and the
  key/value chunks with the same indices. The rows split the queries of the column: ``rows =
  head_split * pos_split``; row ``r`` takes query heads group ``r // pos_split`` (of
  ``head_split`` groups of the unit's ``g`` heads) and the ``r % pos_split``-th slice of
  ``qchunk = chunk / pos_split`` positions of each of its two query chunks. Row 0 owns the
  column's key/value tile and copies it to the other rows first (``replicate``).
* Every PE first folds its own key/value tile into its running softmax state (``local``).
  Then, in round ``s`` = 0 .. ring-1, column ``s`` multicasts its keys and then its values along
  its block row; every other column consumes them with a ``Stream`` (QK^T while the keys arrive,
  PV while the values arrive) and runs the online-softmax update in between.
* ``kv_split`` replicas (interleaved rows) fold disjoint sets of ``ring / kv_split`` tiles
  each; ``merge L`` phases combine their partial states along a binary tree to replica 0.
* ``finalize`` divides the accumulator by the running sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from wse_sim.errors import PlanError
from wse_sim.hardware import cost
from wse_sim.hardware.spec import WaferSpec
from wse_sim.kernels import _attention_common as com
from wse_sim.kernels.base import Estimate, Plan
from wse_sim.program.ir import Dest, IntField, Phase, Program, Recv, Region, Send, Stream

K_COLOR = 0
V_COLOR = 1
SIZE_FIELDS = ("batch", "heads", "kv_heads", "seq", "head_dim")
"""Fields of :class:`PrefillLayout` that are plan sizes of the same name."""


@dataclass(frozen=True)
class PrefillLayout:
    """How prefill attention is tiled (all counts, sizes in elements or PEs)."""

    batch: int
    heads: int
    kv_heads: int
    seq: int
    head_dim: int
    causal: bool
    ring: int
    """Columns of a block: key/value tiles are broadcast among them."""
    rows: int
    """Rows of a block: each row holds a different slice of the queries."""
    head_split: int
    """Groups the unit's query heads are split into across the rows (divides ``rows``)."""
    units_per_block: int
    blocks_x: int
    blocks_y: int
    kv_split: int = 1
    """Replicas of the block, each folding the key/value tiles of ``ring / kv_split`` columns;
    their partial states are merged by a binary tree (divides ``ring``)."""

    @property
    def block_height(self) -> int:
        """Rows of a block: ``rows`` query slices x ``kv_split`` replicas, interleaved (block
        row ``r * kv_split + j`` is query slice ``r`` of replica ``j``)."""
        return self.rows * self.kv_split

    @property
    def rounds(self) -> int:
        """Key/value tiles each replica folds: ``ring / kv_split``."""
        return self.ring // self.kv_split

    def replica_of_rows(self) -> np.ndarray:
        """Replica index of every row of the used region (``height``,)."""
        return np.arange(self.height) % self.block_height % self.kv_split

    def slice_of_rows(self) -> np.ndarray:
        """Query slice ``r`` (0 .. rows-1) of every row of the used region (``height``,)."""
        return np.arange(self.height) % self.block_height // self.kv_split

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads

    @property
    def units(self) -> int:
        return self.batch * self.kv_heads

    @property
    def pos_split(self) -> int:
        """Slices each query chunk is cut into across the rows."""
        return self.rows // self.head_split

    @property
    def heads_per_pe(self) -> int:
        """Query heads of a unit on one PE."""
        return self.group // self.head_split

    @property
    def qchunk(self) -> int:
        """Query positions per chunk per PE."""
        return max(1, math.ceil(self.seq / (2 * self.ring * self.pos_split)))

    @property
    def chunk(self) -> int:
        """Key positions per chunk."""
        return self.qchunk * self.pos_split

    @property
    def padded_seq(self) -> int:
        return 2 * self.ring * self.chunk

    @property
    def width(self) -> int:
        return self.blocks_x * self.ring

    @property
    def height(self) -> int:
        return self.blocks_y * self.block_height

    @property
    def query_rows(self) -> int:
        """Query rows on one PE (all its units and heads)."""
        return self.units_per_block * self.heads_per_pe * 2 * self.qchunk

    def tiling(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "ring": self.ring,
            "rows_per_unit": self.rows,
            "head_split": self.head_split,
            "units_per_block": self.units_per_block,
            "blocks_x": self.blocks_x,
            "blocks_y": self.blocks_y,
            "chunk": self.chunk,
            "qchunk": self.qchunk,
            "padded_seq": self.padded_seq,
            "kv_split": self.kv_split,
        }

    @classmethod
    def from_plan(cls, plan: Plan) -> PrefillLayout:
        s, t = plan.sizes, plan.tiling
        return cls(
            **{n: s[n] for n in SIZE_FIELDS},
            causal=bool(plan.options.get("causal", True)),
            ring=t["ring"],
            rows=t["rows_per_unit"],
            head_split=t["head_split"],
            units_per_block=t["units_per_block"],
            blocks_x=t["blocks_x"],
            blocks_y=t["blocks_y"],
            kv_split=t.get("kv_split", 1),
        )

    # -- positions ------------------------------------------------------------------------------
    def pe_of(self, col: int, row: int) -> tuple[int, int, int]:
        """(block index, query slice, column in block) of the PE at region offset (col, row)."""
        i, bx = col % self.ring, col // self.ring
        r, by = row % self.block_height, row // self.block_height
        return bx * self.blocks_y + by, r // self.kv_split, i

    def replica_of(self, row: int) -> int:
        """Replica (0 .. kv_split-1) of the PE at region row offset ``row``."""
        return row % self.block_height % self.kv_split

    def tiles_of(self, replica: int) -> range:
        """Columns whose key/value tiles ``replica`` folds (and multicasts, in this order)."""
        return range(replica * self.rounds, (replica + 1) * self.rounds)

    def query_positions(self, i: int, r: int) -> np.ndarray:
        """Sequence positions of the query rows of column ``i``, row ``r`` (2 * qchunk)."""
        r = r % self.pos_split
        t = np.arange(self.qchunk)
        lo = i * self.chunk + r * self.qchunk + t
        hi = (2 * self.ring - 1 - i) * self.chunk + r * self.qchunk + t
        return np.concatenate([lo, hi])

    def key_positions(self, j: int) -> np.ndarray:
        """Sequence positions of the key/value tile of column ``j`` (2 * chunk)."""
        t = np.arange(self.chunk)
        return np.concatenate([j * self.chunk + t, (2 * self.ring - 1 - j) * self.chunk + t])

    def units_of(self, block: int) -> list[int]:
        """Unit ids of a block; ids >= ``units`` are padding units (zeros, discarded)."""
        return [block * self.units_per_block + t for t in range(self.units_per_block)]


# -- work and memory ----------------------------------------------------------------------------


def pairs_per_head_local(lay: PrefillLayout) -> IntField:
    """(query, key) pairs one PE scores against its own tile, per head: a per-row pattern for
    causal (the diagonal chunks are triangular), else ``4 * qchunk * chunk``."""
    cq, c = lay.qchunk, lay.chunk
    if not lay.causal:
        return 4 * cq * c
    r = lay.slice_of_rows() % lay.pos_split
    per_row = cq * c + 2 * (r * cq * cq + cq * (cq + 1) // 2)
    return per_row[:, None]  # (height, 1): broadcasts over columns


def pairs_per_head_round(lay: PrefillLayout) -> int:
    """Pairs per head against another column's tile: half of the 2x2 chunk blocks if causal."""
    return (2 if lay.causal else 4) * lay.qchunk * lay.chunk


def _pair_fmac(
    lay: PrefillLayout, pairs_head: IntField, nbytes: int, out_elements: int
) -> com.Work:
    """One fmac instruction of length head_dim per (query, key) pair of all the PE's units
    and heads, reading two operands and writing ``out_elements`` elements per pair."""
    pairs = np.asarray(pairs_head) * lay.units_per_block * lay.heads_per_pe
    e = pairs * lay.head_dim
    return com.Work(
        "fmac",
        com.as_field(e),
        com.as_field(pairs),
        com.as_field(2 * e * nbytes),
        com.as_field(pairs * out_elements * nbytes),
    )


def qk_work(lay: PrefillLayout, pairs_head: IntField, nbytes: int) -> com.Work:
    """Scores: one dot product of length head_dim per (query, key) pair."""
    return _pair_fmac(lay, pairs_head, nbytes, 1)


def pv_work(lay: PrefillLayout, pairs_head: IntField, nbytes: int) -> com.Work:
    """Context: one axpy of length head_dim per (query, key) pair."""
    return _pair_fmac(lay, pairs_head, nbytes, lay.head_dim)


def tile_works(lay: PrefillLayout, pairs_head: IntField, nbytes: int) -> list[com.Work]:
    """Folding one key/value tile: scores, online-softmax update, weighted values."""
    return [
        qk_work(lay, pairs_head, nbytes),
        *softmax_works(lay, pairs_head, nbytes),
        pv_work(lay, pairs_head, nbytes),
    ]


def softmax_works(lay: PrefillLayout, pairs_head: IntField, nbytes: int) -> list[com.Work]:
    """Online-softmax update of one tile: scale, max, subtract, exp, sum per score, plus the
    per-row rescale of the running max, sum and accumulator."""
    pairs = np.asarray(pairs_head) * lay.units_per_block * lay.heads_per_pe
    rows, d = lay.query_rows, lay.head_dim
    return [
        com.alu_work("mul", pairs + rows + rows * d, 2 * rows + 1, nbytes),
        com.alu_work("max", pairs + rows, rows + 1, nbytes),
        com.alu_work("add", 2 * pairs + 2 * rows, 2 * rows + 2, nbytes),
        com.alu_work("exp", pairs + rows, rows + 1, nbytes),
    ]


def final_works(lay: PrefillLayout, nbytes: int) -> list[com.Work]:
    """1 / l as rsqrt(l)^2, then the accumulator times 1 / l."""
    return com.finalize_works(lay.query_rows, lay.head_dim, nbytes)


def tile_wavelets(spec: WaferSpec, lay: PrefillLayout, nbytes: int) -> int:
    """Wavelets of one key (or value) tile of a column: all its units, 2 chunks."""
    return cost.wavelets(spec, lay.units_per_block * 2 * lay.chunk * lay.head_dim * nbytes)


def sram_bytes(lay: PrefillLayout, nbytes: int) -> int:
    """Data bytes on one PE: Q, own K/V tile, the incoming K/V tile (when ring > 1), scores and
    the accumulators (fp32); with ``kv_split > 1`` an incoming partial state for the merge,
    which reuses the incoming K/V buffer (free by then) as far as it goes."""
    u, rows, d, c = lay.units_per_block, lay.query_rows, lay.head_dim, lay.chunk
    q = rows * d * nbytes
    kv_tile = u * 2 * (2 * c) * d * nbytes  # K and V of two chunks
    scores = rows * 2 * c * com.ACC_BYTES
    acc = rows * (d + 2) * com.ACC_BYTES
    incoming = kv_tile if lay.ring > 1 else 0
    merge_in = max(0, acc - incoming) if lay.kv_split > 1 else 0
    return q + kv_tile + incoming + scores + acc + merge_in


# -- choosing the layout ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """The terms of the closed-form estimate (cycles; see docs/kernels-attention.md)."""

    replicate: float
    """Row 0 multicasts its K and V tile down the block's column: ``2n + 2R + (rows-1)H - 1``
    (0 for one row); the last row is the latest, and also has the most local work."""
    local: float
    """Own tile, slowest row of a block (causal diagonal chunks differ per row)."""
    qk: float
    """Score computation against one received tile (vector_cycles)."""
    softmax: float
    """Online-softmax update for one received tile."""
    pv: float
    """Weighted-value accumulation for one received tile."""
    stream_k: float
    """Stream of the key tile: ``O + (n - 1) * max(1, (qk - O) / n) + 1``."""
    stream_v: float
    final: float
    handover: float
    """``2R + H``: from the next column's last consumed wavelet to its first one arriving."""
    tail: float
    """``(ring - 2) H``: the last round reaches the far end of the row."""
    ring: int
    wavelets: int

    @property
    def period(self) -> float:
        return self.handover + self.stream_k + self.softmax + self.stream_v

    @property
    def cycles(self) -> float:
        start = self.replicate + self.local
        if self.ring == 1:
            return start + self.final
        return start + self.ring * self.period + self.tail + self.final


def stream_cycles(spec: WaferSpec, n: int, compute: float) -> float:
    """Cycles a Stream of ``n`` wavelets takes from its first wavelet, when its computation
    takes ``compute`` cycles: the output side starts ``O`` cycles in, then one wavelet per
    ``max(1, (compute - O) / n)`` cycles, plus one cycle to retire (docs/engine.md)."""
    o = spec.pe.instruction_overhead_cycles
    return o + (n - 1) * max(1.0, (compute - o) / n) + 1


def timing(spec: WaferSpec, dtype: str, lay: PrefillLayout) -> Timing:
    b = cost.dtype_bytes(dtype)
    f = spec.fabric
    p = pairs_per_head_round(lay)
    n = tile_wavelets(spec, lay, b)
    qk = float(com.work_cycles(spec, dtype, qk_work(lay, p, b)))
    pv = float(com.work_cycles(spec, dtype, pv_work(lay, p, b)))
    rep = 0.0
    if lay.block_height > 1:
        rep = (
            2.0 * n + 2 * f.ramp_latency_cycles + (lay.block_height - 1) * f.hop_latency_cycles - 1
        )
    return Timing(
        replicate=rep,
        local=float(np.max(_local_cycles(spec, dtype, lay))),
        qk=qk,
        softmax=float(com.works_cycles(spec, dtype, softmax_works(lay, p, b))),
        pv=pv,
        stream_k=stream_cycles(spec, n, qk),
        stream_v=stream_cycles(spec, n, pv),
        final=float(com.works_cycles(spec, dtype, final_works(lay, b))),
        handover=float(2 * f.ramp_latency_cycles + f.hop_latency_cycles),
        tail=float(max(0, lay.ring - 2) * f.hop_latency_cycles),
        ring=lay.ring,
        wavelets=n,
    )


def quick_cycles(spec: WaferSpec, dtype: str, lay: PrefillLayout) -> float:
    """The estimate's cycles without the per-PE arrays (used to rank candidate layouts); with
    ``kv_split > 1`` an upper bound (each row's latest PE stands for the row, at most
    ``(ring - 1) H`` late)."""
    if lay.kv_split == 1:
        return timing(spec, dtype, lay).cycles
    return float(split_cycles(spec, dtype, lay, per_pe=False))


def merge_works(lay: PrefillLayout) -> list[com.Work]:
    """Merging a received partial state (o, m, l) of every query row into the own one (fp32)."""
    return com.state_merge_works(lay.query_rows, lay.head_dim)


def state_wavelets(spec: WaferSpec, lay: PrefillLayout) -> int:
    """A partial state (o, m, l) of every query row of a PE, fp32."""
    return com.state_message_wavelets(spec, lay.query_rows, lay.head_dim)


def _row_starts(spec: WaferSpec, dtype: str, lay: PrefillLayout, n: int) -> np.ndarray:
    """Cycle at which every block row (``block_height``,) starts its first round: its copy of
    the key/value tile is in (row 0 owns it and is busy sending ``2n`` cycles; row ``y`` has
    it at ``2n + 2R + yH - 1``) and its own tile is folded."""
    f = spec.fabric
    y = np.arange(lay.block_height)
    rep = np.zeros(lay.block_height)
    if lay.block_height > 1:
        rep = np.where(
            y == 0, 2.0 * n, 2.0 * n + 2 * f.ramp_latency_cycles + y * f.hop_latency_cycles - 1
        )
    local = np.broadcast_to(
        np.asarray(_local_cycles(spec, dtype, lay), dtype=float), (lay.height, 1)
    )
    return rep + local[: lay.block_height, 0]


def round_ends(spec: WaferSpec, dtype: str, lay: PrefillLayout) -> np.ndarray:
    """Cycle every PE of a block (``block_height`` x ``ring``) is done with its rounds.

    Replica ``j`` runs rounds ``s = j m .. j m + m - 1`` (``m = ring / kv_split``); round ``k``
    starts ``2R + H + S_k + T_softmax + S_v`` after round ``k - 1`` (the next sender is the
    previous one's east neighbour). A receiver ``dx`` columns from the last sender is done
    ``2R + dx H + S_k + T_softmax + S_v`` after that round starts, the last sender ``2n``
    after (its blocking sends)."""
    tm = timing(spec, dtype, lay)
    f = spec.fabric
    t0 = _row_starts(spec, dtype, lay, tm.wavelets)[:, None]
    if lay.ring == 1:
        return t0 + np.zeros((1, 1))
    m = lay.rounds
    work = tm.stream_k + tm.softmax + tm.stream_v
    t_last = t0 + (m - 1) * tm.period
    j = np.arange(lay.block_height) % lay.kv_split
    last = (j * m + m - 1)[:, None]
    dx = np.abs(np.arange(lay.ring)[None, :] - last)
    ends = t_last + 2 * f.ramp_latency_cycles + dx * f.hop_latency_cycles + work
    return np.where(dx == 0, t_last + 2.0 * tm.wavelets, ends)


def merge_tree(ready: np.ndarray, n: int, t_merge: float, R: int, H: int) -> np.ndarray:
    """Binary-tree merge along the last axis of ``ready`` (cycle each replica's state is
    ready; partner ``s`` rows away at level ``s``): the cycle replica 0 is done merging."""
    return com.tree_finish(ready.astype(float), n, t_merge, R, H)


def split_cycles(spec: WaferSpec, dtype: str, lay: PrefillLayout, per_pe: bool = True) -> int:
    """Total cycles with the merge of ``kv_split`` replicas (docs/kernels-attention.md)."""
    f = spec.fabric
    ends = np.ceil(round_ends(spec, dtype, lay) - 1e-9)
    if not per_pe:
        ends = ends.max(axis=1, keepdims=True)
    ks = lay.kv_split
    by_replica = ends.reshape(lay.rows, ks, -1).transpose(0, 2, 1)  # (rows, ring, ks)
    t_merge = float(com.works_cycles(spec, dtype, merge_works(lay)))
    b = cost.dtype_bytes(dtype)
    root = merge_tree(
        by_replica, state_wavelets(spec, lay), t_merge, f.ramp_latency_cycles,
        f.hop_latency_cycles,
    )  # fmt: skip
    return math.ceil(float(root.max()) + float(com.works_cycles(spec, dtype, final_works(lay, b))))


def _local_cycles(spec: WaferSpec, dtype: str, lay: PrefillLayout) -> Any:
    b = cost.dtype_bytes(dtype)
    return com.works_cycles(spec, dtype, tile_works(lay, pairs_per_head_local(lay), b))


def _candidates(limit: int, seq_span: int) -> list[int]:
    """Useful ring lengths / row counts up to ``limit``: powers of two, divisors of
    ``seq_span`` and ``limit`` itself."""
    out = {1, limit}
    p = 1
    while p <= limit:
        out.add(p)
        p *= 2
    for d in range(1, int(math.isqrt(max(1, seq_span))) + 1):
        if seq_span % d == 0:
            out.update(x for x in (d, seq_span // d) if x <= limit)
    return sorted(out)


def make_layout(
    sizes: dict[str, int],
    causal: bool,
    ring: int,
    rows: int,
    head_split: int,
    region: Region,
    kv_split: int = 1,
) -> PrefillLayout | None:
    """The layout with ``ring`` x ``rows * kv_split`` blocks, or ``None`` when it does not fit
    ``region`` (or ``kv_split`` does not divide ``ring``)."""
    if ring > region.width or rows * kv_split > region.height or rows % head_split:
        return None
    if (sizes["heads"] // sizes["kv_heads"]) % head_split or ring % kv_split:
        return None
    units = sizes["batch"] * sizes["kv_heads"]
    per_col, per_row = region.height // (rows * kv_split), region.width // ring
    capacity = per_col * per_row
    upb = math.ceil(units / capacity)
    blocks = math.ceil(units / upb)
    blocks_y = min(blocks, per_col)
    blocks_x = math.ceil(blocks / blocks_y)
    return PrefillLayout(
        **{n: sizes[n] for n in SIZE_FIELDS},
        causal=causal,
        ring=ring,
        rows=rows,
        head_split=head_split,
        units_per_block=upb,
        blocks_x=blocks_x,
        blocks_y=blocks_y,
        kv_split=kv_split,
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _shapes(
    sizes: dict[str, int],
    region: Region,
    ring: int | None,
    rows: int | None,
    hsplit: int | None,
    ksplit: int | None = None,
):
    """Candidate (ring, rows, head_split, kv_split) for ``region``: rings and row counts from
    :func:`_candidates`, head splits dividing ``g``, key splits dividing the ring that fit the
    region's height (all of them only for the blocks that leave rows free)."""
    seq = sizes["seq"]
    group = sizes["heads"] // sizes["kv_heads"]
    rings = [ring] if ring else _candidates(min(region.width, max(1, seq)), max(1, seq // 2))
    splits = [hsplit] if hsplit else _divisors(group)
    for p in rings:
        chunk0 = max(1, math.ceil(seq / (2 * p)))
        ks_all = [ksplit] if ksplit else _divisors(p)
        for hs in splits:
            if rows:
                shapes = [rows] if rows % hs == 0 else []
            elif hs > region.height:  # the head group's rows do not fit the region's height
                shapes = []
            else:
                shapes = [hs * ps for ps in _candidates(min(region.height // hs, chunk0), chunk0)]
            for r in shapes:
                for ks in ks_all:
                    if r * ks <= region.height:
                        yield p, r, hs, ks


def choose_layout(
    spec: WaferSpec,
    region: Region,
    sizes: dict[str, int],
    dtype: str,
    causal: bool,
    ring: int | None,
    rows: int | None,
    head_split: int | None = None,
    kv_split: int | None = None,
    budget: int | None = None,
) -> PrefillLayout:
    """The fastest layout whose PEs fit ``budget`` bytes (default: the PE's data SRAM; ties:
    fewest PEs); PlanError when none fits."""
    cap = com.sram_cap(spec, budget)
    shapes = _shapes(sizes, region, ring, rows, head_split, kv_split)
    best, least = com.fastest_fit(
        (make_layout(sizes, causal, p, r, hs, region, ks) for p, r, hs, ks in shapes),
        spec,
        dtype,
        cap,
        sram_bytes,
        quick_cycles,
    )
    if best is not None:
        return best
    raise PlanError(_no_fit_message(spec, region, sizes, dtype, causal, least, cap))


def _no_fit_message(
    spec: WaferSpec,
    region: Region,
    sizes: dict[str, int],
    dtype: str,
    causal: bool,
    need: int | None,
    cap: int | None = None,
) -> str:
    cap = spec.pe.data_sram_bytes if cap is None else cap
    b = cost.dtype_bytes(dtype)
    # The smallest block (fewest PEs per unit) that fits on an unbounded mesh.
    big = Region(0, 0, 1 << 30, 1 << 30)
    one_unit = sizes | {"batch": 1, "kv_heads": 1, "heads": sizes["heads"] // sizes["kv_heads"]}
    fit: tuple[int, int, int] | None = None
    p = 1
    while p <= 4 * max(1, sizes["seq"]):
        for pp, r, hs, _ in _shapes(one_unit, big, p, None, None, 1):
            lay = make_layout(one_unit, causal, pp, r, hs, big)
            fits = lay is not None and sram_bytes(lay, b) <= cap
            if fits and (fit is None or pp * r < fit[0] * fit[1]):
                fit = (pp, r, hs)
        p *= 2
    units = sizes["batch"] * sizes["kv_heads"]
    if fit:
        hint = (
            f"a block of {fit[0]} x {fit[1]} PEs per (sequence, kv-head) pair fits "
            f"(ring={fit[0]}, rows_per_unit={fit[1]}): use a region at least {fit[0]} wide with "
            f"{fit[0] * fit[1] * units} PEs for all {units} pairs"
        )
    else:
        hint = "no ring length fits; reduce head_dim"
    shown = "?" if need is None else str(need)
    source = com.cap_source(spec, cap)
    return (
        f"attention prefill: needs {shown} bytes per PE on region "
        f"{region.width}x{region.height}, a PE has {cap} ({source}); {hint}"
    )


# -- program ------------------------------------------------------------------------------------


def build_program(
    plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
) -> Program:
    lay = PrefillLayout.from_plan(plan)
    dtype = plan.dtype
    b = cost.dtype_bytes(dtype)
    region = com.used_region(plan.region, lay.width, lay.height)
    shape = region.shape
    n = tile_wavelets(spec, lay, b)
    p_local = pairs_per_head_local(lay)
    p_round = pairs_per_head_round(lay)
    local = [_fit(w, shape) for w in tile_works(lay, p_local, b)]
    qk, pv = qk_work(lay, p_round, b), pv_work(lay, p_round, b)
    soft = softmax_works(lay, p_round, b)
    fin = final_works(lay, b)
    functional = inputs is not None
    fx = _Functional(lay, region, dtype, inputs) if functional else None

    phases = []
    bh = lay.block_height
    replica_col = lay.replica_of_rows()[:, None]  # (height, 1)
    replica = np.broadcast_to(replica_col, shape)
    cols_row = np.arange(region.width)[None, :] % lay.ring  # (1, width)
    cols = np.broadcast_to(cols_row, shape)
    if bh > 1:
        # Row 0 of every block owns the column's K/V tile; copy it down the block's column.
        first = np.broadcast_to((np.arange(region.height) % bh == 0)[:, None], shape)
        down = Dest(0, 0, 1, bh - 1)
        up = (0, com.as_field(np.broadcast_to(-(np.arange(region.height) % bh)[:, None], shape)))
        phases.append(
            Phase(
                "replicate",
                [
                    Send(K_COLOR, n, down, mask=first, buffer="k"),
                    Send(V_COLOR, n, down, mask=first, buffer="v"),
                    Recv(K_COLOR, n, src=up, mask=~first, buffer="k"),
                    Recv(V_COLOR, n, src=up, mask=~first, buffer="v"),
                ],
            )
        )
    # Replica j folds (and multicasts) the tiles of columns j m .. j m + m - 1.
    owns = (cols // lay.rounds == replica) if lay.kv_split > 1 else None
    phases.append(Phase("local", com.compute_ops(local, dtype, owns, fx.local if fx else None)))
    # Step k: in replica j, column j m + k multicasts its tile along its block row (the
    # replicas' rows are independent rings, so one phase holds step k of all of them).
    for k in range(lay.rounds if lay.ring > 1 else 0):
        if lay.kv_split == 1:
            sender = np.broadcast_to(cols_row == k, shape)
            receiver = np.broadcast_to(cols_row != k, shape)
            dest = Dest(-k, lay.ring - 1 - k, 0, 0)
            src = (com.as_field(np.broadcast_to(k - cols_row, shape)), 0)
        else:
            s_col = replica_col * lay.rounds + k  # the sender's column, per row
            sender = cols_row == s_col
            receiver = ~sender
            dest = Dest(
                com.as_field(np.broadcast_to(-cols_row, shape)),
                com.as_field(np.broadcast_to(lay.ring - 1 - cols_row, shape)),
            )
            src = (com.as_field((s_col - cols_row).astype(np.int32)), 0)
        ops: list[Any] = [
            Send(K_COLOR, n, dest, mask=sender, buffer="k"),
            Send(V_COLOR, n, dest, mask=sender, buffer="v"),
            Stream(
                recv=Recv(K_COLOR, n, src=src),
                compute=com.compute_op(qk, dtype),
                mask=receiver,
                fn=fx.take_keys if fx else None,
            ),
            *com.compute_ops(soft, dtype, receiver),
            Stream(
                recv=Recv(V_COLOR, n, src=src),
                compute=com.compute_op(pv, dtype),
                mask=receiver,
                fn=fx.round_values(k) if fx else None,
            ),
        ]
        phases.append(Phase(f"round {k}", ops))
    root = None
    if lay.kv_split > 1:
        phases.extend(_merge_phases(spec, lay, replica_col, shape, dtype, fx))
        root = np.broadcast_to(replica_col == 0, shape)
    phases.append(Phase("finalize", com.compute_ops(fin, dtype, root, fx.finish if fx else None)))

    block = _executed_flops(lay, spec, dtype, (lay.block_height, lay.ring))
    flops = float(block.sum()) * lay.blocks_x * lay.blocks_y
    return com.attention_program(region, phases, sram_bytes(lay, b), flops, fx)


def _merge_phases(
    spec: WaferSpec,
    lay: PrefillLayout,
    replica: np.ndarray,
    shape: tuple[int, int],
    dtype: str,
    fx: Any,
) -> list[Phase]:
    """Binary tree over the replicas of every (query slice, column): level ``L`` sends the
    state of replica ``j + 2^L`` to replica ``j`` (``2^L`` rows north), which merges it."""
    n = state_wavelets(spec, lay)
    merge = merge_works(lay)
    phases = []
    color = V_COLOR + 1
    for lv in range(com.tree_levels(lay.kv_split)):
        s = 1 << lv
        snd, rcv = com.tree_level_masks(replica, s, lay.kv_split)
        snd, rcv = np.broadcast_to(snd, shape), np.broadcast_to(rcv, shape)
        ops = com.merge_level_ops(
            color, n, (0, -s), snd, rcv, merge, dtype, fx.merge if fx else None
        )
        phases.append(Phase(f"merge {lv}", ops))
        color = com.next_color(color, V_COLOR + 1, spec.fabric.colors)
    return phases


def _fit(w: com.Work, shape: tuple[int, int]) -> com.Work:
    """Broadcast the per-row arrays of ``w`` to the region shape (views)."""

    def f(v: Any) -> Any:
        return com.as_field(np.broadcast_to(v, shape)) if isinstance(v, np.ndarray) else v

    return com.map_work(w, f)


def _executed_flops(lay: PrefillLayout, spec: WaferSpec, dtype: str, shape: tuple[int, int]):
    """FLOPs each PE executes (region-shaped array), padding work included: its own tile when
    its replica folds it, the other tiles its replica folds, merges, and (replica 0) the final
    scaling."""
    b = cost.dtype_bytes(dtype)
    p_local, p_round = pairs_per_head_local(lay), pairs_per_head_round(lay)
    local = com.works_flops(tile_works(lay, p_local, b))
    rnd = com.works_flops(tile_works(lay, p_round, b))
    fin = com.works_flops(final_works(lay, b))
    local = np.asarray(local)
    if local.ndim:  # per-row pattern over the used region: the rows of ``shape``
        local = local[: shape[0]]
    replica = lay.replica_of_rows()[: shape[0], None]
    owns = np.arange(shape[1])[None, :] % lay.ring // lay.rounds == replica
    per_pe = np.where(owns, np.asarray(local) + (lay.rounds - 1) * int(rnd), lay.rounds * int(rnd))
    if lay.kv_split > 1:
        merges = com.tree_merge_counts(lay.kv_split)
        per_pe = per_pe + merges[replica] * float(com.works_flops(merge_works(lay)))
    per_pe = per_pe + np.where(replica == 0, int(fin), 0)
    return np.broadcast_to(per_pe, shape).astype(float)


# -- estimate -----------------------------------------------------------------------------------


def sram_map(plan: Plan) -> np.ndarray:
    """Data bytes per PE of ``plan.region`` (0 on PEs the layout leaves idle)."""
    lay = PrefillLayout.from_plan(plan)
    used = np.full((lay.height, lay.width), float(sram_bytes(lay, cost.dtype_bytes(plan.dtype))))
    return com.pad_to(used, plan.region.shape)


def estimate(plan: Plan, spec: WaferSpec) -> Estimate:
    """Closed form (docs/kernels-attention.md). One replica (``kv_split = 1``):

    ``T = T_rep + T_local + ring * (2R + H + S_k + T_softmax + S_v) + (ring - 2) H + T_final``;

    with ``kv_split > 1`` every PE's end of its ``ring / kv_split`` rounds, then the merge tree
    over the replicas (:func:`split_cycles`).
    """
    lay = PrefillLayout.from_plan(plan)
    tm = timing(spec, plan.dtype, lay)
    used = (lay.height, lay.width)
    pe_flops = com.pad_to(_executed_flops(lay, spec, plan.dtype, used), plan.region.shape)
    ks = lay.kv_split
    total = math.ceil(tm.cycles - 1e-9) if ks == 1 else split_cycles(spec, plan.dtype, lay)
    rounds = lay.rounds if lay.ring > 1 else 0
    t_merge = float(com.works_cycles(spec, plan.dtype, merge_works(lay)))
    n_state = state_wavelets(spec, lay)
    compute = (
        tm.local
        + tm.final
        + rounds * (min(tm.stream_k, tm.qk) + tm.softmax + min(tm.stream_v, tm.pv))
        + com.tree_levels(ks) * t_merge
    )
    comm = tm.replicate + rounds * (max(0.0, tm.stream_k - tm.qk) + max(0.0, tm.stream_v - tm.pv))
    comm += com.tree_levels(ks) * n_state
    comm = max(0.0, min(comm, total - compute))
    blocks = lay.blocks_x * lay.blocks_y
    # Each round multicasts a key and a value tile over the ring - 1 links of the block rows
    # of one replica (``rows`` of them).
    links = (lay.ring if lay.ring > 1 else 0) * 2 * tm.wavelets * (lay.ring - 1) * lay.rows * blocks
    # Replication: a key and a value tile down block_height - 1 links of every block column.
    links += 2 * tm.wavelets * (lay.block_height - 1) * lay.width * lay.blocks_y
    # Merge: one state per tree edge, per (query slice, column).
    links += com.tree_hops(ks) * n_state * lay.rows * lay.ring * blocks
    return Estimate(
        cycles=float(total),
        breakdown={
            "compute": float(compute),
            "communication": float(comm),
            "latency": float(total - compute - comm),
        },
        link_wavelets=float(links),
        pe_flops=pe_flops,
    )


# -- functional mode ----------------------------------------------------------------------------


class _Functional(com.FunctionalBase):
    """The per-PE numpy work of the functional program (closures over the layout)."""

    lay: PrefillLayout

    def _gather(self, src: np.ndarray, unit: int, heads: slice, pos: np.ndarray) -> np.ndarray:
        """Rows ``pos`` of ``src[b, heads]`` for ``unit``; zeros for padding units/positions."""
        lay = self.lay
        n_heads = heads.stop - heads.start
        out = np.zeros((n_heads, len(pos), lay.head_dim), dtype=np.float32)
        if unit >= lay.units:
            return out
        b = unit // lay.kv_heads
        ok = pos < lay.seq
        out[:, ok] = src[b, heads][:, pos[ok]]
        return out

    def _heads(self, kv_head: int, r: int) -> slice:
        """Query heads of ``kv_head`` held by block row ``r``."""
        lay = self.lay
        first = kv_head * lay.group + (r // lay.pos_split) * lay.heads_per_pe
        return slice(first, first + lay.heads_per_pe)

    def init(self, x: int, y: int) -> dict[str, Any]:
        lay = self.lay
        block, r, i = self._where(x, y)
        units = lay.units_of(block)
        qpos = lay.query_positions(i, r)
        kpos = lay.key_positions(i)
        q, k, v = [], [], []
        for u in units:
            h = u % lay.kv_heads
            q.append(self._gather(self.q, u, self._heads(h, r), qpos))
            k.append(self._gather(self.k, u, slice(h, h + 1), kpos)[0])
            v.append(self._gather(self.v, u, slice(h, h + 1), kpos)[0])
        mem: dict[str, Any] = {"q": np.stack(q)}
        if (y - self.region.y) % lay.block_height == 0:  # the others get a copy (replicate)
            mem.update(k=np.stack(k), v=np.stack(v))
        mem.update(com.empty_state((len(units), lay.heads_per_pe, len(qpos)), lay.head_dim))
        return mem

    def _fold(self, mem: dict[str, Any], x: int, y: int, j: int, k: Any, v: Any) -> None:
        lay = self.lay
        _, r, i = self._where(x, y)
        qpos = lay.query_positions(i, r)
        kpos = lay.key_positions(j)
        allowed = np.broadcast_to(kpos < lay.seq, (len(qpos), len(kpos)))
        if lay.causal:
            allowed = allowed & (kpos[None, :] <= qpos[:, None])
        com.online_update(mem, mem["q"], k[:, None], v[:, None], allowed, self.scale)
        if lay.kv_split > 1:  # the payload of the merge messages
            mem["state"] = com.pack_state({n: mem[n] for n in ("o", "m", "l")})

    @staticmethod
    def merge(mem: dict[str, Any], x: int, y: int) -> None:
        """Fold a partial state from another replica (disjoint keys) into the own one."""
        own = mem.get("state")
        incoming = np.asarray(mem.pop("incoming"))
        merged = incoming if own is None else com.merge_states(own, incoming)
        mem["state"] = merged
        mem.update(com.unpack_state(merged))

    def local(self, mem: dict[str, Any], x: int, y: int) -> None:
        _, _, i = self._where(x, y)
        self._fold(mem, x, y, i, mem["k"], mem["v"])

    @staticmethod
    def take_keys(mem: dict[str, Any], x: int, y: int, incoming: Any) -> None:
        mem["k_in"] = np.asarray(incoming)
        return None

    def round_values(self, k: int):
        """Fold step ``k``'s tile: that of column ``j m + k`` for the PE's replica ``j``."""

        def fn(mem: dict[str, Any], x: int, y: int, incoming: Any) -> None:
            s = self.lay.replica_of(y - self.region.y) * self.lay.rounds + k
            self._fold(mem, x, y, s, mem.pop("k_in"), np.asarray(incoming))
            return None

        return fn

    def finish(self, mem: dict[str, Any], x: int, y: int) -> None:
        mem["out"] = com.finish_state(mem, self.dtype)

    def collect(self, memories: dict[tuple[int, int], dict[str, Any]]) -> np.ndarray:
        lay = self.lay
        out = np.zeros((lay.batch, lay.heads, lay.seq, lay.head_dim), dtype=np.float32)
        for (x, y), mem in memories.items():
            if "out" not in mem:
                continue
            block, r, i = self._where(x, y)
            qpos = lay.query_positions(i, r)
            ok = qpos < lay.seq
            for t, u in enumerate(lay.units_of(block)):
                if u >= lay.units:
                    continue
                bi, h = divmod(u, lay.kv_heads)
                out[bi, self._heads(h, r)][:, qpos[ok]] = mem["out"][t][:, ok]
        return out
