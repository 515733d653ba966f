"""``reduce``: sum the vectors of every PE of the region into the north-west PE.

Algorithms (``W`` x ``H`` region, ``n`` wavelets per vector, ``c = 2R + H + O``):

* ``two-phase``: a pipelined chain along every row into column 0 (all rows at once), then one
  chain up column 0: ``chain(W) + chain(H)``, about ``2n + c (W + H)``.
* ``chain``: one pipelined chain through every PE (a boustrophedon snake):
  ``(P - 1) c + n``; best when the vector is long compared with ``c P``.
* ``tree``: binary trees along every row, then up column 0 (``ceil(log2 L)`` levels, the far
  end folded first so levels never contend): ``tree(W) + tree(H)``, about
  ``(log2 W + log2 H) (2R + O + n) + (W + H) H``; best for short vectors on wide regions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.hardware.cost import flops
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Coord, Memory, Phase, Program, Region

from . import _collective_cost as cc
from ._collective_base import KEY, VectorCollective
from ._collective_ops import Line, Snake, chain_reduce, tree_levels, tree_reduce
from .base import Estimate, Plan, register


def reduce_colors(region: Region, algorithm: str) -> int:
    """Colors :func:`reduce_phases` uses: one per chain, one per tree level."""
    if algorithm == "chain":
        return 1
    if algorithm == "two-phase":
        return 2
    return tree_levels(region.width) + tree_levels(region.height)


def reduce_phases(
    region: Region,
    algorithm: str,
    n: int,
    length: int,
    dtype: str,
    key: str = KEY,
    first_color: int = 0,
) -> list[Phase]:
    """The phases that sum every PE's ``memory[key]`` into the north-west PE's, on colors
    ``first_color ..`` (:func:`reduce_colors` of them)."""
    c = first_color
    if algorithm == "chain":
        return [Phase("chain", chain_reduce(Snake(region), n, length, dtype, "add", c, key))]
    rows, col = Line(region, "x"), Line(region, "y", first_only=True)
    if algorithm == "two-phase":
        return [
            Phase("row chains", chain_reduce(rows, n, length, dtype, "add", c, key)),
            Phase("column chain", chain_reduce(col, n, length, dtype, "add", c + 1, key)),
        ]
    kw = tree_levels(region.width)
    row_colors = range(c, c + kw)
    col_colors = range(c + kw, c + kw + tree_levels(region.height))
    return [
        Phase("row trees", tree_reduce(rows, n, length, dtype, "add", row_colors, key)),
        Phase("column tree", tree_reduce(col, n, length, dtype, "add", col_colors, key)),
    ]


def reduce_estimate(
    spec: WaferSpec, region: Region, algorithm: str, n: int, length: int, dtype: str
) -> tuple[dict[str, float], float, np.ndarray]:
    """``(breakdown, link wavelets, per-PE FLOPs)`` of :func:`reduce_phases`."""
    w, h, p_count = region.width, region.height, region.num_pes
    p = cc.stream_interval(spec, "add", length, dtype, n)
    per = flops("add", length)
    pe_flops = np.zeros(region.shape)
    if algorithm == "chain":
        breakdown = {"chain": cc.chain_cycles(spec, p_count, n, p)}
        links = float((p_count - 1) * n)
        pe_flops[:] = per
        pe_flops[Snake(region).pos == p_count - 1] = 0.0
    elif algorithm == "two-phase":
        breakdown = {
            "row chains": cc.chain_cycles(spec, w, n, p),
            "column chain": cc.chain_cycles(spec, h, n, p),
        }
        links = float((p_count - 1) * n)
        if w > 1:
            pe_flops[:, : w - 1] = per
        if h > 1:
            pe_flops[: h - 1, 0] += per
    else:
        breakdown = {
            "row trees": cc.tree_cycles(spec, w, n, p),
            "column tree": cc.tree_cycles(spec, h, n, p),
        }
        links = float(n * (h * cc.tree_hops(w) + cc.tree_hops(h)))
        pe_flops += per * cc.tree_receptions(w)[None, :]
        pe_flops[:, 0] += per * cc.tree_receptions(h)
    return breakdown, links, pe_flops


@register
class Reduce(VectorCollective):
    name = "reduce"
    description = "sum every PE's vector into the region's north-west PE (chain, tree, two-phase)"
    algorithms = ("two-phase", "chain", "tree")

    def tiling(
        self, spec: WaferSpec, region: Region, length: int, dtype: str, algorithm: str
    ) -> dict[str, Any]:
        t = super().tiling(spec, region, length, dtype, algorithm)
        t["colors"] = reduce_colors(region, algorithm)
        return t

    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        reg = plan.region
        n = plan.tiling["wavelets"]
        length = plan.sizes["length"]
        _, _, pe_flops = reduce_estimate(spec, reg, plan.algorithm, n, length, plan.dtype)
        return Program(
            name=f"reduce/{plan.algorithm}",
            region=reg,
            phases=reduce_phases(reg, plan.algorithm, n, length, plan.dtype),
            sram_bytes=plan.sram_bytes_per_pe,
            flops=float(pe_flops.sum()),
            init=self.init(plan, inputs) if inputs is not None else None,
            collect=self._collect_root(plan) if inputs is not None else None,
        )

    @staticmethod
    def _collect_root(plan: Plan):
        root = (plan.region.x, plan.region.y)

        def collect(memories: dict[Coord, Memory]) -> np.ndarray:
            return memories[root][KEY][: plan.sizes["length"]].copy()

        return collect

    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        n = plan.tiling["wavelets"]
        breakdown, links, pe_flops = reduce_estimate(
            spec, plan.region, plan.algorithm, n, plan.sizes["length"], plan.dtype
        )
        return Estimate(sum(breakdown.values()), breakdown, links, pe_flops)

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = np.asarray(inputs["x"], dtype=np.float64)
        return x.reshape(-1, x.shape[-1]).sum(axis=0)
