"""Split one graph op over ``n`` GPUs: the work of the busiest GPU under TP or DP.

Tensor parallelism (Megatron-LM style, no sequence parallelism): GEMMs split their weight
dimension (column-parallel QKV/FC1/LM head split ``n``, row-parallel output/FC2 projections split
``k``: in both cases the larger of the two non-token dimensions); attention splits heads (KV heads
too, but never below one); activations of the split weight dimension (GELU/SiLU/mul, the loss
softmax over the vocabulary) split; residual adds, embedding copies and norms are replicated; the
optimizer updates each GPU's shard. Data parallelism splits every token dimension (GEMM token
dimension, attention batch, norm/softmax rows, element counts) and replicates the optimizer.

Splits round up (``ceil``): the busiest GPU sets the time.
"""

from __future__ import annotations

from dataclasses import replace

from wse_sim.graph.ops import OpSpec

PARALLEL_MODES = ("tp", "dp")
REPLICATED_ELEMENTWISE_TP = ("add", "copy")
"""Elementwise ops on the (unsplit) model width under TP: residual adds and embedding copies."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def gemm_token_dim(op: OpSpec, tokens: float | None) -> str:
    """Which of ``m``, ``n``, ``k`` is the token dimension of a GEMM op.

    The graph's forward and activation-gradient GEMMs have ``m = tokens``; weight-gradient GEMMs
    (named ``*.bwd_weight``) reduce over tokens (``k = tokens``). With ``tokens`` known, the
    first of m, k, n (k, m, n for a weight gradient) equal to it is the token dimension;
    otherwise ``m``.
    """
    weight_grad = "weight" in op.name.rsplit(".", 1)[-1]
    if tokens:
        for dim in ("k", "m", "n") if weight_grad else ("m", "k", "n"):
            if op.sizes.get(dim) == int(tokens):
                return dim
    return "m"


def _scale(op: OpSpec, sizes: dict[str, int], factor: float, state: bool = True) -> OpSpec:
    """A copy of ``op`` with new sizes and FLOPs/bytes scaled by ``factor``."""
    return replace(
        op,
        sizes=sizes,
        flops=op.flops * factor,
        weight_bytes=op.weight_bytes * factor,
        input_bytes=op.input_bytes * factor,
        output_bytes=op.output_bytes * factor,
        state_bytes=op.state_bytes * factor if state else op.state_bytes,
    )


def _split_size(op: OpSpec, dim: str, n: int, state: bool = True) -> OpSpec:
    old = int(op.sizes[dim])
    new = _ceil_div(old, n)
    return _scale(op, {**op.sizes, dim: new}, new / old, state)


def shard_op(op: OpSpec, n: int, parallel: str, tokens: float | None = None) -> OpSpec:
    """The part of ``op`` the busiest of ``n`` GPUs executes under ``parallel`` (tp or dp).

    ``tokens`` (the graph's token count) identifies GEMM token dimensions. Ops of unknown
    kernels, and allreduce ops, are returned unchanged.
    """
    if n == 1 or op.kind == "allreduce":
        return op
    kind = op.options.get("op")
    if parallel == "tp":
        return _shard_tp(op, n, kind, tokens)
    return _shard_dp(op, n, kind, tokens)


def _shard_tp(op: OpSpec, n: int, kind: str | None, tokens: float | None) -> OpSpec:
    if op.kernel == "gemm" and {"m", "n", "k"} <= op.sizes.keys():
        token_dim = gemm_token_dim(op, tokens)
        others = [d for d in ("n", "k", "m") if d != token_dim][:2]
        dim = max(others, key=lambda d: (op.sizes[d], d == "n"))
        return _split_size(op, dim, n)
    if op.kernel == "attention" and "heads" in op.sizes:
        heads = int(op.sizes["heads"])
        kv = int(op.sizes.get("kv_heads", heads))
        new_heads, new_kv = _ceil_div(heads, n), _ceil_div(kv, n)
        sized = _scale(op, {**op.sizes, "heads": new_heads, "kv_heads": new_kv}, new_heads / heads)
        return replace(sized, state_bytes=op.state_bytes * new_kv / kv)
    if (
        op.kernel == "elementwise"
        and "length" in op.sizes
        and kind not in REPLICATED_ELEMENTWISE_TP
    ):
        return _split_size(op, "length", n)
    if op.kernel == "softmax" and "cols" in op.sizes:
        return _split_size(op, "cols", n)
    return op


def _shard_dp(op: OpSpec, n: int, kind: str | None, tokens: float | None) -> OpSpec:
    if op.kernel == "gemm" and {"m", "n", "k"} <= op.sizes.keys():
        return _split_size(op, gemm_token_dim(op, tokens), n, state=False)
    if op.kernel == "attention" and "batch" in op.sizes:
        return _split_size(op, "batch", n)
    if op.kernel in ("layernorm", "rmsnorm", "softmax") and "rows" in op.sizes:
        return _split_size(op, "rows", n, state=False)
    if op.kernel == "elementwise" and "length" in op.sizes and kind != "adamw":
        return _split_size(op, "length", n, state=False)
    return op


def split_factor(op: OpSpec, n: int, parallel: str) -> float:
    """Fraction of ``op``'s weights and state one GPU holds under ``parallel`` [1].

    TP splits weights and state of every op except norms (replicated); DP replicates weights
    and optimizer state and splits the KV cache with the batch.
    """
    if n == 1:
        return 1.0
    if parallel == "tp":
        return 1.0 if op.kernel in ("layernorm", "rmsnorm") else 1.0 / n
    return 1.0 / n if op.kernel == "attention" else 1.0
