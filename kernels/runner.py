"""Run one kernel on one engine and turn the outcome into a :class:`KernelResult`.

``des`` executes the kernel's program on the discrete-event engine; ``analytic`` evaluates the
kernel's closed form (instant at any size). ``check=True`` also runs the program functionally
(on the DES, with random inputs) and compares its output with the kernel's numpy reference.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from wse_sim.errors import ConfigError
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Region
from wse_sim.result.kernel_result import KernelResult
from wse_sim.result.metrics import (
    compute_utilization,
    existing_links_mask,
    link_utilization,
    sram_occupancy,
)

from ._common import allclose
from .base import Estimate, Kernel, Plan
from .registry import get_kernel

ENGINES = ("des", "analytic")


def whole_mesh(spec: WaferSpec) -> Region:
    return Region(0, 0, spec.mesh.width, spec.mesh.height)


def as_region(spec: WaferSpec, region: Region | tuple[int, int, int, int] | None) -> Region:
    """``region`` as a :class:`Region` inside the mesh (default: the whole mesh)."""
    if region is None:
        return whole_mesh(spec)
    if not isinstance(region, Region):
        try:
            x, y, w, h = (int(v) for v in region)
            region = Region(x, y, w, h)
        except (TypeError, ValueError):
            raise ConfigError(
                "region", region, "use (x, y, width, height) with x, y >= 0 and sizes > 0"
            ) from None
    if region.x + region.width > spec.mesh.width or region.y + region.height > spec.mesh.height:
        raise ConfigError(
            "region",
            f"{region.width}x{region.height}+{region.x}+{region.y}",
            f"must lie inside the {spec.mesh.width}x{spec.mesh.height} mesh",
        )
    return region


def clean_sizes(kernel: Kernel, sizes: dict[str, Any]) -> dict[str, int]:
    """Drop unset sizes; reject names the kernel does not take."""
    out = {k: v for k, v in sizes.items() if v is not None}
    for name in out:
        if name not in kernel.size_names:
            takes = ", ".join(f"--{n.replace('_', '-')}" for n in kernel.size_names)
            raise ConfigError(name, out[name], f"{kernel.name} takes sizes {takes}")
    return out


def run_kernel(
    name: str,
    spec: WaferSpec,
    sizes: dict[str, Any],
    algorithm: str | None = None,
    dtype: str = "fp16",
    engine: str = "des",
    check: bool = False,
    region: Region | tuple[int, int, int, int] | None = None,
    seed: int = 0,
    record_spans: bool = False,
    **options: Any,
) -> KernelResult:
    """Plan kernel ``name`` on ``region`` (default: the whole mesh) and run it on ``engine``.

    Raises :class:`wse_sim.errors.WseSimError` subclasses for bad names, sizes or options, a
    plan that does not fit, or a deadlock.
    """
    kernel = get_kernel(name)
    if engine not in ENGINES:
        raise ConfigError("engine", engine, f"use one of {', '.join(ENGINES)}")
    reg = as_region(spec, region)
    plan = kernel.plan(spec, reg, clean_sizes(kernel, sizes), dtype, algorithm, **options)
    est = kernel.estimate(plan, spec)
    wall = time.perf_counter()
    status, error = "skipped", None
    inputs = None
    if check:
        inputs = kernel.random_inputs(plan, np.random.default_rng(seed))
    if engine == "des":
        from wse_sim.engine.des import run_program

        program = kernel.program(plan, spec, inputs)
        res = run_program(program, spec, functional=check, record_spans=record_spans)
        if check:
            status, error = _compare(kernel, plan, inputs, res.output)
        arrays = _crop(reg, res.pe_flops, res.pe_busy_cycles, res.pe_sram_peak_bytes)
        links = res.link_wavelets[:, reg.y : reg.y + reg.height, reg.x : reg.x + reg.width]
        result = _result(spec, plan, engine, res.cycles, est, *arrays, links)
        result.spans = res.spans
    else:
        if check:
            from wse_sim.engine.des import run_program

            res = run_program(kernel.program(plan, spec, inputs), spec, functional=True)
            status, error = _compare(kernel, plan, inputs, res.output)
        sram = _sram_map(kernel, plan)
        result = _result(spec, plan, engine, est.cycles, est, est.pe_flops, None, sram, None)
    result.check = status
    result.check_error = error
    result.wall_seconds = time.perf_counter() - wall
    return result


def _compare(kernel: Kernel, plan: Plan, inputs: Any, output: Any) -> tuple[str, float | None]:
    ref = np.asarray(kernel.reference(plan, inputs), dtype=np.float64)
    if output is None:
        return "failed", None
    out = np.asarray(output, dtype=np.float64)
    if out.shape != ref.shape:
        return "failed", None
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    err = float(np.abs(out - ref).max(initial=0.0)) / scale
    return ("passed" if allclose(out, ref, plan.dtype) else "failed"), err


def _crop(reg: Region, *arrays: np.ndarray) -> list[np.ndarray]:
    return [a[reg.y : reg.y + reg.height, reg.x : reg.x + reg.width] for a in arrays]


def _sram_map(kernel: Kernel, plan: Plan) -> np.ndarray:
    """Per-PE bytes from the kernel's ``sram_map`` when it has one, else the busiest PE's
    footprint on every PE (an upper bound)."""
    fn = getattr(kernel, "sram_map", None)
    if fn is not None:
        return np.asarray(fn(plan), dtype=float)
    return np.full(plan.region.shape, float(plan.sram_bytes_per_pe))


def _result(
    spec: WaferSpec,
    plan: Plan,
    engine: str,
    cycles: float,
    est: Estimate,
    pe_flops: np.ndarray,
    pe_busy: np.ndarray | None,
    sram: np.ndarray,
    links: np.ndarray | None,
) -> KernelResult:
    reg = plan.region
    peak = spec.peak_flops_per_cycle(plan.dtype)
    seconds = spec.seconds(cycles)
    comp = compute_utilization(pe_flops, peak, cycles)
    if links is not None:
        mask = existing_links_mask(reg.height, reg.width)
        lu = link_utilization(links, cycles)[mask]
        link_mean = float(lu.mean()) if lu.size else 0.0
        link_max: float | None = float(lu.max()) if lu.size else 0.0
    else:
        n_links = int(existing_links_mask(reg.height, reg.width).sum())
        link_mean = est.link_wavelets / (n_links * cycles) if n_links and cycles > 0 else 0.0
        link_max = None
    occupancy = sram_occupancy(sram, spec.pe.data_sram_bytes)
    utilization: dict[str, float | None] = {
        "compute_mean": float(comp.mean()),
        "compute_max": float(comp.max(initial=0.0)),
        "link_mean": float(link_mean),
        "link_max": link_max,
        "sram_peak_fraction": float(occupancy.max(initial=0.0)),
    }
    useful = float(plan.flops)
    return KernelResult(
        kernel=plan.kernel,
        algorithm=plan.algorithm,
        mesh={"width": spec.mesh.width, "height": spec.mesh.height},
        region=[reg.x, reg.y, reg.width, reg.height],
        engine=engine,
        dtype=plan.dtype,
        sizes=dict(plan.sizes),
        cycles=float(cycles),
        seconds=seconds,
        flops=useful,
        achieved_flops_per_s=useful / seconds if seconds > 0 else 0.0,
        peak_fraction=useful / (peak * reg.num_pes * cycles) if cycles > 0 else 0.0,
        utilization=utilization,
        breakdown={k: float(v) for k, v in est.breakdown.items()},
        estimate_cycles=float(est.cycles),
        preset=spec.name,
        options=dict(plan.options),
        tiling=dict(plan.tiling),
        sram_bytes_per_pe=int(plan.sram_bytes_per_pe),
        pe_flops=np.asarray(pe_flops, dtype=float),
        pe_busy_cycles=None if pe_busy is None else np.asarray(pe_busy, dtype=float),
        pe_sram_peak_bytes=np.asarray(sram, dtype=float),
        link_wavelets=None if links is None else np.asarray(links, dtype=float),
    )
