"""FLOP counts of the graph's ops, in one place (an FMAC is 2 FLOPs).

Matmuls are ``2*m*n*k``. Elementwise ops take their per-element FLOPs from
:mod:`wse_sim.hardware.cost` (add/mul 1, gelu 8, silu 4, copy 0). Attention, norms, softmax and
AdamW use the kernel library's counters when it provides them (``wse_sim.kernels.attention`` and
``wse_sim.kernels._flops``), so the graph and the kernels count the same work; otherwise the
fallbacks below apply the same conventions.
"""

from __future__ import annotations

from wse_sim.hardware import cost

NORM_FLOPS_PER_ELEMENT = {"layernorm": 8, "rmsnorm": 5}
SOFTMAX_FLOPS_PER_ELEMENT = 5
ADAMW_FLOPS_PER_PARAM = 12


def gemm_flops(m: int, n: int, k: int) -> float:
    """FLOPs of an ``[m, k] x [k, n]`` product: ``2*m*n*k``."""
    return 2.0 * m * n * k


def _attention_flops_fallback(
    batch: int, heads: int, seq: int, context: int, head_dim: int, causal: bool
) -> float:
    """Per (batch, head): ``2*seq*ctx*hd`` (QK^T) + ``2*seq*ctx*hd`` (PV) + ``5*seq*ctx`` (softmax).

    Halved for causal attention over a sequence (``seq > 1``); a decode step (``seq == 1``)
    attends to all ``context`` keys.
    """
    per_head = (4.0 * head_dim + 5.0) * seq * context
    if causal and seq > 1:
        per_head *= 0.5
    return batch * heads * per_head


def _norm_flops_fallback(kind: str, rows: int, cols: int) -> float:
    """LayerNorm 8 and RMSNorm 5 FLOPs per element."""
    return float(NORM_FLOPS_PER_ELEMENT[kind] * rows * cols)


def _softmax_flops_fallback(rows: int, cols: int) -> float:
    """5 FLOPs per element (max, subtract, exp, sum, divide)."""
    return float(SOFTMAX_FLOPS_PER_ELEMENT * rows * cols)


def _adamw_flops_fallback(params: int) -> float:
    """12 FLOPs per parameter."""
    return float(ADAMW_FLOPS_PER_PARAM * params)


try:  # the kernel library's counter, when present
    from wse_sim.kernels.attention import attention_flops as _attention_flops
except ImportError:  # pragma: no cover - depends on which kernels are installed
    _attention_flops = _attention_flops_fallback


def attention_flops(
    batch: int, heads: int, seq: int, context: int, head_dim: int, causal: bool
) -> float:
    """FLOPs of attention for ``seq`` queries against ``context`` keys (see the fallback doc)."""
    return float(_attention_flops(batch, heads, seq, context, head_dim, causal))


def norm_flops(kind: str, rows: int, cols: int) -> float:
    """FLOPs of a ``layernorm`` or ``rmsnorm`` over ``rows x cols`` elements."""
    return _norm_flops_fallback(kind, rows, cols)


def softmax_flops(rows: int, cols: int) -> float:
    """FLOPs of a row softmax over ``rows x cols`` elements."""
    return _softmax_flops_fallback(rows, cols)


def elementwise_flops(op: str, length: int) -> float:
    """FLOPs of an elementwise op (``add``, ``mul``, ``gelu``, ``silu``, ``copy``, ``adamw``)."""
    if op == "adamw":
        return _adamw_flops_fallback(length)
    return float(cost.flops(op, length))
