"""Wafer versus GPU: one piece of work costed on the wafer model and on the GPU models.

Two kinds of work:

* a model step (:func:`compare_model`): one layer graph from one :func:`build_graph` call is
  costed on the wafer (:func:`wse_sim.api.simulate_model`, which returns the graph it built)
  and on each GPU (:func:`cost_graph`);
* one kernel (:func:`compare_kernel`): the wafer runs it with :func:`run_kernel` (closed form by
  default), each GPU costs the :class:`OpSpec` the layer graph would hold for it (:func:`op_cost`).

Every system becomes one :class:`CompareRow` of plain numbers; formatting is the caller's job
(``wse-sim compare``, ``benchmarks/wafer_vs_gpu.py``). Definitions, per row:

* ``seconds``: time of one step [s]: the kernel, a prefill of the whole batch, one decode step
  (one new token for every sequence) or one training step, from its start to its end (for a
  wafer pipeline: one batch's latency, not the steady-state interval between batches);
* ``tflops = flops / seconds / 1e12`` [TFLOP/s], ``flops`` being the work's FLOPs [FLOP];
* ``peak_fraction = flops / (seconds * peak)`` with ``peak`` the whole system's dense peak
  (every PE of every wafer; every GPU) [1];
* ``power_w``: GPUs: ``n x`` board TDP; wafer: :data:`WAFER_SYSTEM_POWER_W` for a full WSE-2 or
  WSE-3 mesh, else ``None`` [W]; ``energy_j = power_w * seconds`` [J]. Both are upper bounds
  (the device is assumed to draw its rated power all the time); the wafer figure is a whole
  appliance, the GPU figure boards only.
* ``calibration`` (GPU rows): the worst relative error of the GPU model on the calibration points
  nearest to this kind of work (:data:`WORK_GROUPS`), from ``calibration.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import networkx as nx

from wse_sim.baselines.gpus import GPUS, get_gpu
from wse_sim.baselines.graph_cost import GpuResult, check_parallel, cost_graph
from wse_sim.baselines.model import op_cost
from wse_sim.baselines.opspecs import attention_op, elementwise_op, gemm_op, norm_op, softmax_op
from wse_sim.errors import ConfigError, PlanError
from wse_sim.graph.ops import OpSpec
from wse_sim.hardware.spec import WaferSpec

DEFAULT_GPUS: tuple[str, ...] = ("a100-80gb", "h100", "h200")
"""GPUs compared when none are named."""

COMPARE_KERNELS: tuple[str, ...] = (
    "gemm",
    "gemv",
    "attention",
    "layernorm",
    "rmsnorm",
    "softmax",
    "elementwise",
)
"""Kernels :func:`compare_kernel` can cost on both sides."""

WAFER_SYSTEM_POWER_W: dict[str, float] = {"wse2": 23_000.0, "wse3": 23_000.0}
"""System power of one wafer-scale appliance [W], by hardware preset, independent of the spec.

* ``wse2``: Cerebras CS-2 data sheet, "system power 23 kW" (maximum; the CS-1 was 20 kW).
* ``wse3``: Cerebras's CS-3 launch material (March 2024): twice the CS-2's performance "in the
  same power envelope", reported as about 23 kW.

Both are maximum ratings of the whole appliance (power supplies, pumps, fans, I/O), not a
measured draw for the work costed here; an estimate, applied only to the preset's full mesh."""

WAFER_POWER_SOURCES: dict[str, str] = {
    "wse2": "Cerebras CS-2 data sheet: system power 23 kW (maximum, whole appliance)",
    "wse3": "Cerebras CS-3 launch (March 2024): same power envelope as the CS-2, ~23 kW",
}

CALIBRATION_GROUPS: dict[str, str] = {
    "gemm-large": "GEMMs with m, n, k >= 1024 (compute-bound)",
    "gemm-weight": "GEMMs with m <= 256 and n, k >= 1024 (weight-bound, decode-like)",
    "gemm-small": "other GEMMs (short n or k)",
    "attention": "fused attention (FlashAttention-2/3)",
    "memory": "memory-bound kernels (copy, elementwise, norms, softmax)",
    "allreduce": "NCCL allreduce (bus bandwidth, latency)",
    "train": "whole training steps (MFU)",
}
"""The calibration groups: which calibration points stand for which kind of work."""

WORK_GROUPS: dict[str, tuple[str, ...]] = {
    "prefill": ("gemm-large", "attention"),
    "decode": ("gemm-weight", "memory"),
    "train": ("train",),
    "gemm-large": ("gemm-large",),
    "gemm-weight": ("gemm-weight",),
    "gemm-small": ("gemm-small",),
    "gemv": ("gemm-weight",),
    "attention": ("attention",),
    "attention-decode": ("memory",),
    "layernorm": ("memory",),
    "rmsnorm": ("memory",),
    "softmax": ("memory",),
    "elementwise": ("memory",),
}
"""Kind of work -> the calibration groups nearest to it (multi-GPU work adds ``allreduce``)."""


@dataclass(frozen=True)
class WaferOptions:
    """How to build and run the wafer side.

    Attributes:
        preset, mesh, hw, sets: the hardware (as ``--preset``, ``--mesh WxH``, ``--hw`` and
            ``--set``); ``preset`` ``None`` means ``wse2``.
        placement: placement name or file for a model step (``None``: ``auto`` on one wafer,
            ``stream`` on several).
        engine: ``analytic`` (default) or ``des``.
        wafers: wafers of a model step (kernels run on one).
        algorithm: kernel algorithm (``None``: the kernel's choice).
        options: any other keyword :func:`wse_sim.api.simulate_model` takes (e.g. ``gemm``).
    """

    preset: str | None = None
    mesh: str | None = None
    hw: str | None = None
    sets: tuple[str, ...] = ()
    placement: str | None = None
    engine: str = "analytic"
    wafers: int = 1
    algorithm: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> WaferSpec:
        """The :class:`WaferSpec` these options name."""
        from wse_sim.hardware.loader import build_spec

        return build_spec(preset=self.preset, hw_file=self.hw, sets=list(self.sets), mesh=self.mesh)


@dataclass(frozen=True)
class GpuOptions:
    """The GPU side: GPU names, GPUs per system, TP or DP, and eager launches."""

    gpus: tuple[str, ...] = DEFAULT_GPUS
    n_gpus: int = 1
    parallel: str = "tp"
    eager: bool = False


@dataclass
class Calibration:
    """How far the GPU model is from measurements for this kind of work.

    Attributes:
        groups: the calibration groups used (:data:`CALIBRATION_GROUPS`).
        error: the worst signed relative error among their points, ``(model - measured) /
            measured`` [1].
        points: how many points.
        gpus: the GPUs the points were measured on (per group: the row's own GPU when it has
            points in that group, else every GPU that has).
    """

    groups: list[str]
    error: float
    points: int
    gpus: list[str]


@dataclass
class CompareRow:
    """One system's cost of the work. Units: seconds [s], flops [FLOP], tflops and peak_tflops
    [TFLOP/s], tokens [tokens], tokens_per_s [tokens/s], power_w [W], energy_j [J].

    ``kind`` is ``wafer`` or ``gpu``; ``work`` is ``prefill``, ``decode``, ``train`` or
    ``kernel:NAME``; ``devices`` counts wafers or GPUs. ``fits`` False: on a wafer no placement
    fits (``seconds`` and what derives from it are ``None``, ``error`` says why); on GPUs the
    weights and state exceed HBM (the time is still given, as if the memory were there).
    ``config`` says how the system was set up and holds the ``workload``.
    """

    system: str
    kind: str
    work: str
    seconds: float | None
    flops: float
    tflops: float | None
    peak_tflops: float
    peak_fraction: float | None
    tokens: float = 0.0
    tokens_per_s: float | None = None
    power_w: float | None = None
    energy_j: float | None = None
    devices: int = 1
    fits: bool = True
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


# -- small helpers ----------------------------------------------------------------------------
def parse_gpus(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Canonical GPU names from ``"a100-80gb,h100"`` (or a list); aliases allowed, order kept."""
    if text is None:
        return DEFAULT_GPUS
    items = text.split(",") if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        name = get_gpu(item).name
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError("gpu", text, f"name at least one of {', '.join(GPUS)}")
    return tuple(names)


def _rate(flops: float, seconds: float | None) -> float | None:
    return flops / seconds / 1e12 if seconds else None


def wafer_power_w(spec: WaferSpec, wafers: int = 1) -> tuple[float | None, str]:
    """System power for ``wafers`` wafers of ``spec`` [W] and where it comes from; ``None``
    (with the reason) unless ``spec`` is a full WSE-2 or WSE-3 mesh."""
    from wse_sim.hardware.presets import PRESETS

    name = spec.name
    if name not in WAFER_SYSTEM_POWER_W:
        return None, f"no system power known for hardware '{name}' (only wse2, wse3)"
    full = PRESETS[name].spec.mesh
    if (spec.mesh.width, spec.mesh.height) != (full.width, full.height):
        return None, (
            f"system power is known for the full {full.width}x{full.height} mesh only, not "
            f"{spec.mesh.width}x{spec.mesh.height}"
        )
    return WAFER_SYSTEM_POWER_W[name] * wafers, WAFER_POWER_SOURCES[name]


def _wafer_power_fields(
    spec: WaferSpec, wafers: int = 1
) -> tuple[float | None, str | None, list[str]]:
    """:func:`wafer_power_w` as a wafer row uses it: the power [W] (or ``None``), the config's
    ``power_source`` (``None`` when the power is unknown) and the row's first notes (why the
    energy is blank, if it is)."""
    power, note = wafer_power_w(spec, wafers)
    if power is None:
        return None, None, [f"energy blank: {note}"]
    return power, note, []


def _mesh_text(spec: WaferSpec) -> str:
    """The mesh as ``WxH`` (PEs)."""
    return f"{spec.mesh.width}x{spec.mesh.height}"


def _unknown_kernel(kernel: str) -> ConfigError:
    """The error for a kernel :func:`compare_kernel` cannot cost."""
    return ConfigError("kernel", kernel, f"compare takes {', '.join(COMPARE_KERNELS)}")


# -- calibration ------------------------------------------------------------------------------
def point_group(point: dict[str, Any]) -> str:
    """The calibration group (:data:`CALIBRATION_GROUPS`) of one calibration point."""
    kernel = point["kernel"]
    if kernel == "gemm":
        s = point["sizes"]
        return gemm_group(int(s["m"]), int(s["n"]), int(s["k"]))
    if kernel == "attention":
        return "attention"
    if kernel == "allreduce":
        return "allreduce"
    if kernel == "train_step":
        return "train"
    return "memory"


def gemm_group(m: int, n: int, k: int) -> str:
    """``gemm-weight`` (m <= 256 with n, k >= 1024), ``gemm-large`` (m, n, k >= 1024) or
    ``gemm-small`` (the rest)."""
    if m <= 256 and min(n, k) >= 1024:
        return "gemm-weight"
    if min(m, n, k) >= 1024:
        return "gemm-large"
    return "gemm-small"


@lru_cache(maxsize=1)
def _checks() -> tuple[tuple[str, str, float], ...]:
    """``(gpu, group, error)`` of every shipped calibration point (evaluated once)."""
    from wse_sim.baselines.calibration import evaluate, package_points

    out = []
    for c in evaluate(package_points()):
        out.append((get_gpu(c.point["gpu"]).name, point_group(c.point), c.error))
    return tuple(out)


def calibration_error(gpu: str, work: str, n_gpus: int = 1) -> Calibration | None:
    """The worst error of the GPU model on the calibration points nearest to ``work`` (a key of
    :data:`WORK_GROUPS`): per group, the points of ``gpu`` when it has some, else those of every
    GPU that has. ``None`` when no point stands for this work."""
    groups = list(WORK_GROUPS.get(work, ()))
    if n_gpus > 1 and work != "train":
        groups.append("allreduce")
    name = get_gpu(gpu).name
    use: list[tuple[str, str, float]] = []
    for group in groups:
        picked = [c for c in _checks() if c[1] == group]
        use += [c for c in picked if c[0] == name] or picked
    if not use:
        return None
    worst = max(use, key=lambda c: abs(c[2]))
    return Calibration(groups, worst[2], len(use), sorted({c[0] for c in use}))


# -- model steps ------------------------------------------------------------------------------
def model_graph(
    model: str,
    mode: str,
    batch: int = 1,
    seq: int | None = None,
    context: int | None = None,
    dtype: str | None = None,
) -> nx.DiGraph:
    """The one layer graph both sides cost (:func:`wse_sim.graph.build.build_graph`)."""
    from wse_sim.graph.build import build_graph
    from wse_sim.spec.models import get_model

    return build_graph(get_model(model, dtype), mode, batch, seq, context)


def gpu_model_row(graph: nx.DiGraph, gpu: str, opts: GpuOptions) -> CompareRow:
    """One GPU system's row for a model step: :func:`cost_graph` of ``graph``."""
    res: GpuResult = cost_graph(graph, gpu, opts.n_gpus, opts.parallel, opts.eager)
    mode = str(graph.graph.get("mode", res.mode))
    return gpu_row_from_result(res, mode, calibration_error(res.gpu, mode, res.n_gpus))


def gpu_row_from_result(res: GpuResult, work: str, calib: Calibration | None) -> CompareRow:
    """A :class:`CompareRow` from a :class:`GpuResult` (same seconds, FLOPs and energy)."""
    gpu = get_gpu(res.gpu)
    system = res.gpu if res.n_gpus == 1 else f"{res.n_gpus}x {res.gpu} {res.parallel}"
    notes = list(res.notes)
    return CompareRow(
        system=system,
        kind="gpu",
        work=work,
        seconds=res.seconds,
        flops=res.flops,
        tflops=_rate(res.flops, res.seconds),
        peak_tflops=res.n_gpus * gpu.peak_flops(res.dtype) / 1e12,
        peak_fraction=res.peak_fraction,
        tokens=res.tokens,
        tokens_per_s=res.tokens_per_s,
        power_w=res.power_w,
        energy_j=res.energy_j,
        devices=res.n_gpus,
        fits=res.fits_memory,
        config={
            "gpu": res.gpu,
            "n_gpus": res.n_gpus,
            "parallel": res.parallel,
            "eager": res.eager,
            "dtype": res.dtype,
            "memory_bytes_per_gpu": res.memory_bytes_per_gpu,
        },
        calibration=calib,
        notes=notes,
    )


def wafer_placement(opts: WaferOptions, placement: str | None = None) -> str:
    """The placement to run: ``placement``, else ``opts.placement``, else ``auto`` (``whole``
    when the weights fit, else ``stream``) on one wafer and ``stream`` on several."""
    if placement is not None:
        return placement
    if opts.placement is not None:
        return opts.placement
    return "auto" if opts.wafers == 1 else "stream"


def run_wafer_model(
    model: str,
    mode: str,
    batch: int = 1,
    seq: int | None = None,
    context: int | None = None,
    dtype: str | None = None,
    opts: WaferOptions | None = None,
    placement: str | None = None,
    spec: WaferSpec | None = None,
) -> Any:
    """Run one model step on the wafer: :func:`wse_sim.api.simulate_model`, which returns the
    :class:`RunResult` and the layer graph it built (the one the GPUs then cost)."""
    from wse_sim.api import simulate_model

    opts = opts or WaferOptions()
    return simulate_model(
        model=model,
        mode=mode,
        batch=batch,
        seq=seq,
        context=context,
        placement=wafer_placement(opts, placement),
        engine=opts.engine,
        wafers=opts.wafers,
        dtype=dtype,
        spec=spec or opts.spec(),
        **opts.options,
    )


def wafer_model_row(
    model: str,
    mode: str,
    batch: int = 1,
    seq: int | None = None,
    context: int | None = None,
    dtype: str | None = None,
    opts: WaferOptions | None = None,
    placement: str | None = None,
    spec: WaferSpec | None = None,
) -> tuple[CompareRow, nx.DiGraph]:
    """The wafer's row for one model step, and the layer graph it costed.

    ``seconds`` is the time one step of the batch takes from start to end: for a pipeline the
    latency of one batch, not the steady-state interval between batches that ``wse-sim run``
    reports (that one is ``config["steady_seconds"]``). A placement that does not fit gives a
    row with ``fits=False``, ``seconds=None`` and the reason in ``error``; the graph is then
    built here with the same arguments.
    """
    opts = opts or WaferOptions()
    _check_wafers(opts.wafers)
    spec = spec or opts.spec()
    chosen = wafer_placement(opts, placement)
    power, power_source, notes = _wafer_power_fields(spec, opts.wafers)
    config: dict[str, Any] = {
        "preset": spec.name,
        "mesh": _mesh_text(spec),
        "placement": chosen,
        "engine": opts.engine,
        "wafers": opts.wafers,
        "power_source": power_source,
    }
    try:
        run = run_wafer_model(model, mode, batch, seq, context, dtype, opts, chosen, spec)
    except PlanError as exc:
        graph = model_graph(model, mode, batch, seq, context, dtype)
        row = _wafer_row(graph, spec, opts.wafers, power, config, notes)
        row.fits = False
        row.error = " ".join(str(exc).split())
        return row, graph
    graph, res = run.graph, run.result
    row = _wafer_row(graph, spec, opts.wafers, power, config, notes)
    latency = float(getattr(res, "latency_cycles", 0.0) or res.cycles)
    seconds = spec.seconds(latency)
    config.update(
        placement=res.placement,
        engine=res.engine,
        cycles=latency,
        steady_seconds=float(res.seconds),
        micro_batches=int(getattr(res, "micro_batches", 1)),
        bottleneck=res.bottleneck,
    )
    if not math.isclose(float(res.flops), row.flops, rel_tol=1e-6):
        notes.append(f"the wafer run counted {res.flops:.6g} FLOPs, the graph {row.flops:.6g}")
    if res.seconds < seconds * (1 - 1e-9):
        rate = row.tokens / res.seconds if res.seconds > 0 else 0.0
        notes.append(
            f"pipeline: with batches streaming through, one completes every "
            f"{res.seconds * 1e3:.4g} ms ({rate:.4g} tokens/s); the time shown is one batch's "
            f"latency"
        )
    notes.extend(str(n) for n in res.notes)
    row.seconds = seconds
    row.tflops = _rate(row.flops, seconds)
    row.peak_fraction = row.flops / (seconds * row.peak_tflops * 1e12) if seconds > 0 else None
    row.tokens_per_s = row.tokens / seconds if seconds > 0 else None
    row.energy_j = power * seconds if power is not None else None
    return row, graph


def _wafer_row(
    graph: nx.DiGraph,
    spec: WaferSpec,
    wafers: int,
    power: float | None,
    config: dict[str, Any],
    notes: list[str],
) -> CompareRow:
    """A wafer row with the graph's work filled in and no time yet."""
    dtype = str(graph.graph.get("dtype", "fp16"))
    config["dtype"] = dtype
    return CompareRow(
        system=_wafer_name(spec, wafers),
        kind="wafer",
        work=str(graph.graph["mode"]),
        seconds=None,
        flops=float(graph.graph["flops"]),
        tflops=None,
        peak_tflops=spec.peak_flops_per_s(dtype) * wafers / 1e12,
        peak_fraction=None,
        tokens=float(graph.graph["tokens"]),
        power_w=power,
        devices=wafers,
        config=config,
        notes=notes,
    )


def _wafer_name(spec: WaferSpec, wafers: int) -> str:
    name = f"{spec.name} {_mesh_text(spec)}"
    return name if wafers == 1 else f"{wafers}x {name}"


def compare_model(
    model: str,
    mode: str,
    batch: int = 1,
    seq: int | None = None,
    context: int | None = None,
    dtype: str | None = None,
    wafer: WaferOptions | None = None,
    gpus: GpuOptions | None = None,
) -> list[CompareRow]:
    """One model step on the wafer (unless ``wafer`` is None) and on each GPU system.

    The GPUs cost the very graph the wafer run built (one :func:`build_graph` call); without a
    wafer, :func:`model_graph` builds it. Rows: the wafer first, then the GPUs in the order
    given.
    """
    gpus = gpus or GpuOptions()
    names = parse_gpus(gpus.gpus)
    for name in names:
        check_parallel(get_gpu(name), gpus.n_gpus, gpus.parallel)
    rows: list[CompareRow] = []
    if wafer is not None:
        row, graph = wafer_model_row(model, mode, batch, seq, context, dtype, wafer)
        rows.append(row)
    else:
        graph = model_graph(model, mode, batch, seq, context, dtype)
    rows += [gpu_model_row(graph, name, gpus) for name in names]
    workload = workload_of(graph)
    for row in rows:
        row.config["workload"] = workload
    return rows


def workload_of(graph: nx.DiGraph) -> dict[str, Any]:
    """The graph's model, mode, sizes, dtype, tokens and FLOPs, for the rows' ``config``."""
    keys = ("model", "mode", "batch", "seq", "context", "dtype", "tokens", "params", "flops")
    return {k: graph.graph.get(k) for k in keys}


def _check_wafers(wafers: Any) -> int:
    if isinstance(wafers, bool) or not isinstance(wafers, int) or wafers < 1:
        raise ConfigError("wafers", wafers, "must be a whole number >= 1")
    return wafers


# -- kernels ----------------------------------------------------------------------------------
def kernel_opspec(
    kernel: str, sizes: dict[str, int], options: dict[str, Any] | None = None, dtype: str = "fp16"
) -> OpSpec:
    """The :class:`OpSpec` the layer graph would hold for this kernel (the GPU side's work).

    ``sizes`` are complete (as the wafer kernel's plan fills them in). gemv ``y = A x`` with
    ``A`` of ``m x k`` is the graph's one-token projection, a GEMM ``1 x k`` by ``k x m``.
    Attention FLOPs use the graph's counter (:func:`wse_sim.graph._flops.attention_flops`).
    """
    options = dict(options or {})
    if kernel == "gemm":
        return gemm_op(sizes["m"], sizes["n"], sizes["k"], dtype, name="gemm")
    if kernel == "gemv":
        return gemm_op(1, sizes["m"], sizes["k"], dtype, name="gemv")
    if kernel == "attention":
        from wse_sim.graph._flops import attention_flops

        phase = str(options.get("phase", "prefill"))
        causal = bool(options.get("causal", phase == "prefill"))
        s = sizes
        context = s.get("context") or s["seq"]
        op = attention_op(
            s["batch"],
            s["heads"],
            s["seq"],
            s["head_dim"],
            context,
            s.get("kv_heads"),
            causal,
            phase,
            dtype,
        )
        flops = attention_flops(s["batch"], s["heads"], s["seq"], context, s["head_dim"], causal)
        return replace(op, flops=float(flops))
    if kernel in ("layernorm", "rmsnorm"):
        return norm_op(sizes["rows"], sizes["cols"], kernel, dtype)
    if kernel == "softmax":
        return softmax_op(sizes["rows"], sizes["cols"], dtype)
    if kernel == "elementwise":
        return elementwise_op(sizes["length"], str(options.get("op", "add")), dtype)
    raise _unknown_kernel(kernel)


def kernel_work(kernel: str, op: OpSpec) -> str:
    """The :data:`WORK_GROUPS` key of a kernel op (GEMMs by shape, attention by phase)."""
    if kernel == "gemm":
        return gemm_group(op.sizes["m"], op.sizes["n"], op.sizes["k"])
    if kernel == "attention" and op.options.get("phase") == "decode":
        return "attention-decode"
    return kernel


def gpu_kernel_row(kernel: str, op: OpSpec, gpu: str, eager: bool = False) -> CompareRow:
    """One GPU's row for one kernel: :func:`op_cost` of ``op`` [s]."""
    spec = get_gpu(gpu)
    cost = op_cost(op, spec, eager)
    peak = spec.peak_flops(op.dtype)
    seconds = cost.seconds
    return CompareRow(
        system=spec.name,
        kind="gpu",
        work=f"kernel:{kernel}",
        seconds=seconds,
        flops=op.flops,
        tflops=_rate(op.flops, seconds),
        peak_tflops=peak / 1e12,
        peak_fraction=op.flops / (seconds * peak) if seconds > 0 else None,
        power_w=spec.tdp_w,
        energy_j=spec.tdp_w * seconds,
        config={
            "gpu": spec.name,
            "n_gpus": 1,
            "eager": eager,
            "dtype": op.dtype,
            "bound": cost.bound,
            "sizes": dict(op.sizes),
        },
        calibration=calibration_error(spec.name, kernel_work(kernel, op)),
    )


def wafer_kernel_result(
    kernel: str,
    sizes: dict[str, int | None],
    options: dict[str, Any] | None,
    dtype: str,
    opts: WaferOptions,
    spec: WaferSpec | None = None,
) -> Any:
    """Run the kernel on the wafer (:func:`run_kernel`; ``spec`` defaults to ``opts.spec()``);
    return the :class:`KernelResult`."""
    from wse_sim.kernels.runner import run_kernel

    clean = {k: v for k, v in sizes.items() if v is not None}
    return run_kernel(
        kernel,
        spec or opts.spec(),
        clean,
        algorithm=opts.algorithm,
        dtype=dtype,
        engine=opts.engine,
        **(options or {}),
    )


def wafer_kernel_row(kernel: str, res: Any, spec: WaferSpec) -> CompareRow:
    """The wafer's row from a :class:`KernelResult`; the peak is the whole mesh's."""
    peak = spec.peak_flops_per_s(res.dtype)
    power, power_source, notes = _wafer_power_fields(spec)
    seconds = float(res.seconds)
    x, y, w, h = res.region
    return CompareRow(
        system=_wafer_name(spec, 1),
        kind="wafer",
        work=f"kernel:{kernel}",
        seconds=seconds,
        flops=float(res.flops),
        tflops=_rate(float(res.flops), seconds),
        peak_tflops=peak / 1e12,
        peak_fraction=float(res.flops) / (seconds * peak) if seconds > 0 else None,
        power_w=power,
        energy_j=power * seconds if power is not None else None,
        config={
            "preset": spec.name,
            "mesh": _mesh_text(spec),
            "engine": res.engine,
            "algorithm": res.algorithm,
            "region": [x, y, w, h],
            "dtype": res.dtype,
            "cycles": res.cycles,
            "sizes": dict(res.sizes),
            "power_source": power_source,
        },
        notes=notes,
    )


def compare_kernel(
    kernel: str,
    sizes: dict[str, int | None],
    options: dict[str, Any] | None = None,
    dtype: str = "fp16",
    wafer: WaferOptions | None = None,
    gpus: GpuOptions | None = None,
) -> list[CompareRow]:
    """One kernel on the wafer (closed form unless ``wafer.engine`` says ``des``) and on one GPU
    of each kind. Rows: the wafer first, then the GPUs in the order given."""
    if kernel not in COMPARE_KERNELS:
        raise _unknown_kernel(kernel)
    gpus = gpus or GpuOptions()
    if gpus.n_gpus != 1:
        raise ConfigError(
            "gpus",
            gpus.n_gpus,
            "a kernel is compared on one GPU (multi-GPU kernels are not "
            "modelled); use 1 or compare a --model",
        )
    names = parse_gpus(gpus.gpus)
    wafer = wafer or WaferOptions()
    if wafer.wafers != 1:
        raise ConfigError("wafers", wafer.wafers, "a kernel runs on one wafer; use 1")
    options = dict(options or {})
    spec = wafer.spec()
    res = wafer_kernel_result(kernel, sizes, options, dtype, wafer, spec)
    full = {**res.sizes}
    opts = {**options, **(res.options or {})}
    op = kernel_opspec(kernel, full, opts, dtype)
    rows = [wafer_kernel_row(kernel, res, spec)]
    rows += [gpu_kernel_row(kernel, op, name, gpus.eager) for name in names]
    if not math.isclose(op.flops, rows[0].flops, rel_tol=1e-9):
        rows[0].notes.append(
            f"the wafer kernel counts {rows[0].flops:.6g} FLOPs, the graph's op {op.flops:.6g}"
        )
    workload = {"kernel": kernel, "sizes": full, "options": opts, "dtype": dtype}
    for row in rows:
        row.config["workload"] = workload
    return rows
