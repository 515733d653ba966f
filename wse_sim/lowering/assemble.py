"""From a :class:`Simulation` to mesh-sized arrays and a :class:`RunResult`.

Each distinct kernel call is materialised once per region offset and added in, scaled by how
many times it runs there; SRAM is the largest footprint any op leaves on a PE, plus the bytes its
stage keeps resident (weights, KV cache...). Metrics follow :mod:`wse_sim.result.metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from wse_sim.engine.result import Span
from wse_sim.graph.ops import OpSpec
from wse_sim.hardware.spec import WaferSpec
from wse_sim.lowering.choose import Choice, Lowerer
from wse_sim.lowering.execute import CallRun, Executor
from wse_sim.lowering.simulate import Simulation
from wse_sim.result.metrics import compute_utilization, existing_links_mask, link_utilization
from wse_sim.result.run_result import OpResult

MAX_SPANS = 200_000
"""Most per-PE spans a run hands to a trace (DES runs); beyond it only per-op tracks are kept."""


@dataclass
class Arrays:
    """Mesh-shaped arrays of one wafer (``[y, x]``): FLOPs, busy cycles and peak SRAM bytes per
    PE, and ``(4, H, W)`` wavelets per directed link."""

    pe_flops: np.ndarray
    pe_busy: np.ndarray
    sram: np.ndarray
    links: np.ndarray


def _add(total: np.ndarray, region: tuple[int, int], values: np.ndarray, factor: float) -> None:
    x, y = region
    h, w = values.shape[-2:]
    total[..., y : y + h, x : x + w] += factor * values


def arrays(sim: Simulation, spec: WaferSpec, executor: Executor, lowerer: Lowerer) -> Arrays:
    """Sum every item's arrays at its region offset (each distinct call materialised once)."""
    H, W = spec.mesh.height, spec.mesh.width
    out = Arrays(np.zeros((H, W)), np.zeros((H, W)), np.zeros((H, W)), np.zeros((4, H, W)))
    groups: dict[tuple, list[Any]] = {}
    for item in sim.items:
        if item.kind == "op":
            choice: Choice = item.extra["choice"]
            key = ("op", choice.key(), item.region.x, item.region.y)
            extra = choice.need_bytes - choice.plan.sram_bytes_per_pe
        elif item.kind == "transfer":
            key = ("transfer", id(item.extra["run"]), item.region.x, item.region.y)
            extra = 0.0
        else:
            continue
        entry = groups.setdefault(key, [item, 0.0, 0.0])
        entry[1] += item.extra["calls"]
        entry[2] = max(entry[2], extra)
    for (kind, *_), (item, calls, extra) in groups.items():
        r = item.region
        if kind == "op":
            local = lowerer.local_spec(r.width, r.height)
            run: CallRun = executor.full(item.extra["choice"], local)
        else:
            run = item.extra["run"]
        _add(out.pe_flops, (r.x, r.y), run.pe_flops, calls)
        _add(out.pe_busy, (r.x, r.y), run.pe_busy, calls)
        _add(out.links, (r.x, r.y), run.links, calls)
        h, w = run.sram.shape
        view = out.sram[r.y : r.y + h, r.x : r.x + w]
        np.maximum(view, run.sram + extra, out=view)
    return out


def spans(sim: Simulation, limit: int = MAX_SPANS) -> tuple[list[Span] | None, str | None]:
    """Per-PE spans of a DES run placed at each op's start and region; ``None`` and a note when
    there are more than ``limit``."""
    total = 0
    for item in sim.items:
        run = item.extra.get("run")
        if run is not None and run.spans is not None:
            total += len(run.spans) * math.ceil(item.extra.get("calls", 1.0))
    if total > limit:
        return None, f"trace: {total} per-PE spans left out (more than {limit}); per-op tracks only"
    out: list[Span] = []
    for item in sim.items:
        run = item.extra.get("run")
        if run is None or not run.spans:
            continue
        calls = math.ceil(item.extra.get("calls", 1.0))
        for k in range(calls):
            t0 = item.start + k * run.cycles
            for s in run.spans:
                out.append(
                    Span(
                        s.x + item.region.x,
                        s.y + item.region.y,
                        s.kind,
                        item.name,
                        s.start + t0,
                        s.end + t0,
                    )
                )
    return out, None


def op_results(sim: Simulation, wafers: int = 1, micro: int = 1) -> list[OpResult]:
    """The per-op table: ops and transfers, with cycles and calls over ``micro`` micro-batches
    and FLOPs over all ``wafers`` (the optimizer counted once: it runs once per step)."""
    rows = []
    for item in sim.items:
        r = item.region
        common = {
            "region": [r.x, r.y, r.width, r.height],
            "start_cycle": item.start,
            "calls": float(item.extra.get("calls", 1.0)) * micro,
        }
        if item.kind == "transfer":
            run = item.extra["run"]
            row = OpResult(
                name=item.name,
                kernel="transfer",
                algorithm="lanes",
                cycles=item.cycles * micro,
                flops=0.0,
                stage=item.group[1],
                breakdown=dict(run.breakdown),
                **common,
            )
            rows.append(row)
            continue
        op: OpSpec = item.extra["op"]
        flops = op.flops * (1 if op.kind == "optimizer" else wafers * micro)
        if item.extra.get("recompute"):
            flops = 0.0  # the graph counts each op once; the executed FLOPs are in the arrays
        if item.kind == "external":
            common["calls"] = 0.0
            row = OpResult(
                name=op.name,
                kernel=op.kernel,
                algorithm="external",
                cycles=0.0,
                flops=flops,
                stage=op.stage,
                layer=op.layer,
                **common,
            )
            rows.append(row)
            continue
        choice: Choice = item.extra["choice"]
        run = item.extra["run"]
        row = OpResult(
            name=item.name,
            kernel=choice.kernel,
            algorithm=choice.algorithm,
            cycles=item.cycles * micro,
            flops=flops,
            stage="bwd" if item.extra.get("recompute") else op.stage,
            layer=op.layer,
            breakdown={k: v * choice.runs * micro for k, v in run.breakdown.items()},
            need_bytes_per_pe=float(math.ceil(choice.need_bytes)),
            **common,
        )
        rows.append(row)
    return rows


def utilization(arr: Arrays, spec: WaferSpec, dtype: str, cycles: float) -> dict[str, float]:
    """Compute, link and SRAM figures of the run (docs/metrics.md): compute utilization per PE
    is executed FLOPs / (peak FLOPs per cycle x cycles); link utilization per existing directed
    link is wavelets / cycles; SRAM is the peak over PEs / ``pe.data_sram_bytes``."""
    comp = compute_utilization(arr.pe_flops, spec.peak_flops_per_cycle(dtype), cycles)
    mask = existing_links_mask(spec.mesh.height, spec.mesh.width)
    links = link_utilization(arr.links, cycles)[mask]
    return {
        "compute_mean": float(comp.mean()),
        "compute_max": float(comp.max(initial=0.0)),
        "link_mean": float(links.mean()) if links.size else 0.0,
        "link_max": float(links.max(initial=0.0)) if links.size else 0.0,
        "sram_peak_fraction": float(arr.sram.max(initial=0.0) / spec.pe.data_sram_bytes),
    }


def stage_rows(sim: Simulation) -> list[dict[str, Any]]:
    """Stages (pipeline, sequential) or layer groups (stream) with their cycles."""
    if sim.placement.schedule == "stream":
        return [
            {
                "name": f"{g.unit} {g.pass_}",
                "start_cycle": g.start,
                "cycles": g.cycles,
                "compute_cycles": g.compute,
                "io_cycles": g.io,
                "io_in_bytes": g.io_in_bytes,
                "io_out_bytes": g.io_out_bytes,
                "io_bound": g.io_bound,
            }
            for g in sim.groups
        ]
    rows = []
    for stage, cycles in zip(sim.placement.stages, sim.stage_cycles):
        r = stage.region
        rows.append(
            {
                "name": stage.name,
                "region": [r.x, r.y, r.width, r.height],
                "cycles": cycles,
                "ops": len(stage.ops),
                "resident_bytes_per_pe": stage.resident_bytes_per_pe,
            }
        )
    return rows


def bottleneck(sim: Simulation) -> str | None:
    """What limits the run: the slowest pipeline stage, or I/O versus compute when streaming."""
    if sim.placement.schedule == "pipeline" and sim.stage_cycles:
        i = int(np.argmax(sim.stage_cycles))
        stage = sim.placement.stages[i]
        r = stage.region
        return f"stage {stage.name} ({r.width}x{r.height} PEs, {sim.stage_cycles[i]:.0f} cycles)"
    if sim.placement.schedule == "stream" and sim.groups:
        io = [g for g in sim.groups if g.io_bound]
        if len(io) * 2 > len(sim.groups):
            return f"weight I/O ({len(io)} of {len(sim.groups)} layer groups wait for weights)"
        return f"compute ({len(sim.groups) - len(io)} of {len(sim.groups)} layer groups)"
    return None
