"""GEMM on a classic output-stationary (OS) systolic array, for cross-checks with SCALE-Sim.

The plan's region holds an ``R x C`` array of compute PEs (``R = min(height - 1, m)``,
``C = min(width - 1, n)``) whose west neighbours (column 0) and north neighbours (row 0) are
*feeders*, the array's operand buffers: west feeder ``y`` holds the rows of A that array row ``y``
computes, north feeder ``x`` the columns of B of array column ``x``. The output is processed fold
by fold (``ceil(m/R) * ceil(n/C)`` folds); in a fold, array PE ``(x, y)`` computes one element of
C, a dot product of length ``T = k``, and keeps it.

Program per fold: each north feeder multicasts its B column down its column; each west feeder
multicasts its A row along its row (the router copies each wavelet to every PE on the way, which
skews the operands by one hop per PE); an array PE receives the B column, then streams the A row
through one FMAC per element.

Closed form (the classic array, one MAC per PE per cycle, each fold fills, computes and drains
before the next begins, as in SCALE-Sim's OS dataflow):

    cycles per fold = 2 R + C + T * feed - 2,    feed = 2 * dtype bytes / link bytes

``feed`` is the cycles a PE needs to take in the two operands of one MAC through its ramp (one
wavelet per cycle): 1 for fp16 (the classic array), 2 for fp32. The DES overlaps consecutive
folds (nothing in the IR holds the next fold back), so it is faster by about ``2R + C`` per fold;
docs/kernels.md says when the two agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from wse_sim.errors import ConfigError
from wse_sim.hardware.cost import dtype_bytes
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Compute, Dest, Memory, Phase, Program, Recv, Region, Send, Stream

from ._common import ceil_div, pad2, tensor_wavelets
from ._layout import np_dtype
from .base import Estimate, Plan
from .gemm_base import GemmAlgorithm, embed, grid_of

COLOR_B, COLOR_A = 0, 1


def _layout(width: int, height: int, m: int, n: int, k: int) -> dict[str, int]:
    rows, cols = min(height - 1, m), min(width - 1, n)
    if rows < 1 or cols < 1:
        return {"rows": 0, "cols": 0, "folds_m": 0, "folds_n": 0, "t": k}
    return {
        "rows": rows,
        "cols": cols,
        "folds_m": ceil_div(m, rows),
        "folds_n": ceil_div(n, cols),
        "t": k,
    }


def _elements(t: dict[str, int]) -> int:
    """Elements on the busiest PE: a feeder's operand rows or an array PE's B column + outputs."""
    if t["rows"] == 0:
        return 1 << 62
    return max(
        t["folds_m"] * t["t"],
        t["folds_n"] * t["t"],
        t["t"] + t["folds_m"] * t["folds_n"],
    )


def feed_cycles(spec: WaferSpec, dtype: str) -> float:
    """Cycles per MAC to take in two operands through the ramp (one wavelet per cycle)."""
    return 2.0 * dtype_bytes(dtype) / spec.fabric.link_bytes_per_cycle


def fold_cycles(rows: int, cols: int, t: int, feed: float = 1.0) -> int:
    """Cycles of one OS fold on a ``rows x cols`` array with temporal extent ``t``:
    ``2 rows + cols + t * feed - 2`` (SCALE-Sim's OS formula when ``feed = 1``)."""
    return int(2 * rows + cols + math.ceil(t * feed) - 2)


def pipelined_cycles(spec: WaferSpec, plan: Plan) -> int:
    """What the DES does with the program: consecutive folds overlap, so only the last fold's
    fill is paid. Per fold an array PE receives the B column and then streams the A row
    (``2 nw + O - 1`` cycles, ``nw`` wavelets per operand vector); the south-west array PE
    starts ``2R_ramp + rows * H`` late:

        folds * (2 nw + O - 1) + 2 R_ramp + rows * H

    Holds while the stream is limited by its input (one wavelet per cycle), which it is for
    the SIMD widths of WSE-2 and WSE-3.
    """
    t = plan.tiling
    rows = t["array"][1]
    folds = t["folds"][0] * t["folds"][1]
    nw = t["wavelets"]
    f = spec.fabric
    o = spec.pe.instruction_overhead_cycles
    return int(folds * (2 * nw + o - 1) + 2 * f.ramp_latency_cycles + rows * f.hop_latency_cycles)


class SystolicOS(GemmAlgorithm):
    name = "systolic-os"

    def tiling(
        self, spec: WaferSpec, region: Region, m: int, n: int, k: int, dtype: str, **options: Any
    ) -> dict[str, Any]:
        if region.width < 2 or region.height < 2:
            raise ConfigError(
                "region",
                f"{region.width}x{region.height}",
                "systolic-os needs at least 2x2 PEs (feeders on the west and north edges)",
            )
        t = _layout(region.width, region.height, m, n, k)
        b = dtype_bytes(dtype)
        return {
            "grid": [t["cols"] + 1, t["rows"] + 1],
            "array": [t["cols"], t["rows"]],
            "folds": [t["folds_m"], t["folds_n"]],
            "t": k,
            "wavelets": tensor_wavelets(spec, dtype, k),
            "sram_bytes": _elements(t) * b,
            "bytes_for": lambda w, h: _elements(_layout(w, h, m, n, k)) * b,
        }

    def sram_map(self, plan: Plan) -> np.ndarray:
        t = plan.tiling
        cols, rows = t["array"]
        fm, fn_ = t["folds"]
        k = t["t"]
        elems = np.zeros((rows + 1, cols + 1))
        elems[1:, 0] = fm * k
        elems[0, 1:] = fn_ * k
        elems[1:, 1:] = k + fm * fn_
        return embed(plan, elems * dtype_bytes(plan.dtype))

    # -- program ----------------------------------------------------------------------------------
    def program(self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None) -> Program:
        t = plan.tiling
        grid = grid_of(plan)
        cols, rows = t["array"]
        fm, fn_ = t["folds"]
        k, nw = t["t"], t["wavelets"]
        shape = grid.shape
        ys = np.arange(rows + 1).reshape(rows + 1, 1)
        xs = np.arange(cols + 1).reshape(1, cols + 1)
        north = np.broadcast_to((ys == 0) & (xs >= 1), shape)
        west = np.broadcast_to((xs == 0) & (ys >= 1), shape)
        array = np.broadcast_to((xs >= 1) & (ys >= 1), shape)
        functional = inputs is not None
        phases = []
        for fi in range(fm):
            for fj in range(fn_):
                dot = Compute(
                    kind="fmac",
                    elements=k,
                    dtype=plan.dtype,
                    instructions=1,
                    sram_read_bytes=k * dtype_bytes(plan.dtype),
                )
                ops = [
                    Send(COLOR_B, nw, Dest(0, 0, 1, rows), mask=north, buffer=f"B{fj}"),
                    Recv(COLOR_B, nw, src=(0, -ys), mask=array, buffer="b"),
                    Send(COLOR_A, nw, Dest(1, cols, 0, 0), mask=west, buffer=f"A{fi}"),
                    Stream(
                        recv=Recv(COLOR_A, nw, src=(-xs, 0)),
                        compute=dot,
                        mask=array,
                        fn=_dot(fi, fj) if functional else None,
                    ),
                ]
                phases.append(Phase(f"fold {fi},{fj}", ops))
        init = collect = None
        if inputs is not None:
            init, collect = self._data(plan, inputs, grid)
        return self.build_program(plan, grid, phases, init, collect)

    @staticmethod
    def _data(plan: Plan, inputs: dict[str, np.ndarray], grid: Region):
        t = plan.tiling
        cols, rows = t["array"]
        fm, fn_ = t["folds"]
        m, n, k = plan.sizes["m"], plan.sizes["n"], plan.sizes["k"]
        dt = np_dtype(plan.dtype)
        a = pad2(np.asarray(inputs["A"]), fm * rows, k, dt)
        b = pad2(np.asarray(inputs["B"]), k, fn_ * cols, dt)

        def init(x: int, y: int) -> Memory:
            gx, gy = x - grid.x, y - grid.y
            if gx == 0 and gy >= 1:
                return {f"A{f}": a[f * rows + gy - 1].copy() for f in range(fm)}
            if gy == 0 and gx >= 1:
                return {f"B{f}": b[:, f * cols + gx - 1].copy() for f in range(fn_)}
            if gx >= 1 and gy >= 1:
                return {"C": np.zeros((fm, fn_), dtype=dt)}
            return {}

        def collect(memories: dict) -> np.ndarray:
            out = np.zeros((fm * rows, fn_ * cols))
            for (x, y), mem in memories.items():
                gx, gy = x - grid.x, y - grid.y
                if gx >= 1 and gy >= 1 and "C" in mem:
                    out[gy - 1 :: rows, gx - 1 :: cols] = mem["C"]
            return out[:m, :n]

        return init, collect

    # -- closed form ------------------------------------------------------------------------------
    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        t = plan.tiling
        cols, rows = t["array"]
        fm, fn_ = t["folds"]
        k, nw = t["t"], t["wavelets"]
        folds = fm * fn_
        feed = feed_cycles(spec, plan.dtype)
        per_fold = fold_cycles(rows, cols, k, feed)
        stream = math.ceil(k * feed)
        breakdown = {
            "stream": float(folds * stream),
            "fill_drain": float(folds * (per_fold - stream)),
        }
        pe = np.zeros((rows + 1, cols + 1))
        pe[1:, 1:] = 2.0 * k * folds
        # Per fold: each north feeder's tree has `rows` links, each west feeder's `cols`.
        links = folds * nw * 2 * rows * cols
        return Estimate(
            cycles=sum(breakdown.values()),
            breakdown=breakdown,
            link_wavelets=float(links),
            pe_flops=embed(plan, pe),
        )


def _dot(fi: int, fj: int):
    def fn(mem: Memory, x: int, y: int, incoming: Any) -> None:
        acc = np.dot(np.asarray(incoming, np.float32), mem["b"].astype(np.float32))
        mem["C"][fi, fj] = acc
        return None

    return fn
