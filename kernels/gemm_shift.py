"""GEMM by cyclic shifts on a ``P x P`` grid: Cannon and WaferLLM's MeshGEMM.

Both run Cannon's algorithm on *logical* coordinates. A ring maps logical positions to PE
offsets along each row and column (:func:`._common.ring_layout`): for ``cannon`` the identity, so
the wrap-around transfer spans ``P - 1`` hops; for ``meshgemm`` the interleaved ring
``0, 2, 4, ..., 5, 3, 1``, so every transfer is at most 2 hops and each PE needs O(1) routes.

``P = min(width, height, m, n, k)``; logical PE ``(i, j)`` holds ``tm x tk`` of A and ``tk x tn``
of B (``tm = ceil(m/P)``, ``tk = ceil(k/P)``, ``tn = ceil(n/P)``) and accumulates its
``tm x tn`` block of C.

* Skew (option ``skew``, default true): logical row ``i`` shifts A back by ``i`` positions and
  column ``j`` shifts B up by ``j``, as ``P - 1`` rounds of one-position shifts (round ``r`` moves
  the rows and columns with index ``>= r``). With ``skew=false`` the operands are assumed to be
  stored pre-skewed.
* ``P`` steps: ``C += A @ B``, then (except after the last) shift A one position west along the
  ring and B one position north.

Shifts overlap the computation: at the start of a step every PE sends its A and B tiles to
the previous ring positions in the background (:func:`._common.ring_send`, ``O`` cycles of
the compute engine each), multiplies them while they leave, then receives the next tiles into
its receive buffers (:func:`._common.ring_recv`; the buffers alternate by pointer swap). Two
buffers per operand suffice: a PE's receive into the buffer it sent one step earlier gets its
first wavelet only after the neighbour has finished consuming that send. A step costs
``2O + matmul + nA + nB - 2`` once the computation covers the transfer latency; the skew
rounds have nothing to hide the latency behind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.hardware.cost import dtype_bytes
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Memory, Phase, Program, Region

from ._common import (
    bool_option,
    ceil_div,
    lap_hops,
    matmul_compute,
    matmul_cycles,
    ring_hops,
    ring_layout,
    ring_recv,
    ring_send,
    shift_pair_cycles,
    skew_cycles,
    tensor_wavelets,
)
from .base import Estimate, Plan
from .gemm_base import (
    GemmAlgorithm,
    collect_blocks,
    embed,
    grid_of,
    padded_operands,
    tile_update,
)

COLOR_A, COLOR_B = 0, 1


def _side(width: int, height: int, m: int, n: int, k: int) -> int:
    return max(1, min(width, height, m, n, k))


def _tiles(p: int, m: int, n: int, k: int) -> tuple[int, int, int]:
    return ceil_div(m, p), ceil_div(n, p), ceil_div(k, p)


def _elements(p: int, m: int, n: int, k: int) -> int:
    """A and B tiles, their receive buffers (double buffering: a tile is sent while the next
    one is received), and the C tile."""
    tm, tn, tk = _tiles(p, m, n, k)
    return 2 * tm * tk + 2 * tk * tn + tm * tn


class _Shift(GemmAlgorithm):
    interleaved = False
    options = ("skew",)

    def tiling(
        self, spec: WaferSpec, region: Region, m: int, n: int, k: int, dtype: str, **options: Any
    ) -> dict[str, Any]:
        skew = bool_option("skew", options.get("skew", True))
        p = _side(region.width, region.height, m, n, k)
        tm, tn, tk = _tiles(p, m, n, k)
        b = dtype_bytes(dtype)
        ring, _ = ring_layout(p, self.interleaved)
        return {
            "grid": [p, p],
            "tile_m": tm,
            "tile_n": tn,
            "tile_k": tk,
            "skew": skew,
            "ring": ring.tolist(),
            "max_hops": int(ring_hops(ring).max()) if p > 1 else 0,
            "buffers_per_operand": 2,
            "wavelets_a": tensor_wavelets(spec, dtype, tm * tk),
            "wavelets_b": tensor_wavelets(spec, dtype, tk * tn),
            "sram_bytes": _elements(p, m, n, k) * b,
            "bytes_for": lambda w, h: _elements(_side(w, h, m, n, k), m, n, k) * b,
        }

    def sram_map(self, plan: Plan) -> np.ndarray:
        p = plan.tiling["grid"][0]
        return embed(plan, np.full((p, p), float(plan.tiling["sram_bytes"])))

    # -- program ----------------------------------------------------------------------------------
    def program(self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None) -> Program:
        t = plan.tiling
        grid = grid_of(plan)
        p = t["grid"][0]
        tm, tn, tk = t["tile_m"], t["tile_n"], t["tile_k"]
        na, nb = t["wavelets_a"], t["wavelets_b"]
        ring, pos = ring_layout(p, self.interleaved)
        shape = grid.shape
        li = pos.reshape(p, 1)  # logical row of each physical row
        lj = pos.reshape(1, p)  # logical column of each physical column
        phases = []
        if t["skew"] and p > 1:
            for r in range(1, p):
                rows = np.broadcast_to(li >= r, shape)
                cols = np.broadcast_to(lj >= r, shape)
                ops = [
                    ring_send("x", shape, ring, pos, na, COLOR_A, "A", rows),
                    ring_send("y", shape, ring, pos, nb, COLOR_B, "B", cols),
                ]
                ops += ring_recv("x", shape, ring, pos, na, COLOR_A, "A", rows)
                ops += ring_recv("y", shape, ring, pos, nb, COLOR_B, "B", cols)
                phases.append(Phase(f"skew {r}", ops))
        fn = _update if inputs is not None else None
        compute = matmul_compute(plan.dtype, tm, tn, tk, fn=fn)
        # Send the tiles in the background, multiply them while they leave, then receive.
        sends = [
            ring_send("x", shape, ring, pos, na, COLOR_A, "A"),
            ring_send("y", shape, ring, pos, nb, COLOR_B, "B"),
        ]
        recvs = ring_recv("x", shape, ring, pos, na, COLOR_A, "A")
        recvs += ring_recv("y", shape, ring, pos, nb, COLOR_B, "B")
        for s in range(p):  # every step shares the same op objects
            last = s == p - 1
            phases.append(Phase(f"step {s}", [compute] if last else sends + [compute] + recvs))
        init = collect = None
        if inputs is not None:
            init = self._init(plan, inputs, grid, ring, pos)
            collect = collect_blocks(plan, grid, tm, tn, lambda x, y: (int(pos[y]), int(pos[x])))
        return self.build_program(plan, grid, phases, init, collect, int(t["sram_bytes"]))

    @staticmethod
    def _init(plan: Plan, inputs: dict[str, np.ndarray], grid: Region, ring, pos):
        t = plan.tiling
        p = t["grid"][0]
        tm, tn, tk = t["tile_m"], t["tile_n"], t["tile_k"]
        a, b = padded_operands(plan, inputs, p * tm, p * tk, p * tn)
        skewed = not t["skew"]

        def init(x: int, y: int) -> Memory:
            i, j = int(pos[y - grid.y]), int(pos[x - grid.x])
            ka = (i + j) % p if skewed else j
            kb = (i + j) % p if skewed else i
            return {
                "A": a[i * tm : (i + 1) * tm, ka * tk : (ka + 1) * tk].copy(),
                "B": b[kb * tk : (kb + 1) * tk, j * tn : (j + 1) * tn].copy(),
                "C": np.zeros((tm, tn), dtype=a.dtype),
            }

        return init

    # -- closed form ------------------------------------------------------------------------------
    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        t = plan.tiling
        p = t["grid"][0]
        tm, tn, tk = t["tile_m"], t["tile_n"], t["tile_k"]
        na, nb = t["wavelets_a"], t["wavelets_b"]
        ring = np.asarray(t["ring"])
        comp = matmul_cycles(spec, plan.dtype, tm, tn, tk)
        skew = skew_cycles(spec, na, nb, ring) if t["skew"] else 0.0
        step = shift_pair_cycles(spec, na, nb, comp, lap_hops(ring)) if p > 1 else 0.0
        # Each of the first p - 1 steps: its tile product plus the shifts it does not hide.
        breakdown = {
            "skew": float(skew),
            "compute": float(p * comp),
            "shift": float((p - 1) * (step - comp)),
        }
        hop_sum = int(ring_hops(ring).sum()) if p > 1 else 0
        # Skew round r moves the p - r rows (columns) with index >= r.
        skew_lines = p * (p - 1) // 2 if t["skew"] else 0
        links = (hop_sum * (na + nb)) * (p * (p - 1) + skew_lines)
        pe_flops = np.full((p, p), 2.0 * tm * tn * tk * p)
        return Estimate(
            cycles=sum(breakdown.values()),
            breakdown=breakdown,
            link_wavelets=float(links),
            pe_flops=embed(plan, pe_flops),
        )


def _update(mem: Memory, x: int, y: int) -> None:
    mem["C"] = tile_update(mem["C"], mem["A"], mem["B"])


class Cannon(_Shift):
    name = "cannon"
    interleaved = False


class MeshGemm(_Shift):
    name = "meshgemm"
    interleaved = True
