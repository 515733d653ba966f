"""GEMM by SUMMA: row and column multicasts of K-panels, then a local tile update.

Layout on a ``Pw x Ph`` grid (``Pw = min(width, n)``, ``Ph = min(height, m)``): PE ``(x, y)``
owns the output tile ``C[y, x]`` of ``tm x tn`` (``tm = ceil(m / Ph)``, ``tn = ceil(n / Pw)``).
``K`` is cut into ``S = min(k, max(Pw, Ph))`` panels of ``kb = ceil(k / S)``; A's panel ``s`` of
row block ``y`` lives on PE ``(s mod Pw, y)``, B's panel ``s`` of column block ``x`` on PE
``(x, s mod Ph)``.

Step ``s``: the owner column multicasts its A panel along every row (one multicast tree per row),
the owner row multicasts its B panel down every column, then every PE does
``C += A_s @ B_s``.

Option ``pipelined`` (default true): the owners multicast in the background, one step ahead:
during step ``s`` the owners of step ``s + 1`` issue their sends (``O`` cycles each) and the
panels travel while everybody receives step ``s``'s panels and multiplies them, so the
multicast latency hides behind the tile product. A receiver takes a panel (``n - 1`` cycles
when it is already waiting in the fabric) just before it needs it, so one receive buffer per
operand still suffices: the next panel waits in the routers' buffers and, beyond them, in its
owner's SRAM. With ``pipelined=false`` the owners send (blocking) at the step itself, and
every step pays the multicast latency.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.hardware.cost import dtype_bytes
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Dest, Memory, Phase, Program, Recv, Region, Send

from ._common import bool_option, ceil_div, matmul_compute, matmul_cycles, tensor_wavelets
from .base import Estimate, Plan
from .gemm_base import (
    GemmAlgorithm,
    collect_blocks,
    embed,
    grid_of,
    padded_operands,
    tile_update,
)


def _layout(width: int, height: int, m: int, n: int, k: int) -> dict[str, int]:
    pw, ph = min(width, n), min(height, m)
    steps = min(k, max(pw, ph))
    return {
        "pw": pw,
        "ph": ph,
        "tm": ceil_div(m, ph),
        "tn": ceil_div(n, pw),
        "steps": steps,
        "kb": ceil_div(k, steps),
        "own_a": ceil_div(steps, pw),
        "own_b": ceil_div(steps, ph),
    }


def _elements(t: dict[str, int]) -> int:
    """Elements held by the busiest PE: owned panels, C, and one receive buffer per operand."""
    tm, tn, kb = t["tm"], t["tn"], t["kb"]
    return tm * kb * t["own_a"] + kb * tn * t["own_b"] + tm * tn + tm * kb + kb * tn


class Summa(GemmAlgorithm):
    name = "summa"
    options = ("pipelined",)

    def tiling(
        self, spec: WaferSpec, region: Region, m: int, n: int, k: int, dtype: str, **options: Any
    ) -> dict[str, Any]:
        pipelined = bool_option("pipelined", options.get("pipelined", True))
        t = _layout(region.width, region.height, m, n, k)
        b = dtype_bytes(dtype)
        return {
            "grid": [t["pw"], t["ph"]],
            "pipelined": pipelined,
            "tile_m": t["tm"],
            "tile_n": t["tn"],
            "panel_k": t["kb"],
            "steps": t["steps"],
            "wavelets_a": tensor_wavelets(spec, dtype, t["tm"] * t["kb"]),
            "wavelets_b": tensor_wavelets(spec, dtype, t["kb"] * t["tn"]),
            "sram_bytes": _elements(t) * b,
            "bytes_for": lambda w, h: _elements(_layout(w, h, m, n, k)) * b,
        }

    def sram_map(self, plan: Plan) -> np.ndarray:
        t = plan.tiling
        pw, ph = t["grid"]
        tm, tn, kb, s = t["tile_m"], t["tile_n"], t["panel_k"], t["steps"]
        own_a = np.array([len(range(x, s, pw)) for x in range(pw)]).reshape(1, pw)
        own_b = np.array([len(range(y, s, ph)) for y in range(ph)]).reshape(ph, 1)
        elems = tm * kb * own_a + kb * tn * own_b + tm * tn + tm * kb + kb * tn
        return embed(plan, elems * dtype_bytes(plan.dtype))

    # -- program ----------------------------------------------------------------------------------
    def program(self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None) -> Program:
        t = plan.tiling
        grid = grid_of(plan)
        pw, ph = t["grid"]
        tm, tn, kb, steps = t["tile_m"], t["tile_n"], t["panel_k"], t["steps"]
        na, nb = t["wavelets_a"], t["wavelets_b"]
        xs = np.arange(pw).reshape(1, pw)
        ys = np.arange(ph).reshape(ph, 1)
        functional = inputs is not None
        pipelined = t.get("pipelined", False)

        def sends(s: int) -> list:
            """The owners' multicasts of step ``s`` (background when pipelined)."""
            ox, oy = s % pw, s % ph
            ops: list = []
            if pw > 1:
                mask = np.broadcast_to(xs == ox, grid.shape)
                dest = Dest(-ox, pw - 1 - ox, 0, 0)
                ops.append(Send(s % 2, na, dest, mask=mask, buffer=f"A{s}", background=pipelined))
            if ph > 1:
                mask = np.broadcast_to(ys == oy, grid.shape)
                dest = Dest(0, 0, -oy, ph - 1 - oy)
                ops.append(
                    Send(2 + s % 2, nb, dest, mask=mask, buffer=f"B{s}", background=pipelined)
                )
            return ops

        def recvs(s: int) -> list:
            ox, oy = s % pw, s % ph
            ops: list = []
            if pw > 1:
                mask = np.broadcast_to(xs != ox, grid.shape)
                ops.append(Recv(s % 2, na, src=(ox - xs, 0), mask=mask, buffer="Ain"))
            if ph > 1:
                mask = np.broadcast_to(ys != oy, grid.shape)
                ops.append(Recv(2 + s % 2, nb, src=(0, oy - ys), mask=mask, buffer="Bin"))
            return ops

        phases = [Phase("prefetch", sends(0))] if pipelined else []
        for s in range(steps):
            if pipelined:
                ops = (sends(s + 1) if s + 1 < steps else []) + recvs(s)
            else:  # each owner sends, then the others receive
                first = sends(s)
                rest = recvs(s)
                ops = first[:1] + rest[:1] + first[1:] + rest[1:]
            ops.append(
                matmul_compute(plan.dtype, tm, tn, kb, fn=_update(s) if functional else None)
            )
            phases.append(Phase(f"step {s}", ops))
        init = collect = None
        if inputs is not None:
            init = self._init(plan, inputs, grid)
            collect = collect_blocks(plan, grid, tm, tn, lambda x, y: (y, x))
        return self.build_program(plan, grid, phases, init, collect)

    @staticmethod
    def _init(plan: Plan, inputs: dict[str, np.ndarray], grid: Region):
        t = plan.tiling
        pw, ph = t["grid"]
        tm, tn, kb, steps = t["tile_m"], t["tile_n"], t["panel_k"], t["steps"]
        a, b = padded_operands(plan, inputs, ph * tm, steps * kb, pw * tn)

        def init(x: int, y: int) -> Memory:
            gx, gy = x - grid.x, y - grid.y
            mem: Memory = {"C": np.zeros((tm, tn), dtype=a.dtype)}
            for s in range(gx, steps, pw):
                mem[f"A{s}"] = a[gy * tm : (gy + 1) * tm, s * kb : (s + 1) * kb].copy()
            for s in range(gy, steps, ph):
                mem[f"B{s}"] = b[s * kb : (s + 1) * kb, gx * tn : (gx + 1) * tn].copy()
            return mem

        return init

    # -- closed form ------------------------------------------------------------------------------
    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        t = plan.tiling
        pw, ph = t["grid"]
        tm, tn, kb, steps = t["tile_m"], t["tile_n"], t["panel_k"], t["steps"]
        na, nb = t["wavelets_a"], t["wavelets_b"]
        f = spec.fabric
        comp = matmul_cycles(spec, plan.dtype, tm, tn, kb)
        if t.get("pipelined", False):
            breakdown = _pipelined_breakdown(spec, pw, ph, steps, na, nb, comp)
        else:
            # Per step and operand: the farthest receiver's last wavelet lands
            # 2R + hops*H + n - 1 cycles after its owner starts; see docs/kernels.md.
            lat_a = (2 * f.ramp_latency_cycles + f.hop_latency_cycles - 1) if pw > 1 else 0
            lat_b = (2 * f.ramp_latency_cycles + f.hop_latency_cycles - 1) if ph > 1 else 0
            comm_a = na if pw > 1 else 0
            comm_b = nb if ph > 1 else 0
            reach = (pw - 1 + ph - 1) * f.hop_latency_cycles
            breakdown = {
                "compute": float(steps * comp),
                "communication": float(steps * (comm_a + comm_b)),
                "latency": float(steps * (lat_a + lat_b) + reach),
            }
        pe_flops = np.zeros((ph, pw)) + 2.0 * tm * tn * kb * steps
        links = steps * (ph * (pw - 1) * na + pw * (ph - 1) * nb)
        return Estimate(
            cycles=sum(breakdown.values()),
            breakdown=breakdown,
            link_wavelets=float(links),
            pe_flops=embed(plan, pe_flops),
        )


def _pipelined_pe(
    spec: WaferSpec, pw: int, ph: int, steps: int, na: int, nb: int, x: int, y: int
) -> tuple[float, float]:
    """``(communication, latency)`` cycles of PE ``(x, y)`` in pipelined SUMMA.

    Communication: ``n - 1`` per panel it receives (sent a step earlier, the panel waits in
    the fabric) and ``O`` per panel it owns (a background send). Latency: only step 0 waits
    for a multicast; its head reaches the PE ``2R + d H`` after its owner sends it (``d``
    hops), and the owners send at cycle 0 except B's panel on the corner PE ``(0, 0)``, which
    leaves its ramp after A's (``max(O, nA)``).
    """
    f = spec.fabric
    o = spec.pe.instruction_overhead_cycles
    ramp, hop = f.ramp_latency_cycles, f.hop_latency_cycles
    do_a, do_b = pw > 1, ph > 1
    own_a = len(range(x, steps, pw)) if do_a else 0
    own_b = len(range(y, steps, ph)) if do_b else 0
    recv_a = steps - own_a if do_a else 0
    recv_b = steps - own_b if do_b else 0
    comm = recv_a * (na - 1) + recv_b * (nb - 1) + o * (own_a + own_b)
    # Step 0: the sends the PE issues first (prologue and step 1's), then its receives.
    t = o * ((do_a and x == 0) + (do_b and y == 0))
    if steps > 1:
        t += o * ((do_a and x == 1 % pw) + (do_b and y == 1 % ph))
    before = t
    if do_a and x != 0:
        t = max(t, 2 * ramp + x * hop) + na - 1
    if do_b and y != 0:
        sent = max(o, na) if do_a and x == 0 else 0
        t = max(t, sent + 2 * ramp + y * hop) + nb - 1
    step0 = before + (na - 1) * (do_a and x != 0) + (nb - 1) * (do_b and y != 0)
    return float(comm), float(t - step0)


def _pipelined_breakdown(
    spec: WaferSpec, pw: int, ph: int, steps: int, na: int, nb: int, comp: int
) -> dict[str, float]:
    """Closed form of pipelined SUMMA (docs/kernels.md): the slowest of the PEs that receive
    the most or wait the longest at step 0: the south-east corner (farthest from the first
    owners, fewest panels owned: ``own(x)`` falls with ``x``) and the ends of column 0 and row
    0 (waiting behind the corner's two sends). Later steps find their panels waiting."""
    best = (0.0, 0.0)
    for x, y in {(pw - 1, ph - 1), (0, ph - 1), (pw - 1, 0)}:
        cand = _pipelined_pe(spec, pw, ph, steps, na, nb, x, y)
        if sum(cand) > sum(best):
            best = cand
    return {
        "compute": float(steps * comp),
        "communication": best[0],
        "latency": best[1],
    }


def _update(s: int):
    key_a, key_b = f"A{s}", f"B{s}"

    def fn(mem: Memory, x: int, y: int) -> None:
        a = mem[key_a] if key_a in mem else mem["Ain"]
        b = mem[key_b] if key_b in mem else mem["Bin"]
        mem["C"] = tile_update(mem["C"], a, b)

    return fn
