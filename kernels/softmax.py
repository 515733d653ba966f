"""``softmax``: row-wise softmax of a ``[rows, cols]`` matrix (sizes ``rows``, ``cols``).

Rows are spread over PE rows, a row's columns over PE columns (see :mod:`._rowwise`). Per PE:
row max of its tile, a max-reduce across the PE row and a multicast of the row max back; then
``y = exp(x - max)``, the row sums, a sum-reduce, one reciprocal per row at the row's first PE,
a multicast, and ``y *= 1 / sum``. Algorithms name the reduce: ``tree`` (default, binary tree)
or ``chain`` (pipelined chain, ``(W - 1) c + n``). 5 FLOPs per element (:mod:`._flops`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.program.ir import Memory

from ._flops import ROWWISE_STEPS
from ._rowwise import Local, RowReduce, RowwiseKernel, Stage
from .base import Plan, register


def _row_max(mem: Memory, o: dict[str, Any]) -> None:
    mem["s"] = mem["x"].astype(np.float32).max(axis=1)


def _subtract(mem: Memory, o: dict[str, Any]) -> None:
    mem["y"] = (mem["x"].astype(np.float32) - mem["s"][:, None]).astype(mem["dt"])


def _exp(mem: Memory, o: dict[str, Any]) -> None:
    mem["y"] = np.exp(mem["y"].astype(np.float32)).astype(mem["dt"])


def _row_sum(mem: Memory, o: dict[str, Any]) -> None:
    mem["s"] = mem["y"].astype(np.float32).sum(axis=1)


def _reciprocal(mem: Memory, o: dict[str, Any]) -> None:
    mem["s"] = (1.0 / mem["s"]).astype(np.float32)


def _scale(mem: Memory, o: dict[str, Any]) -> None:
    mem["y"] = (mem["y"].astype(np.float32) * mem["s"][:, None]).astype(mem["dt"])


@register
class Softmax(RowwiseKernel):
    name = "softmax"
    description = "row-wise softmax: max and sum reduced across each PE row (chain or tree)"

    def stages(self, plan: Plan) -> list[Stage]:
        mx, sub, ex, sm, mul = ROWWISE_STEPS["softmax"]
        return [
            Local(mx, reads=1, writes=0, fn=_row_max),
            RowReduce("max", width=1, fn=None),
            Local(sub, reads=1, writes=1, fn=_subtract),
            Local(ex, reads=1, writes=1, fn=_exp),
            Local(sm, reads=1, writes=0, fn=_row_sum),
            # One reciprocal per row (a transcendental, costed like rsqrt).
            RowReduce("add", width=1, root=(("rsqrt", 1),), fn=_reciprocal),
            Local(mul, reads=1, writes=1, fn=_scale),
        ]

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = np.asarray(inputs["x"], dtype=np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
