"""Decode attention: one query per sequence against a KV cache spread over a block of PEs.

Layout (docs/kernels-attention.md has the formulas):

* A *unit* is one (sequence, kv-head, head group) triple: the ``g = heads / kv_heads`` query
  heads of a kv-head are cut into ``head_split`` groups of ``g / head_split`` heads, and every
  group gets its own copy of the kv-head's cache (so grouped-query attention can use as many
  blocks, and as short merge messages, as multi-head attention; the heads of one group share
  the unit's cache slice and every message).
* Units are mapped to *blocks* of ``block_width`` x ``block_height`` PEs (``units_per_block``
  units each); the cache of a unit is dealt round-robin over its ``N`` PEs from the block's
  south-east corner, so every PE holds ``floor(C/N)`` or ``ceil(C/N)`` tokens (the balance
  WaferLLM's shift-based placement maintains) and the PEs with one token more are the farthest
  from the root (which keeps the merge tree free of link contention).
* ``broadcast_q``: the block's north-west PE multicasts the queries to the block.
* ``partial``: every PE scores its tokens and keeps a partial softmax state ``(o, m, l)``.
* ``reduce x L`` / ``reduce y L``: a binary tree (K = 2) merges the states, first along each
  row to column 0, then along column 0 to the north-west PE (hop distance doubles per level).
* ``finalize``: the root divides by the sum.
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
from wse_sim.program.ir import Dest, Phase, Program, Recv, Region, Send

Q_COLOR = 0
SIZE_FIELDS = ("batch", "heads", "kv_heads", "context", "head_dim")
"""Fields of :class:`DecodeLayout` that are plan sizes of the same name."""


@dataclass(frozen=True)
class DecodeLayout:
    """How decode attention is tiled (counts of PEs, tokens and units)."""

    batch: int
    heads: int
    kv_heads: int
    context: int
    head_dim: int
    block_width: int
    block_height: int
    units_per_block: int
    blocks_x: int
    blocks_y: int
    head_split: int = 1
    """Groups the ``g`` query heads of a kv-head are cut into (each with its own cache copy)."""

    @property
    def group(self) -> int:
        """Query heads per kv-head (``g``)."""
        return self.heads // self.kv_heads

    @property
    def unit_heads(self) -> int:
        """Query heads of one unit: ``g / head_split``."""
        return self.group // self.head_split

    @property
    def units(self) -> int:
        return self.batch * self.kv_heads * self.head_split

    def unit_heads_of(self, unit: int) -> tuple[int, int, slice]:
        """(sequence, kv-head, query-head slice) of ``unit`` (< ``units``)."""
        b, rest = divmod(unit, self.kv_heads * self.head_split)
        h, part = divmod(rest, self.head_split)
        first = h * self.group + part * self.unit_heads
        return b, h, slice(first, first + self.unit_heads)

    @property
    def block_pes(self) -> int:
        return self.block_width * self.block_height

    @property
    def width(self) -> int:
        return self.blocks_x * self.block_width

    @property
    def height(self) -> int:
        return self.blocks_y * self.block_height

    @property
    def max_tokens(self) -> int:
        """Cache tokens on the busiest PE: ceil(context / PEs per block)."""
        return math.ceil(self.context / self.block_pes)

    @property
    def query_rows(self) -> int:
        """Query vectors on every PE: all units of the block, all their heads."""
        return self.units_per_block * self.unit_heads

    def tiling(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "block_width": self.block_width,
            "block_height": self.block_height,
            "units_per_block": self.units_per_block,
            "blocks_x": self.blocks_x,
            "blocks_y": self.blocks_y,
            "max_tokens_per_pe": self.max_tokens,
            "head_split": self.head_split,
        }

    @classmethod
    def from_plan(cls, plan: Plan) -> DecodeLayout:
        s, t = plan.sizes, plan.tiling
        return cls(
            **{n: s[n] for n in SIZE_FIELDS},
            block_width=t["block_width"],
            block_height=t["block_height"],
            units_per_block=t["units_per_block"],
            blocks_x=t["blocks_x"],
            blocks_y=t["blocks_y"],
            head_split=t.get("head_split", 1),
        )

    def pe_of(self, col: int, row: int) -> tuple[int, int, int]:
        """(block index, column in block, row in block) of region offset (col, row)."""
        bx, px = divmod(col, self.block_width)
        by, py = divmod(row, self.block_height)
        return bx * self.blocks_y + by, px, py

    def tokens_of(self, px: int, py: int) -> np.ndarray:
        """Cache positions held by the PE at block offset (px, py): round-robin from the
        block's south-east corner (row-major order reversed)."""
        k = self.block_pes - 1 - (py * self.block_width + px)
        return np.arange(k, self.context, self.block_pes)

    def token_counts(self) -> np.ndarray:
        """Tokens per PE of one block, shape (block_height, block_width). The ``C mod N`` PEs
        with one token more are the last in row-major order, the farthest from the root: a
        far PE is then never ready before a nearer one of the same tree, and its state never
        overtakes a nearer PE's message on the shared links."""
        k = np.arange(self.block_pes).reshape(self.block_height, self.block_width)
        base, extra = divmod(self.context, self.block_pes)
        return base + (k >= self.block_pes - extra).astype(np.int64)

    def units_of(self, block: int) -> list[int]:
        return [block * self.units_per_block + t for t in range(self.units_per_block)]


# -- work ---------------------------------------------------------------------------------------


def partial_works(lay: DecodeLayout, tokens: Any, nbytes: int) -> list[com.Work]:
    """Scores, local softmax and weighted values over ``tokens`` cache entries per PE."""
    rows, d = lay.query_rows, lay.head_dim
    t = np.asarray(tokens)
    pairs = rows * t
    busy = (t > 0).astype(np.int64)
    e = pairs * d
    return [
        com.Work("fmac", com.as_field(2 * e), com.as_field(2 * pairs),
                 com.as_field(4 * e * nbytes), com.as_field((pairs + e) * nbytes)),
        com.alu_work("mul", pairs, rows * busy, nbytes),
        com.alu_work("max", pairs, rows * busy, nbytes),
        com.alu_work("add", 2 * pairs, 2 * rows * busy, nbytes),
        com.alu_work("exp", pairs, rows * busy, nbytes),
    ]  # fmt: skip


def merge_works(lay: DecodeLayout) -> list[com.Work]:
    """Merging a received partial state into the own one (fp32 accumulators)."""
    return com.state_merge_works(lay.query_rows, lay.head_dim)


def final_works(lay: DecodeLayout) -> list[com.Work]:
    """The root's division of the merged accumulators by the sums (fp32)."""
    return com.finalize_works(lay.query_rows, lay.head_dim, com.ACC_BYTES)


def q_wavelets(spec: WaferSpec, lay: DecodeLayout, nbytes: int) -> int:
    return cost.wavelets(spec, lay.query_rows * lay.head_dim * nbytes)


def state_wavelets(spec: WaferSpec, lay: DecodeLayout) -> int:
    """A partial state (o, m, l) of every query row, fp32."""
    return com.state_message_wavelets(spec, lay.query_rows, lay.head_dim)


def sram_bytes(lay: DecodeLayout, nbytes: int) -> int:
    """Data bytes on the busiest PE: queries, K and V slices, scores, two partial states."""
    rows, d, t = lay.query_rows, lay.head_dim, lay.max_tokens
    kv = lay.units_per_block * 2 * t * d * nbytes
    return rows * d * nbytes + kv + rows * t * com.ACC_BYTES + 2 * rows * (d + 2) * com.ACC_BYTES


def _sram_used(lay: DecodeLayout, nbytes: int) -> np.ndarray:
    """Data bytes per PE of the used region (PEs differ by at most one cache token)."""
    one = by_tokens(lay, lambda t: sram_bytes(_tokens(lay, t), nbytes))
    return np.tile(one, (lay.blocks_y, lay.blocks_x))


def _tokens(lay: DecodeLayout, per_pe: int) -> DecodeLayout:
    """The same layout with a context that puts ``per_pe`` tokens on the busiest PE."""
    return DecodeLayout(**{**lay.__dict__, "context": per_pe * lay.block_pes})


def sram_map(plan: Plan) -> np.ndarray:
    """Data bytes per PE of ``plan.region`` (0 on PEs the layout leaves idle)."""
    lay = DecodeLayout.from_plan(plan)
    return com.pad_to(_sram_used(lay, cost.dtype_bytes(plan.dtype)), plan.region.shape)


levels = com.tree_levels


# -- layout -------------------------------------------------------------------------------------


def make_layout(
    sizes: dict[str, int], gx: int, gy: int, bw: int, bh: int, head_split: int = 1
) -> DecodeLayout:
    """``gx`` x ``gy`` blocks of ``bw`` x ``bh`` PEs, the query heads of a kv-head cut into
    ``head_split`` units."""
    units = sizes["batch"] * sizes["kv_heads"] * head_split
    return DecodeLayout(
        **{n: sizes[n] for n in SIZE_FIELDS},
        block_width=bw,
        block_height=bh,
        units_per_block=math.ceil(units / (gx * gy)),
        blocks_x=gx,
        blocks_y=gy,
        head_split=head_split,
    )


def quick_cycles(spec: WaferSpec, dtype: str, lay: DecodeLayout) -> int:
    """The closed form (docs/kernels-attention.md), exact for power-of-two block sides:

    ``2R + n_q - 1 + T_part + sum over tree levels (2 s H + 2R + n_r - 1 + T_merge) + T_final``
    with ``s = 2^level`` along x then along y (the partner ``s`` PEs away got the queries
    ``s H`` later and its state travels ``s`` hops)."""
    f, b = spec.fabric, cost.dtype_bytes(dtype)
    R, H = f.ramp_latency_cycles, f.hop_latency_cycles
    nq, nr = q_wavelets(spec, lay, b), state_wavelets(spec, lay)
    t_part = int(com.works_cycles(spec, dtype, partial_works(lay, lay.max_tokens, b)))
    t_merge = int(com.works_cycles(spec, dtype, merge_works(lay)))
    total = (2 * R + nq - 1 if lay.block_pes > 1 else 0) + t_part
    for span in (lay.block_width, lay.block_height):
        for lv in range(levels(span)):
            s = 1 << lv
            total += 2 * s * H + 2 * R + nr - 1 + t_merge
    return total + int(com.works_cycles(spec, dtype, final_works(lay)))


def _pow2_upto(limit: int) -> list[int]:
    """Powers of two below ``limit``, and ``limit`` itself."""
    out, p = [limit], 1
    while p < limit:
        out.append(p)
        p *= 2
    return out


def _grids(units: int, context: int, region: Region, block: tuple[int, int] | None):
    """Candidate (gx, gy, block width, block height).

    Without an override: for every ``gx`` the blocks that tile the region (``gy`` blocks high),
    and, where such a block has more PEs than useful (more than ``2 C``, so mostly empty
    PEs and tree levels that merge nothing), smaller blocks of power-of-two sides holding
    ``C / 32`` to ``2 C`` PEs (a few tokens per PE and fewer tree levels can be faster).
    """
    if block is not None:
        bw, bh = block
        cap_y = region.height // bh
        cap_x = region.width // bw
        if cap_x < 1 or cap_y < 1:
            return
        gy = min(cap_y, units)
        gx = min(cap_x, math.ceil(units / gy))
        yield gx, gy, bw, bh
        return
    seen: set[tuple[int, int]] = set()
    for gx in range(1, min(units, region.width) + 1):
        gy = min(region.height, math.ceil(units / gx))
        bw_max, bh_max = region.width // gx, region.height // gy
        if (bw_max, bh_max) in seen:
            continue
        seen.add((bw_max, bh_max))
        yield gx, gy, bw_max, bh_max
        if bw_max * bh_max <= 2 * context:
            continue
        for bw in _pow2_upto(bw_max):
            for bh in _pow2_upto(bh_max):
                if (bw, bh) != (bw_max, bh_max) and context / 32 <= bw * bh <= 2 * context:
                    yield gx, gy, bw, bh


def choose_layout(
    spec: WaferSpec,
    region: Region,
    sizes: dict[str, int],
    dtype: str,
    block: tuple[int, int] | None,
    head_split: int | None = None,
    budget: int | None = None,
) -> DecodeLayout:
    """Fastest (block grid, head split) whose busiest PE fits ``budget`` bytes (default: the
    PE's data SRAM); ties: fewest PEs. PlanError when none fits."""
    cap = com.sram_cap(spec, budget)
    group = sizes["heads"] // sizes["kv_heads"]
    splits = [head_split] if head_split else [d for d in range(1, group + 1) if group % d == 0]

    def layouts():
        for hs in splits:
            units = sizes["batch"] * sizes["kv_heads"] * hs
            for gx, gy, bw, bh in _grids(units, sizes["context"], region, block):
                yield make_layout(sizes, gx, gy, bw, bh, hs)

    best, need = com.fastest_fit(layouts(), spec, dtype, cap, sram_bytes, quick_cycles)
    if best is not None:
        return best
    raise PlanError(_no_fit_message(spec, region, sizes, dtype, need, cap))


def _no_fit_message(
    spec: WaferSpec,
    region: Region,
    sizes: dict[str, int],
    dtype: str,
    need: int | None,
    cap: int | None = None,
) -> str:
    b = cost.dtype_bytes(dtype)
    cap = spec.pe.data_sram_bytes if cap is None else cap
    units = sizes["batch"] * sizes["kv_heads"]
    g, d = sizes["heads"] // sizes["kv_heads"], sizes["head_dim"]
    one = make_layout(sizes | {"batch": 1, "kv_heads": 1, "heads": g, "context": 0}, 1, 1, 1, 1)
    fixed = sram_bytes(one, b)
    per_token = 2 * d * b + g * com.ACC_BYTES
    if fixed + per_token > cap:
        hint = f"even one token per PE needs {fixed + per_token} bytes; reduce head_dim or heads"
    else:
        tokens = (cap - fixed) // per_token
        pes = units * math.ceil(sizes["context"] / tokens)
        side = math.isqrt(pes - 1) + 1
        hint = (
            f"holding at most {tokens} tokens per PE it needs a region of at least {pes} PEs "
            f"(e.g. {side}x{side}), or a shorter context"
        )
    needed = "?" if need is None else str(need)
    source = com.cap_source(spec, cap)
    return (
        f"attention decode: needs {needed} bytes per PE on region {region.width}x{region.height} "
        f"for context={sizes['context']}, a PE has {cap} ({source}); {hint}"
    )


# -- program ------------------------------------------------------------------------------------


def _tile(block_field: Any, lay: DecodeLayout) -> Any:
    """A block-shaped field repeated over all blocks (scalars stay scalars)."""
    if not isinstance(block_field, np.ndarray):
        return block_field
    return com.as_field(np.tile(block_field, (lay.blocks_y, lay.blocks_x)))


def _tile_work(w: com.Work, lay: DecodeLayout) -> com.Work:
    return com.map_work(w, lambda v: _tile(v, lay))


def _block_mask(block_mask: np.ndarray, lay: DecodeLayout) -> np.ndarray:
    return np.tile(block_mask, (lay.blocks_y, lay.blocks_x))


def build_program(
    plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
) -> Program:
    lay = DecodeLayout.from_plan(plan)
    dtype = plan.dtype
    region = com.used_region(plan.region, lay.width, lay.height)
    b = cost.dtype_bytes(dtype)
    bw, bh = lay.block_width, lay.block_height
    px = np.arange(bw)[None, :].repeat(bh, axis=0)
    py = np.arange(bh)[:, None].repeat(bw, axis=1)
    root = (px == 0) & (py == 0)
    fx = _Functional(lay, region, dtype, inputs) if inputs is not None else None
    nq, nr = q_wavelets(spec, lay, b), state_wavelets(spec, lay)

    phases: list[Phase] = []
    if lay.block_pes > 1:
        phases.append(
            Phase(
                "broadcast_q",
                [
                    Send(Q_COLOR, nq, Dest(0, bw - 1, 0, bh - 1), mask=_block_mask(root, lay),
                         buffer="q"),
                    Recv(Q_COLOR, nq, src=(_tile(-px, lay), _tile(-py, lay)),
                         mask=_block_mask(~root, lay), buffer="q"),
                ],
            )
        )  # fmt: skip
    partial = [_tile_work(w, lay) for w in partial_works(lay, lay.token_counts(), b)]
    phases.append(
        Phase("partial", com.compute_ops(partial, dtype, None, fx.partial if fx else None))
    )

    merge = merge_works(lay)
    color = 1
    for axis, span, pos in (("x", bw, px), ("y", bh, py)):
        on_line = np.ones_like(root) if axis == "x" else (px == 0)
        for lv in range(levels(span)):
            s = 1 << lv
            snd, rcv = com.tree_level_masks(pos, s, span)
            off = (-s, 0) if axis == "x" else (0, -s)
            ops = com.merge_level_ops(
                color, nr, off, _block_mask(on_line & snd, lay), _block_mask(on_line & rcv, lay),
                merge, dtype, fx.merge if fx else None,
            )  # fmt: skip
            phases.append(Phase(f"reduce {axis} {lv}", ops))
            color = com.next_color(color, 1, spec.fabric.colors)
    fin = com.compute_ops(
        final_works(lay), dtype, _block_mask(root, lay), fx.finish if fx else None
    )
    phases.append(Phase("finalize", fin))
    return com.attention_program(
        region,
        phases,
        com.as_field(_sram_used(lay, b).astype(np.int64)),
        float(executed_flops(lay, spec, dtype).sum()),
        fx,
    )


def by_tokens(lay: DecodeLayout, f: Any) -> np.ndarray:
    """``f(tokens)`` for every PE of one block, shape (block_height, block_width): PEs hold
    ``floor(C/N)`` or ``ceil(C/N)`` tokens, so ``f`` is evaluated twice, not per PE."""
    counts = lay.token_counts()
    base = lay.context // lay.block_pes
    lo, hi = float(f(base)), float(f(base + 1))
    return np.where(counts > base, hi, lo)


def executed_flops(lay: DecodeLayout, spec: WaferSpec, dtype: str) -> np.ndarray:
    """FLOPs per PE of the whole region (array), as the program executes them."""
    b = cost.dtype_bytes(dtype)
    per = by_tokens(lay, lambda t: com.works_flops(partial_works(lay, t, b))).astype(float)
    merges = _merge_counts(lay)
    per += merges * float(com.works_flops(merge_works(lay)))
    per[0, 0] += float(com.works_flops(final_works(lay)))
    return np.tile(per, (lay.blocks_y, lay.blocks_x))


def _merge_counts(lay: DecodeLayout) -> np.ndarray:
    """How many partial states each PE of a block merges."""
    counts = np.zeros((lay.block_height, lay.block_width))
    counts += com.tree_merge_counts(lay.block_width)[None, :]  # the row trees
    counts[:, 0] += com.tree_merge_counts(lay.block_height)  # the tree along column 0
    return counts


# -- estimate -----------------------------------------------------------------------------------


def estimate(plan: Plan, spec: WaferSpec) -> Estimate:
    """Per-level closed form of docs/kernels-attention.md, evaluated on one block's PEs (all
    blocks are alike): query multicast, partial scores, then the two reduction trees."""
    lay = DecodeLayout.from_plan(plan)
    dtype = plan.dtype
    f, b = spec.fabric, cost.dtype_bytes(dtype)
    R, H = f.ramp_latency_cycles, f.hop_latency_cycles
    bw, bh = lay.block_width, lay.block_height
    nq, nr = q_wavelets(spec, lay, b), state_wavelets(spec, lay)
    px = np.arange(bw)[None, :]
    py = np.arange(bh)[:, None]
    if lay.block_pes > 1:
        arrival = 2 * R + (px + py) * H + nq - 1 + np.zeros((bh, bw), dtype=np.int64)
        arrival[0, 0] = nq
    else:
        arrival = np.zeros((1, 1), dtype=np.int64)
    t_part = by_tokens(lay, lambda t: com.works_cycles(spec, dtype, partial_works(lay, t, b)))
    ready = (arrival + t_part).astype(np.int64)
    t_merge = int(com.works_cycles(spec, dtype, merge_works(lay)))
    ready_rows = _tree(ready, nr, t_merge, R, H)  # (bh,) after the x trees
    root = _tree(ready_rows[None, :], nr, t_merge, R, H)[0]
    t_fin = int(com.works_cycles(spec, dtype, final_works(lay)))
    total = float(root + t_fin)

    compute = int(np.max(t_part)) + (levels(bw) + levels(bh)) * t_merge + t_fin
    t_q = int(arrival.max())
    hops = _tree_hops(bw) * bh + _tree_hops(bh)
    links = ((bw - 1) + bw * (bh - 1)) * nq + hops * nr
    return Estimate(
        cycles=total,
        breakdown={
            "compute": float(compute),
            "communication": float(max(0.0, total - compute - t_q)),
            "latency": float(t_q),
        },
        link_wavelets=float(links * lay.blocks_x * lay.blocks_y),
        pe_flops=com.pad_to(executed_flops(lay, spec, dtype), plan.region.shape),
    )


def _tree(ready: np.ndarray, n: int, t_merge: int, R: int, H: int) -> np.ndarray:
    """Binary-tree reduction along the last axis of ``ready`` (cycles each PE is ready); returns
    the cycle position 0 of every row finishes its last merge."""
    return com.tree_finish(ready.astype(np.int64), n, t_merge, R, H)


_tree_hops = com.tree_hops


# -- functional mode ----------------------------------------------------------------------------


class _Functional(com.FunctionalBase):
    """The per-PE numpy work of the functional decode program."""

    lay: DecodeLayout

    def init(self, x: int, y: int) -> dict[str, Any]:
        lay = self.lay
        block, px, py = self._where(x, y)
        g, d = lay.unit_heads, lay.head_dim
        tokens = lay.tokens_of(px, py)
        units = lay.units_of(block)
        q = np.zeros((len(units), g, d), dtype=np.float32)
        k = np.zeros((len(units), len(tokens), d), dtype=np.float32)
        v = np.zeros_like(k)
        for t, u in enumerate(units):
            if u >= lay.units:
                continue
            b, h, heads = lay.unit_heads_of(u)
            q[t] = self.q[b, heads, 0]
            k[t] = self.k[b, h, tokens]
            v[t] = self.v[b, h, tokens]
        mem: dict[str, Any] = {"k": k, "v": v}
        if px == 0 and py == 0:
            mem["q"] = q
        return mem

    def partial(self, mem: dict[str, Any], x: int, y: int) -> None:
        lay = self.lay
        q = mem["q"][:, :, None, :]  # (units, g, 1, d)
        state = com.empty_state((q.shape[0], lay.unit_heads, 1), lay.head_dim)
        n_tok = mem["k"].shape[1]
        if n_tok:
            allowed = np.ones((1, n_tok), dtype=bool)
            com.online_update(state, q, mem["k"][:, None], mem["v"][:, None], allowed, self.scale)
        mem["state"] = com.pack_state(state)[:, :, 0, :]

    @staticmethod
    def merge(mem: dict[str, Any], x: int, y: int) -> None:
        mem["state"] = com.merge_states(mem["state"], np.asarray(mem.pop("incoming")))

    def finish(self, mem: dict[str, Any], x: int, y: int) -> None:
        mem["out"] = com.finish_state(com.unpack_state(mem["state"]), self.dtype)

    def collect(self, memories: dict[tuple[int, int], dict[str, Any]]) -> np.ndarray:
        lay = self.lay
        out = np.zeros((lay.batch, lay.heads, 1, lay.head_dim), dtype=np.float32)
        for (x, y), mem in memories.items():
            if "out" not in mem:
                continue
            block, _, _ = self._where(x, y)
            for t, u in enumerate(lay.units_of(block)):
                if u < lay.units:
                    b, _, heads = lay.unit_heads_of(u)
                    out[b, heads, 0] = mem["out"][t]
        return out
