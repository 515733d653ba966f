"""``allreduce``: every PE of the region ends with the sum of all PEs' vectors.

Algorithms (``W`` x ``H`` region, ``n`` wavelets per vector; a 1-row region is the 1D case):

* ``2d``: two-phase chain reduce into the north-west PE (rows, then column 0), then one hardware
  multicast to the region: ``chain(W) + chain(H) + message_cycles(W + H - 2, n)``.
* ``tree``: the same with binary trees: ``tree(W) + tree(H) + message_cycles(W + H - 2, n)``.
* ``ring``: bandwidth-optimal two-level ring: reduce-scatter along every row (chunks of
  ``length / W``), a ring allreduce down every column on the row chunk a PE holds (chunks of
  ``length / P``), then allgather along every row. Rings are folded (no link longer than two
  hops); the vector is zero-padded to a multiple of ``P`` elements.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from wse_sim.hardware.cost import dtype_bytes, flops, wavelets
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Phase, Program, Region

from . import _collective_cost as cc
from ._collective_base import KEY, VectorCollective
from ._collective_ops import Line, folded_ring, region_multicast, ring_phase
from .base import Estimate, Plan, register
from .reduce import reduce_colors, reduce_estimate, reduce_phases

RING_COLORS = (0, 1)


def ring_layout(spec: WaferSpec, region: Region, length: int, dtype: str) -> dict[str, int]:
    """Chunks of the two-level ring: ``col_chunk = ceil(length / P)`` elements, ``row_chunk =
    H * col_chunk``, the vector padded to ``W * row_chunk``; wavelets per chunk message."""
    nbytes = dtype_bytes(dtype)
    col_chunk = math.ceil(length / region.num_pes)
    row_chunk = region.height * col_chunk
    return {
        "col_chunk": col_chunk,
        "row_chunk": row_chunk,
        "padded_length": region.width * row_chunk,
        "row_wavelets": wavelets(spec, row_chunk * nbytes),
        "col_wavelets": wavelets(spec, col_chunk * nbytes),
    }


def ring_phases(region: Region, t: dict[str, Any], dtype: str, key: str = KEY) -> list[Phase]:
    rows, cols = Line(region, "x"), Line(region, "y")
    cr, ck = t["row_chunk"], t["col_chunk"]
    zero = np.zeros(region.shape, dtype=np.int64)
    # After the row reduce-scatter the PE of row-ring rank r holds row chunk r + 1.
    rank, _, _ = folded_ring(region.width)
    col_base = ((rank[rows.pos] + 1) % region.width) * cr
    mr, mc = t["row_wavelets"], t["col_wavelets"]
    cx, cy = RING_COLORS
    return [
        Phase("row reduce-scatter", ring_phase(rows, "rs", mr, cr, dtype, cx, key, zero)),
        Phase("column reduce-scatter", ring_phase(cols, "rs", mc, ck, dtype, cy, key, col_base)),
        Phase("column allgather", ring_phase(cols, "ag", mc, ck, dtype, cy, key, col_base)),
        Phase("row allgather", ring_phase(rows, "ag", mr, cr, dtype, cx, key, zero)),
    ]


def ring_estimate(
    spec: WaferSpec, region: Region, t: dict[str, Any]
) -> tuple[dict[str, float], float, np.ndarray]:
    w, h = region.width, region.height
    mr, mc = t["row_wavelets"], t["col_wavelets"]
    row = cc.ring_phase_cycles(spec, w, mr)
    col = cc.ring_phase_cycles(spec, h, mc)
    breakdown = {
        "row reduce-scatter": row,
        "column reduce-scatter": col,
        "column allgather": col,
        "row allgather": row,
    }
    links = 2 * h * cc.ring_link_wavelets(w, mr) + 2 * w * cc.ring_link_wavelets(h, mc)
    per_pe = flops("add", (w - 1) * t["row_chunk"] + (h - 1) * t["col_chunk"])
    return breakdown, links, np.full(region.shape, float(per_pe))


@register
class Allreduce(VectorCollective):
    name = "allreduce"
    description = "every PE gets the sum of all PEs' vectors (2d chain+multicast, tree, ring)"
    algorithms = ("2d", "ring", "tree")

    def tiling(
        self, spec: WaferSpec, region: Region, length: int, dtype: str, algorithm: str
    ) -> dict[str, Any]:
        t = super().tiling(spec, region, length, dtype, algorithm)
        if algorithm == "ring":
            t.update(ring_layout(spec, region, length, dtype))
            # The zero padding is never stored: a chunk past the data is sent as zeros.
            t["sram_elements"] = length + 2 * t["row_chunk"]
            t["colors"] = len(RING_COLORS)
        else:
            t["colors"] = reduce_colors(region, _reduce_algorithm(algorithm)) + 1
        return t

    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        reg, t = plan.region, plan.tiling
        length, n = plan.sizes["length"], t["wavelets"]
        if plan.algorithm == "ring":
            phases = ring_phases(reg, t, plan.dtype)
            padded = t["padded_length"]
        else:
            algo = _reduce_algorithm(plan.algorithm)
            phases = reduce_phases(reg, algo, n, length, plan.dtype)
            bcast = region_multicast(reg, n, reduce_colors(reg, algo), KEY)
            phases.append(Phase("multicast", bcast))
            padded = None
        _, _, pe_flops = self._estimate_parts(plan, spec)
        return Program(
            name=f"allreduce/{plan.algorithm}",
            region=reg,
            phases=phases,
            sram_bytes=plan.sram_bytes_per_pe,
            flops=float(pe_flops.sum()),
            init=self.init(plan, inputs, padded) if inputs is not None else None,
            collect=self.collect_all(plan) if inputs is not None else None,
        )

    def _estimate_parts(
        self, plan: Plan, spec: WaferSpec
    ) -> tuple[dict[str, float], float, np.ndarray]:
        reg, t = plan.region, plan.tiling
        if plan.algorithm == "ring":
            return ring_estimate(spec, reg, t)
        n = t["wavelets"]
        algo = _reduce_algorithm(plan.algorithm)
        breakdown, links, pe_flops = reduce_estimate(
            spec, reg, algo, n, plan.sizes["length"], plan.dtype
        )
        hops = reg.width - 1 + reg.height - 1
        breakdown["multicast"] = cc.multicast_cycles(spec, hops, n)
        return breakdown, links + n * (reg.num_pes - 1), pe_flops

    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        breakdown, links, pe_flops = self._estimate_parts(plan, spec)
        return Estimate(sum(breakdown.values()), breakdown, links, pe_flops)

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = np.asarray(inputs["x"], dtype=np.float64)
        total = x.reshape(-1, x.shape[-1]).sum(axis=0)
        return np.broadcast_to(total, x.shape).copy()


def _reduce_algorithm(algorithm: str) -> str:
    return "two-phase" if algorithm == "2d" else algorithm
