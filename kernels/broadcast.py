"""``broadcast``: the region's north-west PE sends its vector to every PE of the region.

Algorithms:

* ``multicast``: one hardware multicast: the route runs along the root's row and branches down
  every column; each link carries the message once. ``message_cycles(W - 1 + H - 1, n)``.
* ``relay``: software relay: PEs of row 0 stream the vector on eastwards while storing it, then
  every row-0 PE starts the same relay down its column. ``relay(W) + relay(H)``.
"""

from __future__ import annotations

import numpy as np

from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Phase, Program

from . import _collective_cost as cc
from ._collective_base import KEY, VectorCollective
from ._collective_ops import Line, region_multicast, relay
from .base import Estimate, Plan, register

COLOR = 0


@register
class Broadcast(VectorCollective):
    name = "broadcast"
    description = "root PE to every PE of the region: hardware multicast tree or software relay"
    algorithms = ("multicast", "relay")
    per_pe_input = False

    def plan_flops(self, region, length) -> float:
        return 0.0

    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        reg = plan.region
        n = plan.tiling["wavelets"]
        length = plan.sizes["length"]
        if plan.algorithm == "multicast":
            phases = [Phase("multicast", region_multicast(reg, n, COLOR, KEY))]
        else:
            phases = [
                Phase("row relay", relay(Line(reg, "x", True), n, length, plan.dtype, COLOR, KEY)),
                Phase("column relay", relay(Line(reg, "y"), n, length, plan.dtype, COLOR, KEY)),
            ]
        return Program(
            name=f"broadcast/{plan.algorithm}",
            region=reg,
            phases=phases,
            sram_bytes=plan.sram_bytes_per_pe,
            flops=0.0,
            init=self.init(plan, inputs) if inputs is not None else None,
            collect=self.collect_all(plan) if inputs is not None else None,
        )

    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        reg = plan.region
        n = plan.tiling["wavelets"]
        w, h = reg.width, reg.height
        if plan.algorithm == "multicast":
            breakdown = {"multicast": cc.multicast_cycles(spec, (w - 1) + (h - 1), n)}
        else:
            p = cc.stream_interval(spec, "copy", plan.sizes["length"], plan.dtype, n)
            breakdown = {
                "row relay": cc.relay_cycles(spec, w, n, p),
                "column relay": cc.relay_cycles(spec, h, n, p),
            }
        return Estimate(
            cycles=sum(breakdown.values()),
            breakdown=breakdown,
            link_wavelets=float(n * (reg.num_pes - 1)),
            pe_flops=np.zeros(reg.shape),
        )

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        reg = plan.region
        x = np.asarray(inputs["x"])
        return np.broadcast_to(x, (reg.height, reg.width, x.shape[-1])).copy()
