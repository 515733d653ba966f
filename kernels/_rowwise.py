"""Shared machinery of the row-wise kernels (softmax, layernorm, rmsnorm) over a ``[rows, cols]``
matrix.

Layout: rows are split evenly over the region's PE rows and each row's columns over its PE
columns, so PE ``(x, y)`` holds a tile of ``R_y x C_x`` elements (the first PEs get one more when
the split is uneven). A kernel is a list of stages:

* :class:`Local`: one vector instruction per tile row over the whole tile (``R_y * C_x``
  element-ops of one kind);
* :class:`RowReduce`: per-row statistics (``width`` fp32 values per row) combined across the PEs
  of a PE row with a chain or tree reduce into the row's first PE, a few per-row vector ops there
  (``root``), and a hardware multicast of the result back along the PE row.

The program and the closed-form estimate are both built from the same stage list. Statistics are
fp32 (mixed precision), tiles use the kernel's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wse_sim.errors import PlanError
from wse_sim.hardware.cost import dtype_bytes, flops
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Compute, Coord, Memory, Op, Phase, Program, Region

from . import _collective_cost as cc
from ._collective_ops import Line, chain_reduce, line_multicast, tree_levels, tree_reduce
from ._common import CheckedKernel, PlanRequest, bookkeeping, ceil_div, require_fit
from ._layout import (
    check_algorithm,
    check_options,
    compute_cycles,
    np_dtype,
    offsets,
    split,
)
from .base import Estimate, Plan

STATS_BYTES = 4
"""Statistics are fp32."""

LocalFn = Callable[[Memory, dict[str, Any]], None]
"""Functional update of one PE's memory (``x``, ``y`` tiles, ``s`` statistics, ``g``/``b``)."""


@dataclass(frozen=True)
class Local:
    """One vector op over the PE's whole tile: ``reads``/``writes`` tile-sized SRAM operands."""

    kind: str
    reads: int
    writes: int
    fn: LocalFn | None = None


@dataclass(frozen=True)
class RowReduce:
    """Combine ``width`` fp32 statistics per row across a PE row, run ``root`` (``(kind,
    ops per row)``) at the row's first PE, then multicast ``width_out`` values per row back."""

    combine: str
    width: int
    root: tuple[tuple[str, int], ...] = ()
    width_out: int = 1
    fn: LocalFn | None = None


Stage = Local | RowReduce


class RowwiseKernel(CheckedKernel):
    """Base of the row-wise kernels: subclasses give ``stages``, ``vectors`` and ``reference``."""

    algorithms = ("tree", "chain")
    """How statistics are reduced across a PE row; the tree is the default because per-row
    statistics are short (``rows / H`` values), so latency, not bandwidth, decides."""
    size_names = ("rows", "cols")
    option_defaults: dict[str, Any] = {}
    vectors: tuple[str, ...] = ()
    """Per-column parameter vectors (``g`` gamma, ``b`` beta), each of ``cols`` elements."""
    stats_per_row: int = 1
    """fp32 statistics held per row (the widest :class:`RowReduce`)."""

    def stages(self, plan: Plan) -> list[Stage]:
        raise NotImplementedError

    # -- plan ---------------------------------------------------------------------------------
    def check_choice(
        self, algorithm: str | None, options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        algo = check_algorithm(self.name, algorithm, self.algorithms)
        check_options(self.name, options, tuple(self.option_defaults))
        return algo, {k: type(d)(options.get(k, d)) for k, d in self.option_defaults.items()}

    def make_plan(self, req: PlanRequest) -> Plan:
        spec, region, dtype = req.spec, req.region, req.dtype
        algo, opts = req.algorithm, req.options
        rows, cols = req.sizes["rows"], req.sizes["cols"]
        if region.height > rows or region.width > cols:
            raise PlanError(
                f"{self.name}: a {region.width}x{region.height} region leaves PEs without data "
                f"for {rows} rows x {cols} cols; use a region at most "
                f"{min(region.width, cols)}x{min(region.height, rows)} PEs"
            )
        r_max = ceil_div(rows, region.height)
        c_max = ceil_div(cols, region.width)
        need = self.sram_bytes(r_max, c_max, dtype)

        def bytes_for(width: int, height: int) -> int:
            return self.sram_bytes(ceil_div(rows, height), ceil_div(cols, width), dtype)

        require_fit(self.name, spec, region, need, bytes_for)
        colors = self.colors(region, algo)
        if colors > spec.fabric.colors:
            raise PlanError(
                f"{self.name}/{algo}: needs {colors} colors but the fabric has "
                f"{spec.fabric.colors} (fabric.colors); use algorithm chain"
            )
        tiling = {"rows_per_pe": r_max, "cols_per_pe": c_max, "colors": colors}
        flops = float(self.flops_per_element * rows * cols)
        return self.plan_of(req, tiling, need, flops, opts)

    @property
    def flops_per_element(self) -> int:
        from ._flops import flops_per_element

        return flops_per_element(self.name)

    def sram_bytes(self, r: Any, c: Any, dtype: str) -> Any:
        """Input and output tiles, the per-column vectors and the fp32 statistics (bytes) for
        ``r x c`` tiles (ints, or per-PE arrays)."""
        b = dtype_bytes(dtype)
        return 2 * r * c * b + len(self.vectors) * c * b + self.stats_per_row * r * STATS_BYTES

    @staticmethod
    def colors(region: Region, algorithm: str) -> int:
        """Reduce colors (one per chain, one per tree level) plus one for the multicast."""
        return (1 if algorithm == "chain" else tree_levels(region.width)) + 1

    # -- layout ---------------------------------------------------------------------------------
    @staticmethod
    def tile_shape(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """``(R, C)``: rows and columns of each PE's tile, arrays of shape ``region.shape``."""
        reg = plan.region
        r = split(plan.sizes["rows"], reg.height)
        c = split(plan.sizes["cols"], reg.width)
        return (
            np.broadcast_to(r[:, None], reg.shape).copy(),
            np.broadcast_to(c[None, :], reg.shape).copy(),
        )

    def sram_map(self, plan: Plan) -> np.ndarray:
        """Bytes each PE holds for its own tile (:meth:`sram_bytes` of ``R_y x C_x``)."""
        R, C = self.tile_shape(plan)
        return self.sram_bytes(R, C, plan.dtype)

    # -- program ------------------------------------------------------------------------------
    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        reg = plan.region
        R, C = self.tile_shape(plan)
        functional = inputs is not None
        rows = Line(reg, "x")
        kw = tree_levels(reg.width)
        reduce_colors = range(1) if plan.algorithm == "chain" else range(kw)
        mcast_color = len(reduce_colors)
        phases: list[Phase] = []
        for i, st in enumerate(self.stages(plan)):
            ops: list[Op] = []
            if isinstance(st, Local):
                op = _local_compute(st, R, C, plan.dtype)
                if functional and st.fn:
                    op.fn = _bind(st.fn, plan.options)
                phases.append(Phase(f"{i}:{st.kind}", [op]))
                continue
            n = self._stat_wavelets(spec, R, st.width)
            el = st.width * R
            if plan.algorithm == "chain":
                ops += chain_reduce(rows, n, el, "fp32", st.combine, reduce_colors[0], "s")
            else:
                ops += tree_reduce(rows, n, el, "fp32", st.combine, reduce_colors, "s")
            root = rows.pos == 0
            root_ops = _root_computes(st, R, root)
            if functional and st.fn:
                bound = _bind(st.fn, plan.options)
                if root_ops:
                    root_ops[0].fn = bound
                else:
                    root_ops.append(bookkeeping(bound, mask=root))
            ops += root_ops
            n_out = self._stat_wavelets(spec, R, st.width_out)
            ops += line_multicast(rows, n_out, mcast_color, "s")
            phases.append(Phase(f"{i}:row {st.combine}", ops))
        _, _, pe_flops = self._parts(plan, spec)
        return Program(
            name=f"{self.name}/{plan.algorithm}",
            region=reg,
            phases=phases,
            sram_bytes=self.sram_map(plan),
            flops=float(pe_flops.sum()),
            init=self._init(plan, inputs) if functional else None,
            collect=self._collect(plan) if functional else None,
        )

    @staticmethod
    def _stat_wavelets(spec: WaferSpec, R: Any, width: int) -> Any:
        """Wavelets carrying ``width`` fp32 values per row for ``R`` rows (int or array)."""
        return -(-(width * R * STATS_BYTES) // spec.fabric.link_bytes_per_cycle)

    # -- estimate -----------------------------------------------------------------------------
    def _parts(self, plan: Plan, spec: WaferSpec) -> tuple[dict[str, float], float, np.ndarray]:
        """``(breakdown, link wavelets, per-PE FLOPs)``: the busiest PE's tile (``R_0 x C_0``)
        through every stage, all PEs starting each stage together."""
        reg = plan.region
        R, C = self.tile_shape(plan)
        r0, c0 = int(R.max()), int(C.max())
        w = reg.width
        breakdown: dict[str, float] = {}
        links = 0.0
        pe_flops = np.zeros(reg.shape)
        recv_count = cc.tree_receptions(w)[None, :] if plan.algorithm == "tree" else None
        for i, st in enumerate(self.stages(plan)):
            if isinstance(st, Local):
                breakdown[f"{i}:{st.kind}"] = float(
                    compute_cycles(spec, _local_compute(st, r0, c0, plan.dtype))
                )
                pe_flops += flops(st.kind, 1) * R * C
                continue
            n = self._stat_wavelets(spec, r0, st.width)
            p = cc.stream_interval(spec, st.combine, st.width * r0, "fp32", n)
            n_rows = self._stat_wavelets(spec, R[:, 0], st.width)
            if plan.algorithm == "chain":
                red = cc.chain_cycles(spec, w, n, p)
                receptions = np.ones(reg.shape)
                receptions[:, -1] = 0
                links += float(np.sum(n_rows)) * (w - 1)
            else:
                red = cc.tree_cycles(spec, w, n, p)
                receptions = np.broadcast_to(recv_count, reg.shape)
                links += float(np.sum(n_rows)) * cc.tree_hops(w)
            if w == 1:
                receptions = np.zeros(reg.shape)
            pe_flops += receptions * flops(st.combine, 1) * st.width * R
            root_cycles = sum(compute_cycles(spec, c) for c in _root_computes(st, r0, None))
            for kind, per_row in st.root:
                pe_flops[:, 0] += flops(kind, per_row) * R[:, 0]
            n_out = self._stat_wavelets(spec, r0, st.width_out)
            mcast = cc.multicast_cycles(spec, w - 1, n_out)
            links += float(np.sum(self._stat_wavelets(spec, R[:, 0], st.width_out))) * (w - 1)
            breakdown[f"{i}:row {st.combine}"] = red + root_cycles + mcast
        return breakdown, links, pe_flops

    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        breakdown, links, pe_flops = self._parts(plan, spec)
        return Estimate(sum(breakdown.values()), breakdown, links, pe_flops)

    # -- data -----------------------------------------------------------------------------------
    def random_inputs(self, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
        dt = np_dtype(plan.dtype)
        rows, cols = plan.sizes["rows"], plan.sizes["cols"]
        out = {"x": (rng.standard_normal((rows, cols)) * 2.0 + 0.5).astype(dt)}
        if "g" in self.vectors:
            out["g"] = (1.0 + 0.1 * rng.standard_normal(cols)).astype(dt)
        if "b" in self.vectors:
            out["b"] = (0.1 * rng.standard_normal(cols)).astype(dt)
        return out

    def _bounds(self, plan: Plan):
        reg = plan.region
        ro = offsets(split(plan.sizes["rows"], reg.height))
        co = offsets(split(plan.sizes["cols"], reg.width))

        def bounds(x: int, y: int) -> tuple[int, int, int, int]:
            i, j = y - reg.y, x - reg.x
            return int(ro[i]), int(ro[i + 1]), int(co[j]), int(co[j + 1])

        return bounds

    def _init(self, plan: Plan, inputs: dict[str, np.ndarray]):
        dt = np_dtype(plan.dtype)
        x_in = np.asarray(inputs["x"]).astype(dt)
        vecs = {v: np.asarray(inputs[v]).astype(dt) for v in self.vectors}
        bounds = self._bounds(plan)

        def init(x: int, y: int) -> Memory:
            r0, r1, c0, c1 = bounds(x, y)
            mem: Memory = {"x": x_in[r0:r1, c0:c1].copy(), "cols": plan.sizes["cols"], "dt": dt}
            mem.update({v: a[c0:c1].copy() for v, a in vecs.items()})
            return mem

        return init

    def _collect(self, plan: Plan):
        bounds = self._bounds(plan)
        dt = np_dtype(plan.dtype)

        def collect(memories: dict[Coord, Memory]) -> np.ndarray:
            out = np.zeros((plan.sizes["rows"], plan.sizes["cols"]), dtype=dt)
            for xy, mem in memories.items():
                r0, r1, c0, c1 = bounds(*xy)
                out[r0:r1, c0:c1] = mem["y"]
            return out

        return collect


def _local_compute(st: Local, R: Any, C: Any, dtype: str) -> Compute:
    """One instruction per tile row over the ``R x C`` tile (ints, or per-PE arrays)."""
    tile = R * C
    b = dtype_bytes(dtype)
    return Compute(
        st.kind,
        tile,
        dtype,
        instructions=R,
        sram_read_bytes=st.reads * tile * b,
        sram_write_bytes=st.writes * tile * b,
    )


def _root_computes(st: RowReduce, R: Any, mask: np.ndarray | None) -> list[Compute]:
    """The per-row fp32 instructions the row's first PE runs after a reduction."""
    return [Compute(kind, per_row * R, "fp32", mask=mask) for kind, per_row in st.root]


def _bind(fn: LocalFn, options: dict[str, Any]) -> Callable[[Memory, int, int], None]:
    def bound(mem: Memory, x: int, y: int) -> None:
        fn(mem, options)

    return bound
