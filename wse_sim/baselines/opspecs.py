"""Build single OpSpecs from kernel sizes, with the graph's FLOP and byte conventions.

The calibration points, the reference transformer graphs and the tests use these to make ops
without the compiler's graph builder. Conventions (those of ``wse_sim.graph.build``): a GEMM is
``2 m n k`` FLOPs; attention per (batch, head) ``4 seq ctx head_dim + 5 seq ctx``, halved for
causal prefill; per element: the kernel library's counts (``wse_sim.kernels._flops``). Bytes are
each operand read or written once.
"""

from __future__ import annotations

from wse_sim.baselines.gpus import dtype_bytes
from wse_sim.errors import ConfigError
from wse_sim.graph._flops import attention_flops
from wse_sim.graph.ops import OpSpec
from wse_sim.kernels._flops import ELEMENTWISE_STEPS, ROWWISE_STEPS, flops_per_element

FLOPS_PER_ELEMENT: dict[str, int] = {
    **{op: flops_per_element("elementwise", op) for op in ELEMENTWISE_STEPS},
    **{kernel: flops_per_element(kernel) for kernel in ROWWISE_STEPS},
}
"""FLOPs per element of each elementwise, norm and softmax kernel [FLOP]."""

ADAMW_STATE_BYTES_PER_PARAM = 14
"""Optimizer state per parameter: fp32 master weight and two fp32 moments (12 B) plus the fp16
gradient (2 B) [bytes]."""


def gemm_op(
    m: int,
    n: int,
    k: int,
    dtype: str = "fp16",
    name: str = "gemm",
    layer: int | None = None,
    stage: str = "fwd",
    weight: str = "b",
) -> OpSpec:
    """A GEMM ``[m, k] x [k, n]``; ``weight`` says which operand is a parameter: ``"b"`` (the
    ``k x n`` matrix, forward and activation gradient), ``"none"`` (weight gradient)."""
    bpe = dtype_bytes(dtype)
    w = float(k * n * bpe) if weight == "b" else 0.0
    inputs = float(m * k * bpe) + (0.0 if weight == "b" else float(k * n * bpe))
    return OpSpec(
        name=name,
        kind="matmul",
        layer=layer,
        stage=stage,
        kernel="gemm",
        sizes={"m": m, "n": n, "k": k},
        flops=2.0 * m * n * k,
        weight_bytes=w,
        input_bytes=inputs,
        output_bytes=float(m * n * bpe),
        dtype=dtype,
    )


def attention_op(
    batch: int,
    heads: int,
    seq: int,
    head_dim: int,
    context: int | None = None,
    kv_heads: int | None = None,
    causal: bool = True,
    phase: str = "prefill",
    dtype: str = "fp16",
    name: str = "attention",
    layer: int | None = None,
    stage: str = "fwd",
    flops_scale: float = 1.0,
) -> OpSpec:
    """A fused attention op. Prefill: ``context = seq``; decode: ``seq = 1`` query per sequence
    over ``context`` cached keys, whose K and V are ``state_bytes``. ``flops_scale`` scales the
    FLOPs (2.5 for FlashAttention's backward pass: five matmuls against the forward's two)."""
    if phase not in ("prefill", "decode"):
        raise ConfigError("phase", phase, "use prefill or decode")
    kv_heads = heads if kv_heads is None else kv_heads
    if context is None:
        context = seq
    bpe = dtype_bytes(dtype)
    causal_prefill = causal and phase == "prefill"
    flops = attention_flops(batch, heads, seq, context, head_dim, causal_prefill) * flops_scale
    kv = float(2 * batch * kv_heads * context * head_dim * bpe)
    q = float(batch * heads * seq * head_dim * bpe)
    return OpSpec(
        name=name,
        kind="attention",
        layer=layer,
        stage=stage,
        kernel="attention",
        sizes={
            "batch": batch,
            "heads": heads,
            "kv_heads": kv_heads,
            "seq": seq,
            "head_dim": head_dim,
            "context": context,
        },
        flops=flops,
        input_bytes=q + (0.0 if phase == "decode" else kv),
        output_bytes=q,
        state_bytes=kv if phase == "decode" else 0.0,
        dtype=dtype,
        options={"phase": phase, "causal": causal},
    )


def norm_op(
    rows: int,
    cols: int,
    kernel: str = "layernorm",
    dtype: str = "fp16",
    name: str = "norm",
    layer: int | None = None,
    stage: str = "fwd",
) -> OpSpec:
    """A layernorm/rmsnorm over ``rows`` vectors of ``cols``: reads x and the scale, writes y."""
    if kernel not in ("layernorm", "rmsnorm"):
        raise ConfigError("kernel", kernel, "use layernorm or rmsnorm")
    bpe = dtype_bytes(dtype)
    return OpSpec(
        name=name,
        kind="norm",
        layer=layer,
        stage=stage,
        kernel=kernel,
        sizes={"rows": rows, "cols": cols},
        flops=float(FLOPS_PER_ELEMENT[kernel] * rows * cols),
        weight_bytes=float(cols * bpe),
        input_bytes=float(rows * cols * bpe),
        output_bytes=float(rows * cols * bpe),
        dtype=dtype,
    )


def softmax_op(
    rows: int,
    cols: int,
    dtype: str = "fp16",
    name: str = "softmax",
    layer: int | None = None,
    stage: str = "fwd",
    kind: str = "softmax",
) -> OpSpec:
    """A row softmax of a ``rows x cols`` matrix: reads it, writes it."""
    bpe = dtype_bytes(dtype)
    return OpSpec(
        name=name,
        kind=kind,
        layer=layer,
        stage=stage,
        kernel="softmax",
        sizes={"rows": rows, "cols": cols},
        flops=float(FLOPS_PER_ELEMENT["softmax"] * rows * cols),
        input_bytes=float(rows * cols * bpe),
        output_bytes=float(rows * cols * bpe),
        dtype=dtype,
    )


def elementwise_op(
    length: int,
    op: str = "add",
    dtype: str = "fp16",
    name: str | None = None,
    layer: int | None = None,
    stage: str = "fwd",
) -> OpSpec:
    """An elementwise op on ``length`` elements: add/mul read two operands, the rest one; all
    write one. ``adamw`` updates ``length`` parameters (its traffic is the optimizer state)."""
    if op not in FLOPS_PER_ELEMENT or op in ("layernorm", "rmsnorm", "softmax"):
        raise ConfigError("op", op, "use add, mul, gelu, silu, copy or adamw")
    bpe = dtype_bytes(dtype)
    flops = float(FLOPS_PER_ELEMENT[op] * length)
    if op == "adamw":
        # the model reads and writes the state once each (2 x 14 B = ADAMW_BYTES_PER_PARAM)
        state = float(ADAMW_STATE_BYTES_PER_PARAM * length)
        return OpSpec(
            name=name or "adamw",
            kind="optimizer",
            layer=layer,
            stage="opt",
            kernel="elementwise",
            sizes={"length": length},
            flops=flops,
            state_bytes=state,
            dtype=dtype,
            options={"op": "adamw"},
        )
    reads = 2 if op in ("add", "mul") else 1
    kind = "embedding" if op == "copy" else "elementwise"
    return OpSpec(
        name=name or op,
        kind=kind,
        layer=layer,
        stage=stage,
        kernel="elementwise",
        sizes={"length": length},
        flops=flops,
        input_bytes=float(reads * length * bpe),
        output_bytes=float(length * bpe),
        dtype=dtype,
        options={"op": op},
    )
