"""FLOP counts of the graph's ops (an FMAC is 2 FLOPs).

Matmuls are ``2*m*n*k``. Attention, norms, softmax and elementwise ops take their counts from the
kernel library (``wse_sim.kernels.attention`` and ``wse_sim.kernels._flops``), which builds its
programs from the same per-element instruction lists, so the graph counts exactly the work the
kernels execute.
"""

from __future__ import annotations

from wse_sim.kernels._flops import flops_per_element
from wse_sim.kernels.attention import attention_flops as _attention_flops


def gemm_flops(m: int, n: int, k: int) -> float:
    """FLOPs of an ``[m, k] x [k, n]`` product: ``2*m*n*k``."""
    return 2.0 * m * n * k


def attention_flops(
    batch: int, heads: int, seq: int, context: int, head_dim: int, causal: bool
) -> float:
    """FLOPs of attention for ``seq`` queries against ``context`` keys: ``(4*head_dim + 5)`` per
    (query, key) pair visited (QK^T, PV and the softmax); causal prefill visits the lower triangle
    with its diagonal."""
    return float(_attention_flops(batch, heads, seq, context, head_dim, causal))


def norm_flops(kind: str, rows: int, cols: int) -> float:
    """FLOPs of a ``layernorm`` (7 per element) or ``rmsnorm`` (4) over ``rows x cols``."""
    return float(flops_per_element(kind) * rows * cols)


def softmax_flops(rows: int, cols: int) -> float:
    """FLOPs of a row softmax over ``rows x cols`` elements (5 per element)."""
    return float(flops_per_element("softmax") * rows * cols)


def elementwise_flops(op: str, length: int) -> float:
    """FLOPs of an elementwise op (``add``, ``mul``, ``gelu``, ``silu``, ``copy``, ``adamw``)."""
    return float(flops_per_element("elementwise", op) * length)
