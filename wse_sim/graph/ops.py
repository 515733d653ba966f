"""The op record carried by every node of the layer graph (attribute ``"op"``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OP_KINDS = (
    "embedding",  # token + position lookup
    "matmul",  # activations x weights (projections, MLP, LM head) or their gradients
    "attention",  # scores, softmax and context for all heads
    "norm",  # layernorm / rmsnorm
    "elementwise",  # residual add, GELU, SiLU-gate, RoPE
    "softmax",  # stand-alone softmax (e.g. the loss)
    "loss",  # cross-entropy
    "optimizer",  # AdamW update of one layer's parameters
    "allreduce",  # gradient reduction across data-parallel replicas
)


@dataclass(frozen=True)
class OpSpec:
    """One operation of the layer graph, with everything later stages need to cost it.

    Attributes:
        name: unique node id, e.g. ``"L3.attn.qkv"`` or ``"L3.attn.qkv.bwd_data"``.
        kind: one of :data:`OP_KINDS`.
        layer: transformer layer index, ``None`` for embedding, final norm, head and loss.
        stage: ``"fwd"``, ``"bwd"`` or ``"opt"``.
        kernel: name of the kernel in ``wse_sim.kernels.KERNELS`` that executes it.
        sizes: that kernel's sizes (gemm ``m``, ``n``, ``k``; norms ``rows``, ``cols``; ...).
        options: that kernel's options (``op="gelu"``, ``phase="decode"``, ``causal=True``...).
        flops: FLOPs (an FMAC is 2).
        weight_bytes: parameter bytes the op reads.
        input_bytes: activation bytes read (from predecessors).
        output_bytes: activation bytes written (to successors).
        state_bytes: resident state besides weights: KV cache, optimizer moments, gradients.
        dtype: element type.
    """

    name: str
    kind: str
    layer: int | None
    stage: str
    kernel: str
    sizes: dict[str, int]
    flops: float
    weight_bytes: float = 0.0
    input_bytes: float = 0.0
    output_bytes: float = 0.0
    state_bytes: float = 0.0
    dtype: str = "fp16"
    options: dict[str, Any] = field(default_factory=dict)
