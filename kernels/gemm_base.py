"""What every GEMM algorithm shares: the algorithm interface, block data and the reference.

``C[m, n] = A[m, k] @ B[k, n]``. Each algorithm tiles the operands over a grid of PEs at the
north-west corner of the plan's region, zero-padding the matrices to whole tiles; executed FLOPs
therefore include the padding while :attr:`Plan.flops` is the useful ``2 m n k``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Coord, Memory, Phase, Program, Region

from ._common import pad2
from ._layout import np_dtype
from .base import Estimate, Plan


class GemmAlgorithm(ABC):
    """One GEMM algorithm: tiling, program and closed form for plans made by the gemm kernel."""

    name: str = ""
    options: tuple[str, ...] = ()
    """Option names this algorithm accepts."""

    @abstractmethod
    def tiling(
        self, spec: WaferSpec, region: Region, m: int, n: int, k: int, dtype: str, **options: Any
    ) -> dict[str, Any]:
        """Layout choices. Must hold ``grid`` ``[width, height]``, ``sram_bytes`` (busiest PE)
        and ``bytes_for`` (a callable ``(width, height) -> bytes per PE`` used to suggest the
        smallest region that fits; removed from the plan)."""

    @abstractmethod
    def program(self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None) -> Program:
        """The IR program (functional when ``inputs`` is given)."""

    @abstractmethod
    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        """The closed form (docs/kernels.md)."""

    @abstractmethod
    def sram_map(self, plan: Plan) -> np.ndarray:
        """Bytes allocated on each PE of the plan's region (shape ``region.shape``)."""

    def build_program(
        self,
        plan: Plan,
        grid: Region,
        phases: list[Phase],
        init: Any = None,
        collect: Any = None,
        sram_bytes: Any = None,
    ) -> Program:
        """The :class:`Program` ``gemm/<name>`` on ``grid`` executing the plan's FLOPs.

        ``sram_bytes`` (bytes per PE) defaults to :meth:`sram_map` cut to the grid.
        """
        if sram_bytes is None:
            sram_bytes = self.sram_map(plan)[: grid.height, : grid.width].astype(np.int64)
        return Program(
            name=f"gemm/{self.name}",
            region=grid,
            phases=phases,
            sram_bytes=sram_bytes,
            flops=plan.flops,
            init=init,
            collect=collect,
        )


def grid_of(plan: Plan) -> Region:
    """The rectangle of PEs the algorithm uses (north-west corner of the plan's region)."""
    w, h = plan.tiling["grid"]
    return Region(plan.region.x, plan.region.y, int(w), int(h))


def embed(plan: Plan, grid_values: np.ndarray) -> np.ndarray:
    """A per-PE array over the plan's grid placed into an array over the whole region."""
    out = np.zeros(plan.region.shape)
    h, w = grid_values.shape
    out[:h, :w] = grid_values
    return out


def padded_operands(plan: Plan, inputs: dict[str, np.ndarray], mp: int, kp: int, np_: int):
    """``A`` padded to ``mp x kp`` and ``B`` padded to ``kp x np_`` in the plan's numpy dtype."""
    dt = np_dtype(plan.dtype)
    a = pad2(np.asarray(inputs["A"]), mp, kp, dt)
    b = pad2(np.asarray(inputs["B"]), kp, np_, dt)
    return a, b


def tile_update(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``c + a @ b`` accumulated in float32 and stored back in ``c``'s dtype (new array)."""
    acc = c.astype(np.float32) + a.astype(np.float32) @ b.astype(np.float32)
    return acc.astype(c.dtype)


def collect_blocks(plan: Plan, grid: Region, tm: int, tn: int, where):
    """``collect`` assembling ``C`` from each PE's ``"C"`` block.

    ``where(x, y)`` (offsets in the grid) gives the block ``(row, column)`` the PE holds, or
    ``None`` when it holds none.
    """
    m, n = plan.sizes["m"], plan.sizes["n"]

    def collect(memories: dict[Coord, Memory]) -> np.ndarray:
        rows = max(1, -(-m // tm)) * tm
        cols = max(1, -(-n // tn)) * tn
        out = np.zeros((max(rows, grid.height * tm), max(cols, grid.width * tn)))
        for (x, y), mem in memories.items():
            if not grid.contains(x, y) or "C" not in mem:
                continue
            block = where(x - grid.x, y - grid.y)
            if block is None:
                continue
            i, j = block
            out[i * tm : (i + 1) * tm, j * tn : (j + 1) * tn] = mem["C"]
        return out[:m, :n]

    return collect
