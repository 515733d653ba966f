"""FLOPs per element of the elementwise and row-wise kernels: the one place the graph builder and
the kernels take them from (an FMAC is 2 FLOPs; counts come from ``hardware.cost.VECTOR_OPS``).

Each kernel's per-element work is written here as the vector instructions it runs, and the
kernels build their programs from these same tuples, so the counts cannot drift:

* softmax: ``max`` (row max), ``add`` (subtract it), ``exp``, ``add`` (row sum), ``mul`` (by the
  reciprocal of the sum): 5 FLOPs per element.
* layernorm: ``add`` (row sum) and ``fmac`` (row sum of squares) in one pass, then ``fmac``
  (``x * rstd - mean * rstd``) and ``fmac`` (``* gamma + beta``): 7 FLOPs per element.
* rmsnorm: ``fmac`` (row sum of squares), ``mul`` (by rstd), ``mul`` (by gamma): 4 FLOPs.
* elementwise ``add``/``mul`` 1, ``gelu`` 8, ``silu`` 4, ``copy`` 0; ``adamw`` 13 (six FMACs and
  one ``rsqrt`` per parameter).

Per-row work (a reciprocal or rsqrt per row, the adds of the cross-PE reductions) is not part of
these per-element figures; the kernels' programs count it and docs/kernels-collectives.md gives
its size.
"""

from __future__ import annotations

from wse_sim.errors import ConfigError
from wse_sim.hardware.cost import VECTOR_OPS

ROWWISE_STEPS: dict[str, tuple[str, ...]] = {
    "softmax": ("max", "add", "exp", "add", "mul"),
    "layernorm": ("add", "fmac", "fmac", "fmac"),
    "rmsnorm": ("fmac", "mul", "mul"),
}
"""Vector instructions each row-wise kernel runs once per element, in order."""

ELEMENTWISE_STEPS: dict[str, tuple[tuple[str, int], ...]] = {
    "add": (("add", 1),),
    "mul": (("mul", 1),),
    "gelu": (("gelu", 1),),
    "silu": (("silu", 1),),
    "copy": (("copy", 1),),
    "adamw": (("fmac", 6), ("rsqrt", 1)),
}
"""``(vector-op kind, operations per element)`` of each elementwise op."""


def _count(kinds: tuple[str, ...]) -> int:
    return sum(VECTOR_OPS[k].flops_per_element for k in kinds)


SOFTMAX_FLOPS_PER_ELEMENT = _count(ROWWISE_STEPS["softmax"])
LAYERNORM_FLOPS_PER_ELEMENT = _count(ROWWISE_STEPS["layernorm"])
RMSNORM_FLOPS_PER_ELEMENT = _count(ROWWISE_STEPS["rmsnorm"])
ADAMW_FLOPS_PER_ELEMENT = sum(
    VECTOR_OPS[k].flops_per_element * c for k, c in ELEMENTWISE_STEPS["adamw"]
)
"""AdamW update: 6 FMACs and one rsqrt per parameter (13 FLOPs)."""


def flops_per_element(kernel: str, op: str | None = None) -> int:
    """FLOPs per element of ``kernel`` (``softmax``, ``layernorm``, ``rmsnorm``, or
    ``elementwise`` with ``op`` one of add, mul, gelu, silu, copy, adamw)."""
    if kernel in ROWWISE_STEPS:
        return _count(ROWWISE_STEPS[kernel])
    if kernel == "elementwise":
        if op not in ELEMENTWISE_STEPS:
            raise ConfigError("op", op, f"use one of {', '.join(ELEMENTWISE_STEPS)}")
        return sum(VECTOR_OPS[k].flops_per_element * c for k, c in ELEMENTWISE_STEPS[op])
    raise ConfigError(
        "kernel", kernel, f"use elementwise, {', '.join(ROWWISE_STEPS)} (FLOPs per element)"
    )
