"""``gemv``: ``y[m] = W[m, k] @ x[k]`` on a rectangle of PEs.

Layout on a ``Pw x Ph`` grid (``Pw = min(width, k)``, ``Ph = min(height, m)``): PE ``(x, y)``
holds the ``tm x tk`` block ``W[y, x]`` (``tm = ceil(m/Ph)``, ``tk = ceil(k/Pw)``) and the
segment ``x[x]`` of the input vector (replicated down each column, the layout a preceding
layer leaves behind). Each PE computes its partial ``tm`` sums, then each row all-reduces its
partials so that every PE of row ``y`` ends with the ``tm`` outputs of block ``y``:

* ``pipeline``: partial sums are reduced along the row as they stream: the east end sends its
  partial west, every PE on the way adds its own in a :class:`Stream` (cut-through) and
  forwards, the west end finishes the sum and multicasts it back along the row.
  ``t_local + (Pw - 1)(2R + H + O) + ny + 2R + (Pw - 1) H + ny - 1``.
* ``tree``: a ``K``-ary tree (option ``k_ary``, default 2): at level ``l`` (stride
  ``s = K**l``) the ``K - 1`` children at ``j s`` send to their leader, which adds them one
  stream at a time; then the root multicasts the result along the row.
  ``t_local + sum_l (2R + s H + c_l (O + ny)) + 2R + (Pw - 1) H + ny - 1``. A child hands
  its partials off with a background send: its compute engine is free at once (no PE sends
  and receives in the same level, so this changes no time, only what the PE could do next).

``ny = ceil(tm * bytes / 4)`` wavelets; ``R``, ``H``, ``O`` are the ramp, hop and instruction
overhead cycles. The pipeline pays the per-hop latency ``Pw - 1`` times but streams ``ny``
once; the tree pays ``log_K Pw`` levels of ``(K - 1) ny``: the tree wins for short vectors
(decode), the pipeline for long ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.errors import ConfigError
from wse_sim.hardware.cost import dtype_bytes
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import (
    Compute,
    Coord,
    Dest,
    Memory,
    Phase,
    Program,
    Recv,
    Region,
    Send,
    Stream,
)

from ._common import (
    CheckedKernel,
    PlanRequest,
    ceil_div,
    log_ceil,
    pad2,
    require_fit,
    subregion,
    tensor_wavelets,
)
from ._layout import check_algorithm, check_options, compute_cycles, np_dtype
from .base import Estimate, Plan, register

MAX_K_ARY = 12
"""Largest tree arity: the tree uses ``2 (K - 1) + 1`` colors of the fabric's 24."""

COLOR_PIPE, COLOR_BCAST = 0, 1


def _layout(width: int, height: int, m: int, k: int) -> dict[str, int]:
    pw, ph = min(width, k), min(height, m)
    return {"pw": pw, "ph": ph, "tm": ceil_div(m, ph), "tk": ceil_div(k, pw)}


def _elements(t: dict[str, int]) -> int:
    """W block, x segment, partial sums and the result."""
    return t["tm"] * t["tk"] + t["tk"] + 2 * t["tm"]


def local_compute(dtype: str, tm: int, tk: int) -> Compute:
    """The local matrix-vector product: ``min(tm, tk)`` vector instructions over ``tm * tk``
    FMACs (dot products along the longer side)."""
    b = dtype_bytes(dtype)
    e = tm * tk
    return Compute(
        kind="fmac",
        elements=e,
        dtype=dtype,
        instructions=min(tm, tk),
        sram_read_bytes=2 * b * e,
        sram_write_bytes=b * tm,
    )


def add_compute(dtype: str, tm: int) -> Compute:
    """Adding ``tm`` incoming partial sums to the local ones (inside a stream)."""
    return Compute(kind="add", elements=tm, dtype=dtype, instructions=1)


@register
class Gemv(CheckedKernel):
    name = "gemv"
    description = (
        "y = W @ x: row all-reduce of partial sums by a streaming pipeline or a K-ary tree"
    )
    algorithms = ("pipeline", "tree")
    size_names = ("m", "k")

    def check_choice(
        self, algorithm: str | None, options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        algo = check_algorithm(self.name, algorithm, self.algorithms)
        options = {k: v for k, v in options.items() if v is not None}
        check_options(f"gemv/{algo}", options, ("k_ary",) if algo == "tree" else ())
        return algo, options

    def make_plan(self, req: PlanRequest) -> Plan:
        spec, region, s, dtype, b = req.spec, req.region, req.sizes, req.dtype, req.dtype_bytes
        algo, options = req.algorithm, req.options
        m, k = s["m"], s["k"]
        opts: dict[str, Any] = {}
        if algo == "tree":
            opts["k_ary"] = _k_ary(options.get("k_ary", 2))
        t = _layout(region.width, region.height, m, k)
        need = _elements(t) * b
        require_fit(
            f"gemv/{algo} {m}x{k} {dtype}",
            spec,
            region,
            need,
            lambda w, h: _elements(_layout(w, h, m, k)) * b,
        )
        tiling = {
            "grid": [t["pw"], t["ph"]],
            "tile_m": t["tm"],
            "tile_k": t["tk"],
            "wavelets": tensor_wavelets(spec, dtype, t["tm"]),
        }
        if algo == "tree":
            tiling["levels"] = log_ceil(t["pw"], opts["k_ary"])
        return self.plan_of(req, tiling, need, 2.0 * m * k, opts)

    def sram_map(self, plan: Plan) -> np.ndarray:
        t = plan.tiling
        pw, ph = t["grid"]
        out = np.zeros(plan.region.shape)
        out[:ph, :pw] = plan.sram_bytes_per_pe
        return out

    # -- program ----------------------------------------------------------------------------------
    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        t = plan.tiling
        pw, ph = t["grid"]
        tm, tk, ny = t["tile_m"], t["tile_k"], t["wavelets"]
        grid = subregion(plan.region, pw, ph)
        functional = inputs is not None
        local = local_compute(plan.dtype, tm, tk)
        if functional:
            local.fn = _local
        phases = [Phase("local", [local])]
        if pw > 1:
            if plan.algorithm == "pipeline":
                phases.append(Phase("pipeline reduce", _pipeline_ops(plan, grid, functional)))
            else:
                phases += _tree_phases(plan, grid, functional)
            xs = np.arange(pw).reshape(1, pw)
            root = np.broadcast_to(xs == 0, grid.shape)
            bcast = [
                Send(COLOR_BCAST, ny, Dest(1, pw - 1, 0, 0), mask=root, buffer="p"),
                Recv(COLOR_BCAST, ny, src=(-xs, 0), mask=~root, buffer="p"),
            ]
            phases.append(Phase("broadcast", bcast))
        init = collect = None
        if functional:
            init, collect = self._data(plan, inputs, grid)
        return Program(
            name=f"gemv/{plan.algorithm}",
            region=grid,
            phases=phases,
            sram_bytes=plan.sram_bytes_per_pe,
            flops=plan.flops,
            init=init,
            collect=collect,
        )

    @staticmethod
    def _data(plan: Plan, inputs: dict[str, np.ndarray], grid: Region):
        t = plan.tiling
        pw, ph = t["grid"]
        tm, tk = t["tile_m"], t["tile_k"]
        m = plan.sizes["m"]
        dt = np_dtype(plan.dtype)
        w = pad2(np.asarray(inputs["W"]), ph * tm, pw * tk, dt)
        xv = np.zeros(pw * tk, dtype=dt)
        xv[: len(inputs["x"])] = inputs["x"]

        def init(x: int, y: int) -> Memory:
            gx, gy = x - grid.x, y - grid.y
            return {
                "W": w[gy * tm : (gy + 1) * tm, gx * tk : (gx + 1) * tk].copy(),
                "x": xv[gx * tk : (gx + 1) * tk].copy(),
            }

        def collect(memories: dict[Coord, Memory]) -> np.ndarray:
            """``y`` as every PE holds it, shape ``(pw, m)`` (one copy per column)."""
            out = np.zeros((pw, ph * tm))
            for (x, y), mem in memories.items():
                gx, gy = x - grid.x, y - grid.y
                out[gx, gy * tm : (gy + 1) * tm] = mem["p"]
            return out[:, :m]

        return init, collect

    # -- closed form ------------------------------------------------------------------------------
    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        t = plan.tiling
        pw, ph = t["grid"]
        tm, tk, ny = t["tile_m"], t["tile_k"], t["wavelets"]
        f = spec.fabric
        ramp, hop, o = (
            f.ramp_latency_cycles,
            f.hop_latency_cycles,
            spec.pe.instruction_overhead_cycles,
        )
        breakdown = {"local": float(compute_cycles(spec, local_compute(plan.dtype, tm, tk)))}
        if pw > 1:
            if plan.algorithm == "pipeline":
                breakdown["reduce"] = float((pw - 1) * (2 * ramp + hop + o) + ny)
                reduce_links = (pw - 1) * ny
            else:
                kk = plan.options["k_ary"]
                total = 0.0
                reduce_links = 0
                span = 1
                for _ in range(t["levels"]):
                    children = min(kk, ceil_div(pw, span)) - 1
                    total += 2 * ramp + span * hop + children * (o + ny)
                    reduce_links += _tree_level_hops(pw, span, kk) * ny
                    span *= kk
                breakdown["reduce"] = float(total)
            breakdown["broadcast"] = float(2 * ramp + (pw - 1) * hop + ny - 1)
            links = ph * (reduce_links + (pw - 1) * ny)
        else:
            links = 0
        pe_flops = np.zeros(plan.region.shape)
        pe_flops[:ph, :pw] = 2.0 * tm * tk
        if pw > 1:
            pe_flops[:ph, :pw] += self._add_flops(plan)
        return Estimate(
            cycles=sum(breakdown.values()),
            breakdown=breakdown,
            link_wavelets=float(links),
            pe_flops=pe_flops,
        )

    @staticmethod
    def _add_flops(plan: Plan) -> np.ndarray:
        """FLOPs of the reduction adds per PE of the grid's row (same for every row)."""
        t = plan.tiling
        pw = t["grid"][0]
        tm = t["tile_m"]
        adds = np.zeros(pw)
        if plan.algorithm == "pipeline":
            adds[: pw - 1] = tm
        else:
            kk = plan.options["k_ary"]
            span = 1
            for _ in range(t["levels"]):
                for x in range(0, pw, span * kk):
                    adds[x] += tm * (min(kk, ceil_div(pw - x, span)) - 1)
                span *= kk
        return adds.reshape(1, pw)

    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """``y`` replicated once per grid column, shape ``(Pw, m)``."""
        w = np.asarray(inputs["W"], dtype=np.float64)
        x = np.asarray(inputs["x"], dtype=np.float64)
        return np.tile(w @ x, (plan.tiling["grid"][0], 1))

    def random_inputs(self, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
        m, k = plan.sizes["m"], plan.sizes["k"]
        dt = np_dtype(plan.dtype)
        return {
            "W": rng.uniform(-1.0, 1.0, (m, k)).astype(dt),
            "x": rng.uniform(-1.0, 1.0, k).astype(dt),
        }


def _k_ary(value: Any) -> int:
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = -1
    if isinstance(value, bool) or k < 2 or k > MAX_K_ARY or float(value) != k:
        raise ConfigError("k_ary", value, f"use a whole number from 2 to {MAX_K_ARY}")
    return k


def _tree_level_hops(pw: int, span: int, kk: int) -> int:
    """Hops of all messages of one tree level in one row: child ``j`` sends ``j * span``."""
    hops = 0
    for x in range(0, pw, span * kk):
        for j in range(1, kk):
            if x + j * span < pw:
                hops += j * span
    return hops


# -- programs ---------------------------------------------------------------------------------
def _local(mem: Memory, x: int, y: int) -> None:
    acc = mem["W"].astype(np.float32) @ mem["x"].astype(np.float32)
    mem["p"] = acc.astype(mem["W"].dtype)


def _add(mem: Memory, x: int, y: int, incoming: Any) -> Any:
    """Add the incoming partial sums to the local ones; forward the sum."""
    total = (mem["p"].astype(np.float32) + np.asarray(incoming, np.float32)).astype(mem["p"].dtype)
    mem["p"] = total
    return total


def _pipeline_ops(plan: Plan, grid: Region, functional: bool) -> list:
    t = plan.tiling
    pw = t["grid"][0]
    tm, ny = t["tile_m"], t["wavelets"]
    xs = np.arange(pw).reshape(1, pw)
    east = np.broadcast_to(xs == pw - 1, grid.shape)
    middle = np.broadcast_to((xs > 0) & (xs < pw - 1), grid.shape)
    west = np.broadcast_to(xs == 0, grid.shape)
    fn = _add if functional else None
    west_dest = Dest.to(-1, 0)
    ops: list = [Send(COLOR_PIPE, ny, west_dest, mask=east, buffer="p")]
    if pw > 2:
        ops.append(
            Stream(
                recv=Recv(COLOR_PIPE, ny, src=(1, 0)),
                compute=add_compute(plan.dtype, tm),
                send=Send(COLOR_PIPE, ny, west_dest),
                mask=middle,
                fn=fn,
            )
        )
    ops.append(
        Stream(
            recv=Recv(COLOR_PIPE, ny, src=(1, 0)),
            compute=add_compute(plan.dtype, tm),
            mask=west,
            fn=fn,
        )
    )
    return ops


def _tree_phases(plan: Plan, grid: Region, functional: bool) -> list[Phase]:
    t = plan.tiling
    pw = t["grid"][0]
    tm, ny = t["tile_m"], t["wavelets"]
    kk = plan.options["k_ary"]
    xs = np.arange(pw).reshape(1, pw)
    fn = _add if functional else None
    phases = []
    span = 1
    for level in range(t["levels"]):
        group = span * kk
        offset = xs % group
        child = (offset > 0) & (offset % span == 0)
        which = offset // span  # child index j (0 for leaders)
        base = 2 + (level % 2) * (kk - 1)
        ops: list = [
            Send(
                base + np.maximum(which, 1) - 1,
                ny,
                Dest.to(-offset, 0),
                mask=np.broadcast_to(child, grid.shape),
                buffer="p",
                background=True,
            )
        ]
        for j in range(1, kk):
            leader = (offset == 0) & (xs + j * span < pw)
            if not leader.any():
                continue
            ops.append(
                Stream(
                    recv=Recv(base + j - 1, ny, src=(j * span, 0)),
                    compute=add_compute(plan.dtype, tm),
                    mask=np.broadcast_to(leader, grid.shape),
                    fn=fn,
                )
            )
        phases.append(Phase(f"tree level {level}", ops))
        span = group
    return phases
