"""Building blocks shared by the prefill and decode attention programs.

* :class:`Work`: one vector instruction group (kind, elements, instructions, SRAM bytes), the
  unit both the IR program and the closed-form estimate are built from, so that they cannot
  drift apart. Its cycles come from :func:`wse_sim.hardware.cost.vector_cycles` only.
* Per-PE fields: helpers that keep per-PE quantities as scalars when they are uniform and as
  cheap broadcast views of small patterns otherwise (no per-PE Python loops).
* Binary merge trees of partial softmax states: level masks, per-level IR ops, finish times
  (cycles) and merge counts, shared by the decode reduction and the prefill replica merge.
* Layout choice: the SRAM cap, the fastest-fitting candidate and the no-fit message's source.
* Numerics used by the functional programs: element rounding to the kernel dtype, the
  online-softmax update of one key tile and the merge of two partial softmax states.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from wse_sim.hardware import cost
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import (
    Compute,
    ComputeFn,
    Dest,
    IntField,
    Phase,
    Program,
    Recv,
    Region,
    Send,
)

L = TypeVar("L")

ACC_BYTES = 4
"""Bytes of one accumulator element (running max, running sum, output accumulator): fp32."""


@dataclass(frozen=True)
class Work:
    """A group of vector instructions of one kind on one PE.

    Attributes:
        kind: vector op kind of :mod:`wse_sim.hardware.cost` (``fmac``, ``mul``, ``exp`` ...).
        elements: element-ops in total (int or per-PE int array).
        instructions: vector instructions issued (each costs the instruction overhead).
        reads: SRAM bytes read.
        writes: SRAM bytes written.
    """

    kind: str
    elements: IntField
    instructions: IntField
    reads: IntField = 0
    writes: IntField = 0


def alu_work(kind: str, elements: IntField, instructions: IntField, nbytes: int) -> Work:
    """An element-wise op that reads and writes one ``nbytes`` operand per element."""
    e = np.asarray(elements)
    return Work(kind, as_field(e), instructions, as_field(e * nbytes), as_field(e * nbytes))


def map_work(w: Work, f: Callable[[IntField], IntField]) -> Work:
    """``w`` with ``f`` applied to each of its fields (elements, instructions, reads, writes)."""
    return Work(w.kind, f(w.elements), f(w.instructions), f(w.reads), f(w.writes))


def as_field(value: IntField | np.ndarray) -> IntField:
    """A Python int when ``value`` is uniform, else an int64 array (views are kept)."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return int(arr)
    flat_min, flat_max = arr.min(), arr.max()
    if flat_min == flat_max:
        return int(flat_min)
    return arr.astype(np.int64, copy=False)


def work_cycles(spec: WaferSpec, dtype: str, work: Work) -> IntField:
    """Cycles of ``work`` (per PE when any of its fields is an array).

    Evaluates :func:`wse_sim.hardware.cost.vector_cycles` once per distinct combination of
    (elements, instructions, reads, writes), so that full-wafer fields stay cheap.
    """
    fields = [work.elements, work.instructions, work.reads, work.writes]
    if not any(isinstance(f, np.ndarray) for f in fields):
        return cost.vector_cycles(
            spec, work.kind, dtype, int(work.elements), int(work.instructions),
            int(work.reads), int(work.writes),
        )  # fmt: skip
    shape = np.broadcast_shapes(*(np.shape(f) for f in fields))
    columns = [np.broadcast_to(np.asarray(f, dtype=np.int64), shape).ravel() for f in fields]
    # One int64 key per PE from the per-field codes (mixed radix), then unique on that key.
    key = np.zeros(columns[0].shape, dtype=np.int64)
    for col in columns:
        values, codes = np.unique(col, return_inverse=True)
        key = key * len(values) + codes.reshape(-1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    cycles = np.array(
        [
            cost.vector_cycles(spec, work.kind, dtype, *(int(col[i]) for col in columns))
            for i in first
        ],
        dtype=np.int64,
    )
    return as_field(cycles[inverse.reshape(-1)].reshape(shape))


def works_cycles(spec: WaferSpec, dtype: str, works: list[Work]) -> IntField:
    """Total cycles of several work groups executed one after the other."""
    total: IntField = 0
    for w in works:
        total = as_field(np.asarray(total) + np.asarray(work_cycles(spec, dtype, w)))
    return total


def work_flops(work: Work) -> IntField:
    """FLOPs of ``work`` as :mod:`wse_sim.hardware.cost` counts them."""
    per = cost.vector_op(work.kind).flops_per_element
    return as_field(np.asarray(work.elements) * per)


def works_flops(works: list[Work]) -> IntField:
    total: IntField = 0
    for w in works:
        total = as_field(np.asarray(total) + np.asarray(work_flops(w)))
    return total


def state_merge_works(rows: int, d: int) -> list[Work]:
    """Merging a received partial softmax state (o, m, l) of ``rows`` query rows into the own
    one, fp32 operands: new max, the two rescale factors, rescaled sums and accumulators."""
    a = ACC_BYTES
    return [
        alu_work("max", rows, 1, a),
        alu_work("add", 3 * rows, 3, a),
        alu_work("exp", 2 * rows, 2, a),
        alu_work("mul", 2 * rows + rows * d, 2 + rows, a),
        Work("fmac", rows * d, rows, 2 * rows * d * a, rows * d * a),
    ]


def finalize_works(rows: int, d: int, nbytes: int) -> list[Work]:
    """Dividing the accumulator of ``rows`` query rows by the running sum: ``1 / l`` as
    ``rsqrt(l)^2``, then the accumulator times ``1 / l`` (``nbytes`` per operand element)."""
    return [
        alu_work("rsqrt", rows, 1, nbytes),
        alu_work("mul", rows + rows * d, rows + 1, nbytes),
    ]


def state_message_wavelets(spec: WaferSpec, rows: int, d: int) -> int:
    """Wavelets of a partial state (o, m, l) of ``rows`` query rows of ``d`` elements, fp32."""
    return cost.wavelets(spec, rows * (d + 2) * ACC_BYTES)


def tree_levels(span: int) -> int:
    """Levels of a binary reduction tree over ``span`` PEs."""
    return max(0, math.ceil(math.log2(span))) if span > 1 else 0


def tree_hops(span: int) -> int:
    """Link traversals of one binary reduction tree over ``span`` PEs in a line (level ``L``
    pairs PE ``p`` with ``p + 2^L``)."""
    total = 0
    for lv in range(tree_levels(span)):
        s = 1 << lv
        total += s * len(range(0, span - s, 2 * s))
    return total


def tree_level_masks(pos: np.ndarray, s: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """(senders, receivers) among positions ``pos`` (< ``span``) at the tree level whose partners
    are ``s`` apart: ``pos`` sends to ``pos - s`` when ``pos mod 2s == s``."""
    return pos % (2 * s) == s, (pos % (2 * s) == 0) & (pos + s < span)


def tree_merge_counts(span: int) -> np.ndarray:
    """How many partial states each of ``span`` positions merges in a binary tree (float)."""
    counts = np.zeros(span)
    j = np.arange(span)
    for lv in range(tree_levels(span)):
        counts[tree_level_masks(j, 1 << lv, span)[1]] += 1
    return counts


def tree_finish(t: np.ndarray, n: int, t_merge: Any, R: int, H: int) -> np.ndarray:
    """Binary-tree merge along the last axis of ``t`` (cycle each position's state is ready;
    the partner ``s`` positions away at level ``s``), in place in ``t`` (its dtype is kept):
    the cycle position 0 of every row is done merging. A state of ``n`` wavelets leaves its
    sender ``2R + sH + n - 1`` cycles before the receiver has it all."""
    span = t.shape[-1]
    for lv in range(tree_levels(span)):
        s = 1 << lv
        recv = np.arange(0, span - s, 2 * s)
        arrival = t[..., recv + s] + 2 * R + s * H + n - 1
        t[..., recv] = np.maximum(arrival, t[..., recv] + n - 1) + t_merge
    return t[..., 0]


def merge_level_ops(
    color: int,
    n: int,
    offset: tuple[int, int],
    senders: np.ndarray,
    receivers: np.ndarray,
    merge: list[Work],
    dtype: str,
    fn: ComputeFn | None,
) -> list[Any]:
    """IR ops of one merge-tree level: ``senders`` send their state (``n`` wavelets) by
    ``offset`` PEs, ``receivers`` take it from the opposite side and merge it (``fn``)."""
    src = (-offset[0], -offset[1])
    return [
        Send(color, n, Dest.to(*offset), mask=senders, buffer="state"),
        Recv(color, n, src=src, mask=receivers, buffer="incoming"),
        *compute_ops(merge, dtype, receivers, fn),
    ]


def next_color(color: int, first: int, colors: int) -> int:
    """The color after ``color`` among ``first`` .. ``colors - 1`` (wrapping to ``first``)."""
    return color + 1 if color + 1 < colors else first


def compute_op(w: Work, dtype: str, mask: np.ndarray | None = None) -> Compute:
    """The IR ``Compute`` op of ``w`` on the PEs of ``mask`` (all when ``None``)."""
    return Compute(
        kind=w.kind,
        elements=w.elements,
        dtype=dtype,
        instructions=w.instructions,
        sram_read_bytes=w.reads,
        sram_write_bytes=w.writes,
        mask=mask,
    )


def compute_ops(
    works: list[Work],
    dtype: str,
    mask: np.ndarray | None,
    fn: ComputeFn | None = None,
) -> list[Compute]:
    """IR ``Compute`` ops for ``works``; ``fn`` (the functional update) rides on the last one."""
    ops = [compute_op(w, dtype, mask) for w in works]
    if ops:
        ops[-1].fn = fn
    return ops


def used_region(region: Region, width: int, height: int) -> Region:
    """The ``width`` x ``height`` PEs at the north-west corner of ``region`` a layout uses."""
    return Region(region.x, region.y, width, height)


def pad_to(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``values`` (the used sub-region, north-west aligned) in an array of ``shape``, 0 elsewhere."""
    out = np.zeros(shape, dtype=float)
    out[: values.shape[0], : values.shape[1]] = values
    return out


def attention_program(
    region: Region, phases: list[Phase], sram: IntField, flops: float, fx: Any
) -> Program:
    """The ``attention`` IR program; ``fx`` (functional mode, or ``None``) gives init/collect."""
    return Program(
        name="attention",
        region=region,
        phases=phases,
        sram_bytes=sram,
        flops=flops,
        init=fx.init if fx else None,
        collect=fx.collect if fx else None,
    )


# -- choosing a layout --------------------------------------------------------------------------


def sram_cap(spec: WaferSpec, budget: int | None) -> int:
    """Data bytes a PE may use: ``pe.data_sram_bytes``, or ``budget`` when smaller."""
    return spec.pe.data_sram_bytes if budget is None else min(budget, spec.pe.data_sram_bytes)


def cap_source(spec: WaferSpec, cap: int) -> str:
    """Which setting ``cap`` bytes come from, for error messages."""
    return "pe.data_sram_bytes" if cap >= spec.pe.data_sram_bytes else "sram_budget"


def fastest_fit(
    layouts: Iterable[L | None],
    spec: WaferSpec,
    dtype: str,
    cap: int,
    sram_bytes: Callable[[L, int], int],
    quick_cycles: Callable[[WaferSpec, str, L], float],
) -> tuple[L | None, int | None]:
    """(the layout with the fewest ``quick_cycles``, ties: fewest PEs ``width * height``, among
    those whose ``sram_bytes`` (bytes per PE) is at most ``cap``, or ``None``; the least
    ``sram_bytes`` seen). ``None`` entries are skipped; the first of equal candidates wins."""
    b = cost.dtype_bytes(dtype)
    best: tuple[float, int, Any] | None = None
    least: int | None = None
    for lay in layouts:
        if lay is None:
            continue
        need = sram_bytes(lay, b)
        least = need if least is None else min(least, need)
        if need > cap:
            continue
        key = (quick_cycles(spec, dtype, lay), lay.width * lay.height)
        if best is None or key < best[:2]:
            best = (*key, lay)
    return (None if best is None else best[2]), least


# -- numerics of the functional programs -------------------------------------------------------


def numpy_dtype(dtype: str) -> type:
    """The numpy type inputs of ``dtype`` are stored in (bf16 is held in float32)."""
    return {"fp16": np.float16, "fp32": np.float32, "bf16": np.float32}[dtype]


def round_to(dtype: str, x: np.ndarray) -> np.ndarray:
    """``x`` rounded to ``dtype`` precision, returned as float32."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "fp16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        bits = x.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return rounded.astype(np.uint32).view(np.float32)
    return x


def online_update(
    state: dict[str, np.ndarray],
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    allowed: np.ndarray,
    scale: float,
) -> None:
    """Fold one key/value tile into a running softmax state (flash-style), in fp32.

    ``q``: (..., rows, d); ``k``, ``v``: (..., keys, d) broadcastable against ``q``'s leading
    axes; ``allowed``: (rows, keys) bool. ``state`` holds ``m`` (..., rows), ``l`` (..., rows)
    and ``o`` (..., rows, d) and is updated in place.
    """
    s = np.einsum("...qd,...kd->...qk", q, k) * np.float32(scale)
    s = np.where(allowed, s, -np.inf)
    m_old = state["m"]
    m_new = np.maximum(m_old, s.max(axis=-1))
    finite = np.isfinite(m_new)
    m_safe = np.where(finite, m_new, 0.0)
    alpha = np.where(finite, np.exp(m_old - m_safe), 1.0)
    p = np.exp(s - m_safe[..., None])
    state["m"] = m_new.astype(np.float32)
    state["l"] = (state["l"] * alpha + p.sum(axis=-1)).astype(np.float32)
    state["o"] = (state["o"] * alpha[..., None] + np.einsum("...qk,...kd->...qd", p, v)).astype(
        np.float32
    )


def empty_state(shape: tuple[int, ...], d: int) -> dict[str, np.ndarray]:
    """A softmax state with no keys seen: m = -inf, l = 0, o = 0."""
    return {
        "m": np.full(shape, -np.inf, dtype=np.float32),
        "l": np.zeros(shape, dtype=np.float32),
        "o": np.zeros((*shape, d), dtype=np.float32),
    }


def pack_state(state: dict[str, np.ndarray]) -> np.ndarray:
    """(…, d + 2) array: ``o`` then ``m`` then ``l`` (the payload of a reduction message)."""
    return np.concatenate([state["o"], state["m"][..., None], state["l"][..., None]], axis=-1)


def unpack_state(packed: np.ndarray) -> dict[str, np.ndarray]:
    return {"o": packed[..., :-2], "m": packed[..., -2], "l": packed[..., -1]}


def merge_states(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Merge two packed partial softmax states over disjoint key sets."""
    sa, sb = unpack_state(a), unpack_state(b)
    m = np.maximum(sa["m"], sb["m"])
    finite = np.isfinite(m)
    m_safe = np.where(finite, m, 0.0)
    wa = np.where(finite, np.exp(sa["m"] - m_safe), 0.0)
    wb = np.where(finite, np.exp(sb["m"] - m_safe), 0.0)
    merged = {
        "m": m,
        "l": sa["l"] * wa + sb["l"] * wb,
        "o": sa["o"] * wa[..., None] + sb["o"] * wb[..., None],
    }
    return pack_state(merged).astype(np.float32)


class FunctionalBase:
    """Common part of the per-PE numpy work of a functional program: the dtype-rounded inputs
    ``q``, ``k``, ``v``, the softmax scale ``1 / sqrt(head_dim)`` and the layout position of a
    PE (``lay.pe_of`` of its offset in ``region``)."""

    def __init__(self, lay: Any, region: Region, dtype: str, inputs: dict[str, np.ndarray]) -> None:
        self.lay, self.region, self.dtype = lay, region, dtype
        self.q = round_to(dtype, inputs["q"])
        self.k = round_to(dtype, inputs["k"])
        self.v = round_to(dtype, inputs["v"])
        self.scale = 1.0 / math.sqrt(lay.head_dim)

    def _where(self, x: int, y: int) -> tuple[int, int, int]:
        return self.lay.pe_of(x - self.region.x, y - self.region.y)


def finish_state(state: dict[str, np.ndarray], dtype: str) -> np.ndarray:
    """``o / l`` rounded to ``dtype`` (rows that saw no key give 0)."""
    l = state["l"]
    inv = np.where(l > 0, 1.0 / np.where(l > 0, l, 1.0), 0.0)
    return round_to(dtype, state["o"] * inv[..., None])
