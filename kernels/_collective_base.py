"""What the three vector collectives (broadcast, reduce, allreduce) share: sizes, plan, data.

Size ``length``: elements of the vector each PE holds (or, for a broadcast, the root holds). The
root is the region's north-west PE. Inputs for a functional run: ``x`` of shape
``(region.height, region.width, length)`` (one vector per PE) for reduce and allreduce,
``(length,)`` for broadcast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.errors import PlanError
from wse_sim.hardware.cost import elements_per_wavelet, wavelets
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Coord, Memory, Region

from ._common import CheckedKernel, PlanRequest
from ._layout import (
    check_algorithm,
    check_dtype,
    check_options,
    np_dtype,
)
from .base import Plan

KEY = "v"
"""Memory key of the vector on every PE in functional runs."""


class VectorCollective(CheckedKernel):
    """Base of broadcast / reduce / allreduce: subclasses add the program and the estimate."""

    size_names = ("length",)
    per_pe_input = True
    """``x`` holds one vector per PE (reduce, allreduce) or only the root's (broadcast)."""

    def check_choice(
        self, algorithm: str | None, options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        check_options(self.name, options, ())
        return check_algorithm(self.name, algorithm, self.algorithms), {}

    def make_plan(self, req: PlanRequest) -> Plan:
        spec, region, algo = req.spec, req.region, req.algorithm
        length = req.sizes["length"]
        tiling = self.tiling(spec, region, length, req.dtype, algo)
        if tiling["colors"] > spec.fabric.colors:
            raise PlanError(
                f"{self.name}/{algo}: needs {tiling['colors']} colors on a "
                f"{region.width}x{region.height} region but the fabric has {spec.fabric.colors} "
                f"(fabric.colors); use algorithm {self.algorithms[0]}"
            )
        need = tiling["sram_elements"] * req.dtype_bytes
        have = spec.pe.data_sram_bytes
        if need > have:
            # Every PE holds the whole vector: a larger region does not help, a shorter one does.
            raise PlanError(
                f"{self.name}/{algo}: needs {need} bytes per PE but a PE has {have} bytes for "
                f"data (pe.data_sram_bytes); use length <= {int(have * length / need)}"
            )
        return self.plan_of(req, tiling, need, self.plan_flops(region, length), {})

    def tiling(
        self, spec: WaferSpec, region: Region, length: int, dtype: str, algorithm: str
    ) -> dict[str, Any]:
        """Layout choices; must contain ``sram_elements`` (elements held per PE) and ``colors``
        (fabric colors the program uses)."""
        return {
            "wavelets": wavelets(spec, length * check_dtype(dtype)),
            "elements_per_wavelet": elements_per_wavelet(spec, dtype),
            "sram_elements": length,
            "colors": 1,
        }

    def plan_flops(self, region: Region, length: int) -> float:
        """FLOPs of the combine steps on real data: ``(P - 1) * length`` adds."""
        return float((region.num_pes - 1) * length)

    # -- data -----------------------------------------------------------------------------------
    def random_inputs(self, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
        shape = (plan.region.height, plan.region.width) if self.per_pe_input else ()
        x = rng.standard_normal((*shape, plan.sizes["length"]))
        return {"x": x.astype(np_dtype(plan.dtype))}

    def init(self, plan: Plan, inputs: dict[str, np.ndarray], padded: int | None = None):
        """``init(x, y)`` giving each PE its vector (zero-padded to ``padded`` elements)."""
        reg = plan.region
        dt = np_dtype(plan.dtype)
        x_in = np.asarray(inputs["x"])
        length = plan.sizes["length"]
        size = padded or length

        def init(x: int, y: int) -> Memory:
            v = np.zeros(size, dtype=dt)
            if self.per_pe_input:
                v[:length] = x_in[y - reg.y, x - reg.x]
            elif (x, y) == (reg.x, reg.y):
                v[:length] = x_in
            return {KEY: v}

        return init

    @staticmethod
    def collect_all(plan: Plan):
        """``collect`` giving every PE's vector, shape ``(height, width, length)``."""
        reg = plan.region
        length = plan.sizes["length"]

        def collect(memories: dict[Coord, Memory]) -> np.ndarray:
            out = np.zeros((reg.height, reg.width, length), dtype=np_dtype(plan.dtype))
            for (x, y), mem in memories.items():
                out[y - reg.y, x - reg.x] = mem[KEY][:length]
            return out

        return collect
