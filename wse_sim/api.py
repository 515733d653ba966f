"""The Python entry point: ``wse_sim.run(model=..., mode=..., ...) -> RunResult``.

Pipeline: model spec -> layer graph -> placement -> lowering (kernel choice, tiling that fits)
-> engine (``des`` or ``analytic``) -> schedule -> :class:`~wse_sim.result.run_result.RunResult`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from wse_sim.engine.registry import ENGINES
from wse_sim.engine.result import Span
from wse_sim.errors import ConfigError, PlanError
from wse_sim.graph.build import build_graph
from wse_sim.hardware.loader import build_spec
from wse_sim.hardware.spec import WaferSpec
from wse_sim.lowering.assemble import (
    arrays,
    bottleneck,
    op_results,
    spans,
    stage_rows,
    utilization,
)
from wse_sim.lowering.choose import Lowerer
from wse_sim.lowering.execute import Executor
from wse_sim.lowering.simulate import Simulation, simulate
from wse_sim.placement.base import ACTIVATION_POLICIES, Placement
from wse_sim.placement.pipeline import Pipeline
from wse_sim.placement.registry import DEFAULT_PLACEMENT, get_placement
from wse_sim.placement.stream import Stream
from wse_sim.result.run_result import RunResult
from wse_sim.spec.models import ModelSpec, get_model

ACTIVATIONS: tuple[str, ...] = ("auto", *ACTIVATION_POLICIES)
"""Values of ``activations`` (``--activations``): ``auto`` tries ``keep``, then ``recompute``."""


@dataclass
class ModelRun:
    """A run's result, with the per-PE spans of a DES run (for traces) and the simulation."""

    result: RunResult
    spans: list[Span] | None
    simulation: Simulation
    graph: nx.DiGraph


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, value, "must be a positive integer")
    return value


def _place_and_simulate(
    graph: nx.DiGraph,
    spec: WaferSpec,
    placement: str,
    activations: str,
    engine: str,
    gemm: str,
    wafers: int,
    record_spans: bool,
    progress: bool,
) -> Simulation:
    """Place and simulate; ``auto`` falls back to ``stream`` when ``whole`` does not fit.

    ``activations`` is the training activation policy under weight streaming
    (:data:`~wse_sim.placement.base.ACTIVATION_POLICIES`); ``recompute`` with ``auto`` goes
    straight to ``stream`` (it is only tried once ``keep`` did not fit)."""
    strategy = get_placement(placement)
    lowerer = Lowerer(spec, gemm)
    if activations != "keep" and strategy.name in ("stream", "auto"):
        placed = Stream(activations).place(graph, spec)
        if strategy.name == "auto":
            note = "auto: whole does not fit; using stream"
            placed = replace(placed, notes=(note, *placed.notes))
        return simulate(graph, placed, spec, engine, gemm, wafers, record_spans, progress, lowerer)
    if strategy.name == "stream":
        strategy = Stream(activations)
    placed: Placement = strategy.place(graph, spec)
    if isinstance(strategy, Pipeline):
        placed = _balanced(strategy, graph, spec, placed, wafers, lowerer)
    try:
        return simulate(graph, placed, spec, engine, gemm, wafers, record_spans, progress, lowerer)
    except PlanError as exc:
        if strategy.name != "auto" or placed.strategy != "whole":
            raise
        fallback = Stream(activations).place(graph, spec)
        note = f"auto: whole does not fit ({str(exc).split(';')[0]}); using stream"
        placed = replace(fallback, notes=(note, *fallback.notes))
        return simulate(graph, placed, spec, engine, gemm, wafers, record_spans, progress, lowerer)


REBALANCE_ROUNDS = 3
"""Times a pipeline's strips are re-shared by the stages' closed-form cycles."""


def _balanced(
    strategy: Pipeline,
    graph: nx.DiGraph,
    spec: WaferSpec,
    placed: Placement,
    wafers: int,
    lowerer: Lowerer,
) -> Placement:
    """Re-share a pipeline's strips by its stages' analytic cycles; keep the best interval.

    Placements whose stages stop fitting while rebalancing are skipped."""
    best, best_interval = placed, None
    current = placed
    for _ in range(REBALANCE_ROUNDS + 1):
        try:
            sim = simulate(graph, current, spec, "analytic", lowerer.gemm, wafers, lowerer=lowerer)
        except PlanError:
            if best_interval is None:
                raise
            break
        if best_interval is None or sim.cycles < best_interval:
            best, best_interval = current, sim.cycles
        try:
            current = strategy.rebalance(graph, spec, current, sim.stage_cycles)
        except PlanError:
            break
    return best


def divisors(n: int) -> list[int]:
    """Divisors of ``n`` in increasing order."""
    return [k for k in range(1, n + 1) if n % k == 0]


def _policies(placement: str, activations: str, mode: str) -> tuple[str, ...]:
    """Activation policies to try, in order: both (``keep`` first) for ``activations="auto"``
    when a training step may stream weights (``stream`` or ``auto``), else the one asked for."""
    if activations not in ACTIVATIONS:
        raise ConfigError("activations", activations, f"use one of {', '.join(ACTIVATIONS)}")
    if mode != "train" or placement not in ("stream", "auto"):
        if activations == "recompute":
            raise ConfigError(
                "activations",
                activations,
                "recompute applies to training with --placement stream or auto; use auto or keep",
            )
        return ("keep",)
    return ACTIVATION_POLICIES if activations == "auto" else (activations,)


def _micro_batched(
    build: Any,
    batch: int,
    spec: WaferSpec,
    placement: str,
    policies: tuple[str, ...],
    *args: Any,
) -> tuple[Simulation, nx.DiGraph, int]:
    """Simulate ``batch`` sequences per wafer; with ``stream`` (or ``auto``), when they do not
    fit at once, as equal micro-batches (gradient accumulation: under weight streaming each
    micro-batch streams the weights again), and in training with each activation policy of
    ``policies``.

    Per policy the fewest micro-batches that fit is found (at a given micro-batch size ``keep``
    is never slower than ``recompute``, so ``recompute`` is only tried where ``keep`` does not
    fit); of those, the one with the fewest cycles for the whole batch wins. Returns the
    simulation of one micro-batch, its graph and the number of micro-batches."""
    streams = placement in ("stream", "auto")
    best: tuple[Simulation, nx.DiGraph, int] | None = None
    found: set[str] = set()
    last_error: PlanError | None = None
    for k in divisors(batch):
        graph = build(batch // k)
        for policy in policies:
            if policy in found:
                continue
            try:
                sim = _place_and_simulate(graph, spec, placement, policy, *args)
            except PlanError as exc:
                if not streams:
                    raise
                last_error = exc
                continue
            found.add(policy)
            if best is None or sim.cycles * k < best[0].cycles * best[2]:
                best = (sim, graph, k)
            break
        if "keep" in found or len(found) == len(policies):
            break
    if best is not None:
        return best
    assert last_error is not None
    tried = f"1 to {batch} micro-batches per wafer" if batch > 1 else "one sequence per wafer"
    how = ", activations kept or recomputed" if len(policies) > 1 else ""
    raise PlanError(f"{last_error} (tried {tried}{how})")


def simulate_model(
    model: str | ModelSpec = "gpt2-small",
    mode: str = "prefill",
    batch: int = 1,
    seq: int | None = None,
    context: int | None = None,
    preset: str | None = None,
    mesh: str | tuple[int, int] | None = None,
    hw: str | None = None,
    sets: Sequence[str] = (),
    placement: str = DEFAULT_PLACEMENT,
    engine: str = "analytic",
    gemm: str = "auto",
    wafers: int = 1,
    dtype: str | None = None,
    progress: bool = False,
    record_spans: bool = False,
    spec: WaferSpec | None = None,
    activations: str = "auto",
) -> ModelRun:
    """:func:`run`, also returning DES spans (``record_spans``) and the simulation itself.

    ``spec`` (a ready :class:`WaferSpec`) replaces ``preset``, ``mesh``, ``hw`` and ``sets``.
    """
    wall = time.perf_counter()
    if engine not in ENGINES:
        raise ConfigError("engine", engine, f"use one of {', '.join(ENGINES)}")
    batch = _positive("batch", batch)
    wafers = _positive("wafers", wafers)
    if spec is None:
        spec = build_spec(preset=preset, hw_file=hw, sets=list(sets), mesh=mesh)
    model_spec = (
        model.with_dtype(dtype) if isinstance(model, ModelSpec) else get_model(model, dtype)
    )
    if wafers > 1:
        if placement != "stream":
            raise ConfigError(
                "wafers", wafers, "data parallel wafers need --placement stream (or use 1)"
            )
        if batch % wafers:
            raise ConfigError(
                "batch", batch, f"must be a multiple of wafers={wafers} (each wafer gets batch/N)"
            )
    graph = build_graph(model_spec, mode, batch, seq, context, dtype)

    def build(b: int) -> nx.DiGraph:
        return graph if b == batch else build_graph(model_spec, mode, b, seq, context, dtype)

    policies = _policies(str(placement), activations, mode)
    sim, _, micro = _micro_batched(
        build,
        batch // wafers,
        spec,
        str(placement),
        policies,
        engine,
        gemm,
        wafers,
        record_spans,
        progress,
    )
    lowerer = Lowerer(spec, gemm)
    executor = Executor(spec, engine, record_spans)
    arr = arrays(sim, spec, executor, lowerer)
    arr.pe_flops *= micro
    arr.pe_busy *= micro
    arr.links *= micro
    per_op = op_results(sim, wafers, micro)
    g = graph.graph
    dt = str(g["dtype"])
    cycles = sim.cycles * micro
    seconds = spec.seconds(cycles)
    flops = float(sum(op.flops for op in per_op))
    tokens = float(g["batch"] if mode == "decode" else g["tokens"])
    peak = spec.peak_flops_per_s(dt) * wafers
    notes = list(sim.notes)
    if micro > 1:
        notes.append(
            f"{micro} micro-batches of {batch // wafers // micro} per wafer (gradient "
            "accumulation): stages and start cycles show one micro-batch"
        )
    run_spans, span_note = spans(sim) if record_spans and engine == "des" else (None, None)
    if span_note:
        notes.append(span_note)
    chunked = [op.name for op in per_op if op.calls > 1 and op.kernel != "transfer"]
    if chunked:
        notes.append(f"{len(chunked)} ops cut into chunks or repeated calls (see per_op calls)")
    result = RunResult(
        model=model_spec.name,
        mode=mode,
        mesh={"width": spec.mesh.width, "height": spec.mesh.height},
        placement=sim.placement.strategy,
        engine=engine,
        preset=spec.name,
        cycles=float(cycles),
        seconds=seconds,
        flops=flops,
        tokens=tokens,
        tokens_per_s=tokens / seconds if seconds > 0 else 0.0,
        tflops=flops / seconds / 1e12 if seconds > 0 else 0.0,
        peak_fraction=flops / (seconds * peak) if seconds > 0 else 0.0,
        utilization=utilization(arr, spec, dt, cycles),
        per_op=per_op,
        batch=batch,
        seq=int(g["seq"]),
        context=int(g["context"]),
        wafers=wafers,
        dtype=dt,
        bottleneck=bottleneck(sim),
        notes=notes,
        inputs={
            "model": model.name if isinstance(model, ModelSpec) else str(model),
            "mode": mode,
            "batch": batch,
            "seq": seq,
            "context": context,
            "preset": preset,
            "mesh": mesh if mesh is None or isinstance(mesh, str) else list(mesh),
            "hw": None if hw is None else str(hw),
            "sets": list(sets),
            "placement": str(placement),
            "engine": engine,
            "gemm": gemm,
            "wafers": wafers,
            "dtype": dtype,
            "activations": activations,
            "activations_used": sim.placement.activations,
            "spec": spec.to_dict(),
            "des_simulations": sim.simulations,
            "micro_batches": micro,
            "wall_seconds": time.perf_counter() - wall,
        },
        stages=stage_rows(sim),
        latency_cycles=float(sim.latency * micro),
        micro_batches=micro,
        pe_compute_busy=arr.pe_busy / cycles if cycles > 0 else arr.pe_busy * 0.0,
        pe_flops=arr.pe_flops,
        pe_sram_peak_bytes=arr.sram,
        link_wavelets=arr.links,
    )
    return ModelRun(result, run_spans, sim, graph)


def run(
    model: str | ModelSpec = "gpt2-small",
    mode: str = "prefill",
    batch: int = 1,
    seq: int | None = None,
    context: int | None = None,
    preset: str | None = None,
    mesh: str | tuple[int, int] | None = None,
    hw: str | None = None,
    sets: Sequence[str] = (),
    placement: str = DEFAULT_PLACEMENT,
    engine: str = "analytic",
    gemm: str = "auto",
    wafers: int = 1,
    dtype: str | None = None,
    progress: bool = False,
    activations: str = "auto",
) -> RunResult:
    """Simulate one prefill, decode step or training step of ``model`` on a wafer.

    The defaults of ``placement``, ``engine``, ``gemm`` and ``activations`` are those of
    ``wse-sim run`` (``placement`` from :data:`~wse_sim.placement.registry.DEFAULT_PLACEMENT`).
    The command picks a quicker first run for the rest: model ``gpt2-small``, ``--seq 128`` and
    preset ``demo`` (64x64 PEs), where this function defaults to the model's ``max_seq`` and
    preset ``wse2``.

    Args:
        model: a preset name (``wse-sim presets models``), a path to a ``config.json`` or a
            :class:`~wse_sim.spec.models.ModelSpec`.
        mode: ``prefill``, ``decode`` or ``train``.
        batch: sequences per step (all wafers together).
        seq: tokens per sequence (default: the model's ``max_seq``); decode: default context.
        context: decode only: keys each new token attends to.
        preset, mesh, hw, sets: the hardware (as ``--preset``, ``--mesh WxH``, ``--hw FILE``,
            ``--set section.field=value``); default preset ``wse2``.
        placement: ``auto`` (default: ``whole`` when the weights fit, else ``stream``),
            ``whole``, ``pipeline``, ``stream`` or a TOML / JSON file.
        engine: ``analytic`` (closed forms, any size) or ``des`` (discrete-event simulation).
        gemm: ``auto`` (fewest closed-form cycles) or a gemm algorithm.
        wafers: data-parallel wafers (``stream`` only); ``batch`` must be a multiple. Under
            ``stream`` (and ``auto``), a wafer's share of the batch that does not fit runs as
            micro-batches.
        dtype: element type override (``fp16``, ``bf16``, ``fp32``).
        progress: draw a progress bar on a terminal while DES kernels run.
        activations: training under weight streaming: ``keep`` the saved activations on the
            wafer, ``recompute`` each layer's forward before its backward (keeping only layer
            inputs), or ``auto`` (default): the faster of the two, each with the fewest
            micro-batches that fit.

    Raises:
        WseSimError: bad inputs (:class:`ConfigError`) or a placement that does not fit
            (:class:`PlanError`), each with a one-line message.
    """
    return simulate_model(
        model,
        mode,
        batch,
        seq,
        context,
        preset,
        mesh,
        hw,
        sets,
        placement,
        engine,
        gemm,
        wafers,
        dtype,
        progress,
        activations=activations,
    ).result
