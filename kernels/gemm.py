"""``gemm``: ``C[m, n] = A[m, k] @ B[k, n]`` on a rectangle of PEs.

Algorithms (each in its own module; closed forms in docs/kernels.md):

* ``summa`` (:mod:`.gemm_summa`): row and column multicasts of K-panels, by default pipelined
  (the owners send one step ahead in the background; option ``pipelined``).
* ``cannon`` (:mod:`.gemm_shift`): skew, then cyclic shifts of A west and B north, sent in the
  background while the current tiles are multiplied; the wrap-around transfer spans the whole
  row or column.
* ``meshgemm`` (:mod:`.gemm_shift`): WaferLLM's interleaved cyclic shift: the ring visits even
  offsets eastwards and odd offsets westwards, so every transfer is at most 2 hops.
* ``systolic-os`` (:mod:`.gemm_systolic`): classic output-stationary systolic array, one MAC per
  PE per cycle, operands multicast in from west and north feeder PEs, fold by fold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Program

from ._common import CheckedKernel, PlanRequest, require_fit
from ._layout import check_algorithm, check_options, np_dtype
from .base import Estimate, Plan, register
from .gemm_base import GemmAlgorithm
from .gemm_shift import Cannon, MeshGemm
from .gemm_summa import Summa
from .gemm_systolic import SystolicOS

ALGORITHMS: dict[str, GemmAlgorithm] = {
    a.name: a for a in (Summa(), Cannon(), MeshGemm(), SystolicOS())
}


@register
class Gemm(CheckedKernel):
    name = "gemm"
    description = "C = A @ B: SUMMA, Cannon, MeshGEMM (interleaved shifts) or systolic-os"
    algorithms = tuple(ALGORITHMS)
    size_names = ("m", "n", "k")

    def check_choice(
        self, algorithm: str | None, options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        algo_name = check_algorithm(self.name, algorithm, self.algorithms)
        options = {k: v for k, v in options.items() if v is not None}
        check_options(f"gemm/{algo_name}", options, ALGORITHMS[algo_name].options)
        return algo_name, options

    def make_plan(self, req: PlanRequest) -> Plan:
        algo_name, options, dtype, region = req.algorithm, req.options, req.dtype, req.region
        s = req.sizes
        m, n, k = s["m"], s["n"], s["k"]
        tiling = ALGORITHMS[algo_name].tiling(req.spec, region, m, n, k, dtype, **options)
        bytes_for = tiling.pop("bytes_for")
        need = int(tiling["sram_bytes"])
        require_fit(
            f"gemm/{algo_name} {m}x{n}x{k} {dtype}",
            req.spec,
            region,
            need,
            bytes_for,
            square=algo_name in ("cannon", "meshgemm"),
        )
        return self.plan_of(req, tiling, need, 2.0 * m * n * k, dict(options))

    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        return ALGORITHMS[plan.algorithm].program(plan, spec, inputs)

    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        return ALGORITHMS[plan.algorithm].estimate(plan, spec)

    def sram_map(self, plan: Plan) -> np.ndarray:
        """Bytes allocated per PE of the plan's region."""
        return ALGORITHMS[plan.algorithm].sram_map(plan)

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        a = np.asarray(inputs["A"], dtype=np.float64)
        b = np.asarray(inputs["B"], dtype=np.float64)
        return a @ b

    def random_inputs(self, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
        m, n, k = plan.sizes["m"], plan.sizes["n"], plan.sizes["k"]
        dt = np_dtype(plan.dtype)
        return {
            "A": rng.uniform(-1.0, 1.0, (m, k)).astype(dt),
            "B": rng.uniform(-1.0, 1.0, (k, n)).astype(dt),
        }
