"""A small transformer layer-graph builder for calibration and tests of the GPU model.

It follows the op conventions of ``wse_sim.graph.build`` (kernel names, sizes, FLOP counts;
node order = execution order; graph attributes mode, batch, seq, context, tokens, dtype, flops),
so the training-MFU calibration points run through the same :func:`cost_graph` as any compiler
graph, without depending on the model presets. Pre-norm decoder: per layer norm, QKV, attention,
output projection, residual add, norm, MLP (GELU: fc1, gelu, fc2; SwiGLU: gate-up, silu, mul,
down), residual add; then final norm, LM head and (training) the loss softmax. Training adds, in
reverse order, two GEMMs per forward GEMM (activation and weight gradients, same size), attention
backward at 2.5x the forward FLOPs (FlashAttention's five matmuls against two), a backward op per
norm and elementwise op (twice the forward traffic), and one AdamW op per layer.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx

from wse_sim.baselines.opspecs import (
    attention_op,
    elementwise_op,
    gemm_op,
    norm_op,
    softmax_op,
)
from wse_sim.errors import ConfigError
from wse_sim.graph.ops import OpSpec

MODES = ("prefill", "decode", "train")
ATTN_BWD_FLOPS = 2.5
"""Attention backward FLOPs / forward FLOPs (FlashAttention-2 paper: 5 matmuls vs 2)."""


def transformer_graph(
    layers: int,
    d_model: int,
    heads: int,
    d_ff: int,
    vocab: int,
    seq: int,
    batch: int = 1,
    mode: str = "train",
    context: int | None = None,
    kv_heads: int | None = None,
    mlp: str = "gelu",
    norm: str = "layernorm",
    dtype: str = "bf16",
) -> nx.DiGraph:
    """The layer graph of one step: ``prefill`` (``batch x seq`` tokens), ``decode`` (``batch``
    new tokens over ``context`` cached ones) or ``train`` (forward, backward, optimizer)."""
    if mode not in MODES:
        raise ConfigError("mode", mode, f"use one of {', '.join(MODES)}")
    if mlp not in ("gelu", "swiglu"):
        raise ConfigError("mlp", mlp, "use gelu or swiglu")
    if d_model % heads:
        raise ConfigError("d_model", d_model, f"must be a multiple of heads={heads}")
    kv_heads = heads if kv_heads is None else kv_heads
    hd = d_model // heads
    decode = mode == "decode"
    q_len = 1 if decode else seq
    ctx = (context if context is not None else seq) if decode else seq
    t = batch * q_len
    phase = "decode" if decode else "prefill"
    fwd: list[OpSpec] = [elementwise_op(t * d_model, "copy", dtype, "embed")]
    params: list[int] = []
    for i in range(layers):
        p = f"L{i}."
        qkv_n = (heads + 2 * kv_heads) * hd
        ops = [
            norm_op(t, d_model, norm, dtype, p + "ln1", i),
            gemm_op(t, qkv_n, d_model, dtype, p + "attn.qkv", i),
            attention_op(batch, heads, q_len, hd, ctx, kv_heads, True, phase, dtype, p + "attn", i),
            gemm_op(t, d_model, d_model, dtype, p + "attn.o", i),
            elementwise_op(t * d_model, "add", dtype, p + "attn.add", i),
            norm_op(t, d_model, norm, dtype, p + "ln2", i),
        ]
        if mlp == "gelu":
            ops += [
                gemm_op(t, d_ff, d_model, dtype, p + "mlp.fc1", i),
                elementwise_op(t * d_ff, "gelu", dtype, p + "mlp.gelu", i),
                gemm_op(t, d_model, d_ff, dtype, p + "mlp.fc2", i),
            ]
        else:
            ops += [
                gemm_op(t, 2 * d_ff, d_model, dtype, p + "mlp.gate_up", i),
                elementwise_op(t * d_ff, "silu", dtype, p + "mlp.silu", i),
                elementwise_op(t * d_ff, "mul", dtype, p + "mlp.mul", i),
                gemm_op(t, d_model, d_ff, dtype, p + "mlp.down", i),
            ]
        ops.append(elementwise_op(t * d_model, "add", dtype, p + "mlp.add", i))
        fwd += ops
        params.append(
            sum(int(o.sizes["n"] * o.sizes["k"]) for o in ops if o.kernel == "gemm")
            + 2 * d_model * (2 if norm == "layernorm" else 1)
        )
    fwd.append(norm_op(t, d_model, norm, dtype, "final_norm"))
    fwd.append(gemm_op(t, vocab, d_model, dtype, "lm_head"))
    all_ops = list(fwd)
    if mode == "train":
        all_ops.append(softmax_op(t, vocab, dtype, "loss", kind="loss"))
        all_ops += _backward(fwd)
        all_ops += [
            elementwise_op(n_params, "adamw", dtype, f"L{i}.adamw", i)
            for i, n_params in enumerate(params)
        ]
    g = nx.DiGraph(
        mode=mode,
        batch=batch,
        seq=seq,
        context=ctx if decode else seq,
        tokens=t,
        dtype=dtype,
        layers=layers,
        params=sum(params) + vocab * d_model,
        flops=sum(o.flops for o in all_ops),
    )
    prev = None
    for op in all_ops:
        g.add_node(op.name, op=op)
        if prev is not None:
            g.add_edge(prev, op.name, bytes=op.input_bytes)
        prev = op.name
    return g


def _backward(fwd: list[OpSpec]) -> list[OpSpec]:
    out: list[OpSpec] = []
    for op in reversed(fwd):
        if op.kind == "embedding":
            continue
        name = op.name + ".bwd"
        if op.kernel == "gemm":
            m, n, k = (int(op.sizes[d]) for d in ("m", "n", "k"))
            out.append(gemm_op(m, k, n, op.dtype, name + "_data", op.layer, "bwd"))
            out.append(gemm_op(k, n, m, op.dtype, name + "_weight", op.layer, "bwd", "none"))
        elif op.kernel == "attention":
            s = op.sizes
            out.append(
                attention_op(
                    int(s["batch"]),
                    int(s["heads"]),
                    int(s["seq"]),
                    int(s["head_dim"]),
                    int(s["context"]),
                    int(s["kv_heads"]),
                    bool(op.options.get("causal")),
                    "prefill",
                    op.dtype,
                    name,
                    op.layer,
                    "bwd",
                    ATTN_BWD_FLOPS,
                )
            )
        else:
            out.append(
                replace(
                    op,
                    name=name,
                    stage="bwd",
                    input_bytes=2 * op.input_bytes,
                    output_bytes=op.output_bytes + op.weight_bytes,
                )
            )
    return out
