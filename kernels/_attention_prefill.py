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
from wse_sim.kernels._attention_common import (
    ACC_BYTES,
    Work,
    alu_work,
    as_field,
    compute_ops,
    empty_state,
    finish_state,
    online_update,
    pad_to,
    round_to,
    used_region,
    work_cycles,
    works_cycles,
    works_flops,
)
from wse_sim.kernels.base import Estimate, Plan
from wse_sim.program.ir import (
    Compute,
    Dest,
    IntField,
    Phase,
    Program,
    Recv,
    Region,
    Send,
    Stream,
)

K_COLOR = 0
V_COLOR = 1


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
        return self.blocks_y * self.rows

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
        }

    @classmethod
    def from_plan(cls, plan: Plan) -> PrefillLayout:
        s, t = plan.sizes, plan.tiling
        return cls(
            batch=s["batch"],
            heads=s["heads"],
            kv_heads=s["kv_heads"],
            seq=s["seq"],
            head_dim=s["head_dim"],
            causal=bool(plan.options.get("causal", True)),
            ring=t["ring"],
            rows=t["rows_per_unit"],
            head_split=t["head_split"],
            units_per_block=t["units_per_block"],
            blocks_x=t["blocks_x"],
            blocks_y=t["blocks_y"],
        )

    # -- positions ------------------------------------------------------------------------------
    def pe_of(self, col: int, row: int) -> tuple[int, int, int]:
        """(block index, row in block, column in block) of the PE at region offset (col, row)."""
        i, bx = col % self.ring, col // self.ring
        r, by = row % self.rows, row // self.rows
        return bx * self.blocks_y + by, r, i

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
    r = np.arange(lay.rows) % lay.pos_split
    per_row = cq * c + 2 * (r * cq * cq + cq * (cq + 1) // 2)
    return np.tile(per_row, lay.blocks_y)[:, None]  # (height, 1): broadcasts over columns


def pairs_per_head_round(lay: PrefillLayout) -> int:
    """Pairs per head against another column's tile: half of the 2x2 chunk blocks if causal."""
    return (2 if lay.causal else 4) * lay.qchunk * lay.chunk


def qk_work(lay: PrefillLayout, pairs_head: IntField, nbytes: int) -> Work:
    """Scores: one dot product of length head_dim per (query, key) pair."""
    pairs = np.asarray(pairs_head) * lay.units_per_block * lay.heads_per_pe
    e = pairs * lay.head_dim
    return Work(
        "fmac", as_field(e), as_field(pairs), as_field(2 * e * nbytes), as_field(pairs * nbytes)
    )


def pv_work(lay: PrefillLayout, pairs_head: IntField, nbytes: int) -> Work:
    """Context: one axpy of length head_dim per (query, key) pair."""
    pairs = np.asarray(pairs_head) * lay.units_per_block * lay.heads_per_pe
    e = pairs * lay.head_dim
    return Work(
        "fmac", as_field(e), as_field(pairs), as_field(2 * e * nbytes), as_field(e * nbytes)
    )


def softmax_works(lay: PrefillLayout, pairs_head: IntField, nbytes: int) -> list[Work]:
    """Online-softmax update of one tile: scale, max, subtract, exp, sum per score, plus the
    per-row rescale of the running max, sum and accumulator."""
    pairs = np.asarray(pairs_head) * lay.units_per_block * lay.heads_per_pe
    rows, d = lay.query_rows, lay.head_dim
    return [
        alu_work("mul", pairs + rows + rows * d, 2 * rows + 1, nbytes),
        alu_work("max", pairs + rows, rows + 1, nbytes),
        alu_work("add", 2 * pairs + 2 * rows, 2 * rows + 2, nbytes),
        alu_work("exp", pairs + rows, rows + 1, nbytes),
    ]


def final_works(lay: PrefillLayout, nbytes: int) -> list[Work]:
    """1 / l as rsqrt(l)^2, then the accumulator times 1 / l."""
    rows, d = lay.query_rows, lay.head_dim
    return [
        alu_work("rsqrt", rows, 1, nbytes),
        alu_work("mul", rows + rows * d, rows + 1, nbytes),
    ]


def tile_wavelets(spec: WaferSpec, lay: PrefillLayout, nbytes: int) -> int:
    """Wavelets of one key (or value) tile of a column: all its units, 2 chunks."""
    return cost.wavelets(spec, lay.units_per_block * 2 * lay.chunk * lay.head_dim * nbytes)


def sram_bytes(lay: PrefillLayout, nbytes: int) -> int:
    """Data bytes on one PE: Q, own K/V tile, the incoming K/V tile (when ring > 1), scores and
    the accumulators (fp32)."""
    u, rows, d, c = lay.units_per_block, lay.query_rows, lay.head_dim, lay.chunk
    q = rows * d * nbytes
    kv_tile = u * 2 * (2 * c) * d * nbytes  # K and V of two chunks
    scores = rows * 2 * c * ACC_BYTES
    acc = rows * (d + 2) * ACC_BYTES
    return q + (2 if lay.ring > 1 else 1) * kv_tile + scores + acc


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
    qk = float(work_cycles(spec, dtype, qk_work(lay, p, b)))
    pv = float(work_cycles(spec, dtype, pv_work(lay, p, b)))
    rep = 0.0
    if lay.rows > 1:
        rep = 2.0 * n + 2 * f.ramp_latency_cycles + (lay.rows - 1) * f.hop_latency_cycles - 1
    return Timing(
        replicate=rep,
        local=float(np.max(_local_cycles(spec, dtype, lay))),
        qk=qk,
        softmax=float(works_cycles(spec, dtype, softmax_works(lay, p, b))),
        pv=pv,
        stream_k=stream_cycles(spec, n, qk),
        stream_v=stream_cycles(spec, n, pv),
        final=float(works_cycles(spec, dtype, final_works(lay, b))),
        handover=float(2 * f.ramp_latency_cycles + f.hop_latency_cycles),
        tail=float(max(0, lay.ring - 2) * f.hop_latency_cycles),
        ring=lay.ring,
        wavelets=n,
    )


def quick_cycles(spec: WaferSpec, dtype: str, lay: PrefillLayout) -> float:
    """The estimate's cycles without the per-PE arrays (used to rank candidate layouts)."""
    return timing(spec, dtype, lay).cycles


def _local_cycles(spec: WaferSpec, dtype: str, lay: PrefillLayout) -> Any:
    b = cost.dtype_bytes(dtype)
    p = pairs_per_head_local(lay)
    works = [qk_work(lay, p, b), *softmax_works(lay, p, b), pv_work(lay, p, b)]
    return works_cycles(spec, dtype, works)


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
    sizes: dict[str, int], causal: bool, ring: int, rows: int, head_split: int, region: Region
) -> PrefillLayout | None:
    """The layout with ``ring`` x ``rows`` blocks, or ``None`` when it does not fit ``region``."""
    if ring > region.width or rows > region.height or rows % head_split:
        return None
    if (sizes["heads"] // sizes["kv_heads"]) % head_split:
        return None
    units = sizes["batch"] * sizes["kv_heads"]
    per_col, per_row = region.height // rows, region.width // ring
    capacity = per_col * per_row
    upb = math.ceil(units / capacity)
    blocks = math.ceil(units / upb)
    blocks_y = min(blocks, per_col)
    blocks_x = math.ceil(blocks / blocks_y)
    return PrefillLayout(
        batch=sizes["batch"],
        heads=sizes["heads"],
        kv_heads=sizes["kv_heads"],
        seq=sizes["seq"],
        head_dim=sizes["head_dim"],
        causal=causal,
        ring=ring,
        rows=rows,
        head_split=head_split,
        units_per_block=upb,
        blocks_x=blocks_x,
        blocks_y=blocks_y,
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _shapes(
    sizes: dict[str, int], region: Region, ring: int | None, rows: int | None, hsplit: int | None
):
    """Candidate (ring, rows, head_split) triples for ``region``."""
    seq = sizes["seq"]
    group = sizes["heads"] // sizes["kv_heads"]
    rings = [ring] if ring else _candidates(min(region.width, max(1, seq)), max(1, seq // 2))
    splits = [hsplit] if hsplit else _divisors(group)
    for p in rings:
        chunk0 = max(1, math.ceil(seq / (2 * p)))
        for hs in splits:
            if rows:
                if rows % hs == 0:
                    yield p, rows, hs
                continue
            for ps in _candidates(min(region.height // hs, chunk0), chunk0):
                yield p, hs * ps, hs


def choose_layout(
    spec: WaferSpec,
    region: Region,
    sizes: dict[str, int],
    dtype: str,
    causal: bool,
    ring: int | None,
    rows: int | None,
    head_split: int | None = None,
) -> PrefillLayout:
    """The fastest layout that fits SRAM (ties: fewest PEs); PlanError when none fits."""
    cap = spec.pe.data_sram_bytes
    b = cost.dtype_bytes(dtype)
    best: tuple[float, int, PrefillLayout] | None = None
    least: int | None = None
    for p, r, hs in _shapes(sizes, region, ring, rows, head_split):
        lay = make_layout(sizes, causal, p, r, hs, region)
        if lay is None:
            continue
        need = sram_bytes(lay, b)
        least = need if least is None else min(least, need)
        if need > cap:
            continue
        key = (quick_cycles(spec, dtype, lay), lay.width * lay.height)
        if best is None or key < best[:2]:
            best = (*key, lay)
    if best is not None:
        return best[2]
    raise PlanError(_no_fit_message(spec, region, sizes, dtype, causal, least))


def _no_fit_message(
    spec: WaferSpec,
    region: Region,
    sizes: dict[str, int],
    dtype: str,
    causal: bool,
    need: int | None,
) -> str:
    cap = spec.pe.data_sram_bytes
    b = cost.dtype_bytes(dtype)
    # The smallest block (fewest PEs per unit) that fits on an unbounded mesh.
    big = Region(0, 0, 1 << 30, 1 << 30)
    one_unit = sizes | {"batch": 1, "kv_heads": 1, "heads": sizes["heads"] // sizes["kv_heads"]}
    fit: tuple[int, int, int] | None = None
    p = 1
    while p <= 4 * max(1, sizes["seq"]):
        for pp, r, hs in _shapes(one_unit, big, p, None, None):
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
    return (
        f"attention prefill: needs {shown} bytes per PE on region "
        f"{region.width}x{region.height}, a PE has {cap} (pe.data_sram_bytes); {hint}"
    )


# -- program ------------------------------------------------------------------------------------


def build_program(
    plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
) -> Program:
    lay = PrefillLayout.from_plan(plan)
    dtype = plan.dtype
    b = cost.dtype_bytes(dtype)
    region = used_region(plan.region, lay.width, lay.height)
    shape = region.shape
    n = tile_wavelets(spec, lay, b)
    p_local = pairs_per_head_local(lay)
    p_round = pairs_per_head_round(lay)
    local = [qk_work(lay, p_local, b), *softmax_works(lay, p_local, b), pv_work(lay, p_local, b)]
    local = [_fit(w, shape) for w in local]
    qk, pv = qk_work(lay, p_round, b), pv_work(lay, p_round, b)
    soft = softmax_works(lay, p_round, b)
    fin = final_works(lay, b)
    functional = inputs is not None
    fx = _Functional(lay, region, dtype, inputs) if functional else None

    phases = []
    if lay.rows > 1:
        # Row 0 of every block owns the column's K/V tile; copy it down the block's column.
        first = np.broadcast_to((np.arange(region.height) % lay.rows == 0)[:, None], shape)
        down = Dest(0, 0, 1, lay.rows - 1)
        up = (0, as_field(np.broadcast_to(-(np.arange(region.height) % lay.rows)[:, None], shape)))
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
    phases.append(Phase("local", compute_ops(local, dtype, None, fx.local if fx else None)))
    cols = np.arange(region.width) % lay.ring
    for s in range(lay.ring if lay.ring > 1 else 0):
        sender = np.broadcast_to(cols == s, shape)
        receiver = np.broadcast_to(cols != s, shape)
        dest = Dest(-s, lay.ring - 1 - s, 0, 0)
        src = (as_field(np.broadcast_to(s - cols, shape)), 0)
        ops: list[Any] = [
            Send(K_COLOR, n, dest, mask=sender, buffer="k"),
            Send(V_COLOR, n, dest, mask=sender, buffer="v"),
            Stream(
                recv=Recv(K_COLOR, n, src=src),
                compute=_compute(qk, dtype),
                mask=receiver,
                fn=fx.take_keys if fx else None,
            ),
            *compute_ops(soft, dtype, receiver),
            Stream(
                recv=Recv(V_COLOR, n, src=src),
                compute=_compute(pv, dtype),
                mask=receiver,
                fn=fx.round_values(s) if fx else None,
            ),
        ]
        phases.append(Phase(f"round {s}", ops))
    phases.append(Phase("finalize", compute_ops(fin, dtype, None, fx.finish if fx else None)))

    executed = _executed_flops(lay, spec, dtype, shape)
    return Program(
        name="attention",
        region=region,
        phases=phases,
        sram_bytes=sram_bytes(lay, b),
        flops=float(executed.sum()),
        init=fx.init if fx else None,
        collect=fx.collect if fx else None,
    )


def _fit(w: Work, shape: tuple[int, int]) -> Work:
    """Broadcast the per-row arrays of ``w`` to the region shape (views)."""

    def f(v: Any) -> Any:
        return as_field(np.broadcast_to(v, shape)) if isinstance(v, np.ndarray) else v

    return Work(w.kind, f(w.elements), f(w.instructions), f(w.reads), f(w.writes))


def _compute(w: Work, dtype: str) -> Compute:
    return Compute(
        kind=w.kind,
        elements=w.elements,
        dtype=dtype,
        instructions=w.instructions,
        sram_read_bytes=w.reads,
        sram_write_bytes=w.writes,
    )


def _executed_flops(lay: PrefillLayout, spec: WaferSpec, dtype: str, shape: tuple[int, int]):
    """FLOPs each PE executes (region-shaped array), padding work included."""
    b = cost.dtype_bytes(dtype)
    p_local, p_round = pairs_per_head_local(lay), pairs_per_head_round(lay)
    local = works_flops(
        [qk_work(lay, p_local, b), *softmax_works(lay, p_local, b), pv_work(lay, p_local, b)]
    )
    rnd = works_flops(
        [qk_work(lay, p_round, b), *softmax_works(lay, p_round, b), pv_work(lay, p_round, b)]
    )
    fin = works_flops(final_works(lay, b))
    per_pe = np.asarray(local) + (lay.ring - 1) * int(rnd) + int(fin)
    return np.broadcast_to(per_pe, shape).astype(float)


# -- estimate -----------------------------------------------------------------------------------


def sram_map(plan: Plan) -> np.ndarray:
    """Data bytes per PE of ``plan.region`` (0 on PEs the layout leaves idle)."""
    lay = PrefillLayout.from_plan(plan)
    used = np.full((lay.height, lay.width), float(sram_bytes(lay, cost.dtype_bytes(plan.dtype))))
    return pad_to(used, plan.region.shape)


def estimate(plan: Plan, spec: WaferSpec) -> Estimate:
    """Closed form (docs/kernels-attention.md):

    ``T = T_rep + T_local + ring * (2R + H + S_k + T_softmax + S_v) + (ring - 2) H + T_final``.
    """
    lay = PrefillLayout.from_plan(plan)
    tm = timing(spec, plan.dtype, lay)
    used = (lay.height, lay.width)
    pe_flops = pad_to(_executed_flops(lay, spec, plan.dtype, used), plan.region.shape)
    total = math.ceil(tm.cycles - 1e-9)
    rounds = lay.ring if lay.ring > 1 else 0
    compute = (
        tm.local
        + tm.final
        + rounds * (min(tm.stream_k, tm.qk) + tm.softmax + min(tm.stream_v, tm.pv))
    )
    comm = tm.replicate + rounds * (max(0.0, tm.stream_k - tm.qk) + max(0.0, tm.stream_v - tm.pv))
    # Each round multicasts a key and a value tile over the ring - 1 links of every block row.
    rows = lay.rows * lay.blocks_x * lay.blocks_y
    links = rounds * 2 * tm.wavelets * (lay.ring - 1) * rows
    # Replication: a key and a value tile down rows - 1 links of every block column.
    links += 2 * tm.wavelets * (lay.rows - 1) * lay.width * lay.blocks_y
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


class _Functional:
    """The per-PE numpy work of the functional program (closures over the layout)."""

    def __init__(
        self, lay: PrefillLayout, region: Region, dtype: str, inputs: dict[str, np.ndarray]
    ) -> None:
        self.lay, self.region, self.dtype = lay, region, dtype
        self.q = round_to(dtype, inputs["q"])
        self.k = round_to(dtype, inputs["k"])
        self.v = round_to(dtype, inputs["v"])
        self.scale = 1.0 / math.sqrt(lay.head_dim)

    def _where(self, x: int, y: int) -> tuple[int, int, int]:
        return self.lay.pe_of(x - self.region.x, y - self.region.y)

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
        if r == 0:  # rows > 0 receive their copy in the replicate phase
            mem.update(k=np.stack(k), v=np.stack(v))
        mem.update(empty_state((len(units), lay.heads_per_pe, len(qpos)), lay.head_dim))
        return mem

    def _fold(self, mem: dict[str, Any], x: int, y: int, j: int, k: Any, v: Any) -> None:
        lay = self.lay
        _, r, i = self._where(x, y)
        qpos = lay.query_positions(i, r)
        kpos = lay.key_positions(j)
        allowed = np.broadcast_to(kpos < lay.seq, (len(qpos), len(kpos)))
        if lay.causal:
            allowed = allowed & (kpos[None, :] <= qpos[:, None])
        online_update(mem, mem["q"], k[:, None], v[:, None], allowed, self.scale)

    def local(self, mem: dict[str, Any], x: int, y: int) -> None:
        _, _, i = self._where(x, y)
        self._fold(mem, x, y, i, mem["k"], mem["v"])

    @staticmethod
    def take_keys(mem: dict[str, Any], x: int, y: int, incoming: Any) -> None:
        mem["k_in"] = np.asarray(incoming)
        return None

    def round_values(self, s: int):
        def fn(mem: dict[str, Any], x: int, y: int, incoming: Any) -> None:
            self._fold(mem, x, y, s, mem.pop("k_in"), np.asarray(incoming))
            return None

        return fn

    def finish(self, mem: dict[str, Any], x: int, y: int) -> None:
        mem["out"] = finish_state(mem, self.dtype)

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
