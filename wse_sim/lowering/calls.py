"""From a graph op to kernel calls: which kernel runs it, with which sizes and options, how many
times, and how its sizes split into chunks when one call does not fit a PE's SRAM.

* Forward ops run their own kernel (``OpSpec.kernel``, ``sizes``, ``options``).
* Backward ops (``stage == "bwd"``): matmuls and elementwise ops already carry their own sizes;
  attention and norm backward ops carry the forward sizes and a multiple of its FLOPs, so they
  run the forward kernel ``repeat = bwd FLOPs / fwd FLOPs`` times (2 for the graph's rules).
* A matmul with one row (decode at batch 1) may also run as ``gemv`` (``y = W^T x``);
  with a few rows, as that many gemv calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from wse_sim.graph.ops import OpSpec

GEMV_MAX_ROWS = 8
"""A matmul with at most this many rows is also tried as that many ``gemv`` calls."""

SPLITS: dict[str, tuple[str, ...]] = {
    "gemm": ("n", "m"),
    "gemv": ("m",),
    "elementwise": ("length",),
    "layernorm": ("rows",),
    "rmsnorm": ("rows",),
    "softmax": ("rows",),
    "attention": ("heads", "batch"),
}
"""Sizes a kernel call may be cut along (in order of preference) into chunks run one after the
other; attention cuts heads (whole key/value groups) or sequences."""


@dataclass(frozen=True)
class KernelCall:
    """One way to run an op: ``repeat`` calls of ``kernel`` with ``sizes`` and ``options``."""

    kernel: str
    sizes: dict[str, int]
    options: dict[str, Any] = field(default_factory=dict)
    repeat: float = 1.0


def forward_of(graph: nx.DiGraph, op: OpSpec) -> OpSpec | None:
    """The forward op of a ``.bwd`` op (same sizes, fewer FLOPs), if the graph has it."""
    if op.stage == "bwd" and op.name.endswith(".bwd"):
        fwd = op.name[: -len(".bwd")]
        if fwd in graph:
            return graph.nodes[fwd]["op"]
    return None


def kernel_calls(graph: nx.DiGraph, op: OpSpec) -> list[KernelCall]:
    """The ways to run ``op`` (several for a small matmul: gemm, or gemv per row)."""
    repeat = 1.0
    if op.kernel in ("attention", "layernorm", "rmsnorm", "softmax"):
        fwd = forward_of(graph, op)
        if fwd is not None and fwd.flops > 0:
            repeat = op.flops / fwd.flops
    calls = [KernelCall(op.kernel, dict(op.sizes), dict(op.options), repeat)]
    if op.kernel == "gemm" and op.sizes.get("m", 0) <= GEMV_MAX_ROWS:
        m, n, k = op.sizes["m"], op.sizes["n"], op.sizes["k"]
        calls.append(KernelCall("gemv", {"m": n, "k": k}, {}, float(m)))
    return calls


def chunk_counts(total: int) -> list[int]:
    """Chunk counts to try for a size of ``total``: 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, ... up to
    ``total`` (each about 1.25x the last), always ending with ``total``."""
    out, c = [], 1
    while c < total:
        out.append(c)
        c = max(c + 1, int(c * 1.25))
    out.append(total)
    return out


def split(call: KernelCall, name: str, chunks: int) -> tuple[dict[str, int], int] | None:
    """Sizes of one chunk when ``call`` is cut into ``chunks`` along size ``name``, and the
    number of chunks actually needed; ``None`` when that cut is not allowed."""
    sizes = dict(call.sizes)
    total = sizes.get(name)
    if total is None or chunks < 1 or chunks > total:
        return None
    if call.kernel == "attention" and name == "heads":
        kv = sizes.get("kv_heads", total)
        if kv % chunks:
            return None  # keep whole key/value groups in a chunk
        sizes["heads"] = total // chunks
        sizes["kv_heads"] = kv // chunks
        return sizes, chunks
    if call.kernel == "attention" and total % chunks:
        return None
    piece = -(-total // chunks)
    sizes[name] = piece
    return sizes, -(-total // piece)
