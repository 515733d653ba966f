"""``layernorm`` and ``rmsnorm``: row-wise normalisation of a ``[rows, cols]`` matrix.

Rows are spread over PE rows, a row's columns over PE columns (see :mod:`._rowwise`); inputs
``x`` (``[rows, cols]``), ``g`` (gamma, ``[cols]``) and for layernorm ``b`` (beta, ``[cols]``);
option ``eps``.

* layernorm: one pass computes each row's sum and sum of squares (``add`` + ``fmac``); both are
  summed across the PE row in one reduce (2 fp32 values per row); the row's first PE turns them
  into ``rstd = 1 / sqrt(E[x^2] - E[x]^2 + eps)`` and ``shift = -E[x] * rstd`` and multicasts
  them; then ``y = x * rstd + shift`` (``fmac``) and ``y = y * g + b`` (``fmac``): 7 FLOPs per
  element.
* rmsnorm: sum of squares (``fmac``), reduce, ``rstd = 1 / sqrt(E[x^2] + eps)`` at the row's
  first PE, multicast, ``y = x * rstd`` and ``y *= g`` (two ``mul``): 4 FLOPs per element.

Algorithms name the reduce: ``tree`` (default) or ``chain``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.program.ir import Memory

from ._flops import ROWWISE_STEPS
from ._rowwise import Local, RowReduce, RowwiseKernel, Stage
from .base import Plan, register


def _sums(mem: Memory, o: dict[str, Any]) -> None:
    x = mem["x"].astype(np.float32)
    mem["s"] = np.concatenate((x.sum(axis=1), (x * x).sum(axis=1)))


def _ln_root(mem: Memory, o: dict[str, Any]) -> None:
    r = mem["s"].size // 2
    mean = mem["s"][:r] / mem["cols"]
    var = np.maximum(mem["s"][r:] / mem["cols"] - mean * mean, 0.0)
    rstd = 1.0 / np.sqrt(var + o["eps"])
    mem["s"] = np.concatenate((rstd, -mean * rstd)).astype(np.float32)


def _ln_normalise(mem: Memory, o: dict[str, Any]) -> None:
    r = mem["s"].size // 2
    rstd, shift = mem["s"][:r, None], mem["s"][r:, None]
    mem["y"] = (mem["x"].astype(np.float32) * rstd + shift).astype(mem["dt"])


def _scale_shift(mem: Memory, o: dict[str, Any]) -> None:
    y = mem["y"].astype(np.float32) * mem["g"].astype(np.float32)
    mem["y"] = (y + mem["b"].astype(np.float32)).astype(mem["dt"])


def _sum_squares(mem: Memory, o: dict[str, Any]) -> None:
    x = mem["x"].astype(np.float32)
    mem["s"] = (x * x).sum(axis=1)


def _rms_root(mem: Memory, o: dict[str, Any]) -> None:
    mem["s"] = (1.0 / np.sqrt(mem["s"] / mem["cols"] + o["eps"])).astype(np.float32)


def _rms_normalise(mem: Memory, o: dict[str, Any]) -> None:
    mem["y"] = (mem["x"].astype(np.float32) * mem["s"][:, None]).astype(mem["dt"])


def _gain(mem: Memory, o: dict[str, Any]) -> None:
    y = mem["y"].astype(np.float32) * mem["g"].astype(np.float32)
    mem["y"] = y.astype(mem["dt"])


@register
class LayerNorm(RowwiseKernel):
    name = "layernorm"
    description = "row-wise LayerNorm: one fused sum/sum-of-squares reduce per PE row"
    option_defaults = {"eps": 1e-5}
    vectors = ("g", "b")
    stats_per_row = 2

    def stages(self, plan: Plan) -> list[Stage]:
        total, squares, normalise, scale = ROWWISE_STEPS["layernorm"]
        return [
            Local(total, reads=1, writes=0, fn=_sums),
            Local(squares, reads=1, writes=0),
            # mean, E[x^2] - mean^2, + eps, rsqrt, -mean * rstd: per row at the first PE.
            RowReduce("add", width=2, root=(("fmac", 3), ("rsqrt", 1)), width_out=2, fn=_ln_root),
            Local(normalise, reads=1, writes=1, fn=_ln_normalise),
            Local(scale, reads=3, writes=1, fn=_scale_shift),
        ]

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = np.asarray(inputs["x"], dtype=np.float64)
        g = np.asarray(inputs["g"], dtype=np.float64)
        b = np.asarray(inputs["b"], dtype=np.float64)
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        return (x - mean) / np.sqrt(var + plan.options["eps"]) * g + b


@register
class RMSNorm(RowwiseKernel):
    name = "rmsnorm"
    description = "row-wise RMSNorm: sum of squares reduced across each PE row"
    option_defaults = {"eps": 1e-6}
    vectors = ("g",)

    def stages(self, plan: Plan) -> list[Stage]:
        squares, normalise, gain = ROWWISE_STEPS["rmsnorm"]
        return [
            Local(squares, reads=1, writes=0, fn=_sum_squares),
            # E[x^2] + eps (one fmac) and rsqrt, per row at the first PE.
            RowReduce("add", width=1, root=(("fmac", 1), ("rsqrt", 1)), fn=_rms_root),
            Local(normalise, reads=1, writes=1, fn=_rms_normalise),
            Local(gain, reads=2, writes=1, fn=_gain),
        ]

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = np.asarray(inputs["x"], dtype=np.float64)
        g = np.asarray(inputs["g"], dtype=np.float64)
        return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + plan.options["eps"]) * g
