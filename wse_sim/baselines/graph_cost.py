"""Cost a whole layer graph (the compiler's networkx DiGraph of OpSpecs) on n GPUs.

One step's time is the sum over ops, in graph order, of each op's kernel time on the busiest
GPU (:func:`wse_sim.baselines.model.op_cost` after :func:`~wse_sim.baselines.sharding.shard_op`),
plus communication and overheads:

* tensor parallelism: two allreduces of ``tokens x d_model`` activations per layer in the forward
  pass (after the attention and MLP blocks, one per forward norm) and two more in the backward
  pass of a training step; not overlapped with compute (Megatron-LM without overlap);
* data parallelism: one allreduce of the gradients (the graph's ``allreduce`` ops, or else 2
  bytes per parameter of the optimizer ops), overlapped with the backward pass: only
  ``max(t_allreduce - t_backward, t_latency)`` shows;
* decode: ``decode_layer_overhead_s`` per transformer layer.

Per-op seconds add up exactly to the step's seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from wse_sim.baselines.gpus import GpuSpec, dtype_bytes, get_gpu
from wse_sim.baselines.model import KernelCost, allreduce_seconds, op_cost
from wse_sim.baselines.sharding import PARALLEL_MODES, shard_op, split_factor
from wse_sim.errors import ConfigError
from wse_sim.graph.ops import OpSpec

GRAD_BYTES_PER_PARAM = 2
"""Gradient bytes per parameter in the data-parallel allreduce (fp16/bf16 gradients) [bytes]."""


@dataclass
class GpuOpCost:
    """One op (or one communication/overhead item) of a GPU step; times in seconds.

    ``seconds`` is the op's share of the step (for the overlapped DP allreduce: its exposed
    part); ``comm_s`` is the full collective time.
    """

    name: str
    kind: str
    kernel: str
    stage: str
    layer: int | None
    seconds: float
    launch_s: float
    compute_s: float
    memory_s: float
    comm_s: float
    flops: float
    bytes: float
    bound: str


@dataclass
class GpuResult:
    """A layer graph costed on ``n_gpus`` GPUs.

    Attributes:
        gpu, n_gpus, parallel, eager, mode: what was costed.
        seconds: time of one step (a forward pass, a decode step or a training step) [s].
        flops: FLOPs of the whole graph (all GPUs together) [FLOP].
        tokens: tokens the step processes [tokens].
        tokens_per_s: ``tokens / seconds`` [tokens/s].
        tflops: achieved rate of all GPUs together, ``flops / seconds / 1e12`` [TFLOP/s].
        peak_fraction: ``flops / (seconds * n_gpus * peak[dtype])`` (model-FLOPs utilization) [1].
        power_w: ``n_gpus * tdp_w`` [W]; energy_j: ``power_w * seconds`` [J] (an upper bound:
            the GPUs are assumed to draw their TDP throughout).
        comm_s: collective time that shows in ``seconds`` [s].
        breakdown: seconds by op kind, plus ``tp_allreduce``, ``dp_allreduce``, ``overhead``.
        memory_bytes_per_gpu: weights and state (KV cache, optimizer) one GPU holds [bytes];
            activations are not counted. fits_memory: it is at most ``hbm_bytes``.
        per_op: every op and communication item; their ``seconds`` sum to ``seconds``.
        notes: anything the numbers rest on that a reader should know.
    """

    gpu: str
    n_gpus: int
    parallel: str
    eager: bool
    mode: str
    dtype: str
    seconds: float
    flops: float
    tokens: float
    tokens_per_s: float
    tflops: float
    peak_fraction: float
    power_w: float
    energy_j: float
    comm_s: float
    memory_bytes_per_gpu: float
    fits_memory: bool
    breakdown: dict[str, float] = field(default_factory=dict)
    per_op: list[GpuOpCost] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _ops(graph: nx.DiGraph) -> list[OpSpec]:
    ops = []
    for node, data in graph.nodes(data=True):
        op = data.get("op")
        if not isinstance(op, OpSpec):
            raise ConfigError(f"graph node {node!r}.op", type(op).__name__, "must be an OpSpec")
        ops.append(op)
    return ops


def _mode(graph: nx.DiGraph, ops: list[OpSpec]) -> str:
    mode = graph.graph.get("mode")
    if mode:
        return str(mode)
    if any(op.stage == "bwd" for op in ops):
        return "train"
    if any(op.kernel == "attention" and op.options.get("phase") == "decode" for op in ops):
        return "decode"
    return "prefill"


def _dtype(graph: nx.DiGraph, ops: list[OpSpec]) -> str:
    if graph.graph.get("dtype"):
        return str(graph.graph["dtype"])
    counts = Counter(op.dtype for op in ops if op.kernel in ("gemm", "attention"))
    return counts.most_common(1)[0][0] if counts else (ops[0].dtype if ops else "fp16")


def _entry(op: OpSpec, cost: KernelCost) -> GpuOpCost:
    return GpuOpCost(
        name=op.name,
        kind=op.kind,
        kernel=op.kernel,
        stage=op.stage,
        layer=op.layer,
        seconds=cost.seconds,
        launch_s=cost.launch_s,
        compute_s=cost.compute_s,
        memory_s=cost.memory_s,
        comm_s=cost.comm_s,
        flops=cost.flops,
        bytes=cost.bytes,
        bound=cost.bound,
    )


def _comm_entry(
    name: str, kind: str, stage: str, layer: int | None, shown: float, full: float, nbytes: float
) -> GpuOpCost:
    return GpuOpCost(name, kind, "allreduce", stage, layer, shown, 0, 0, 0, full, 0, nbytes, "comm")


def _overhead_entry(name: str, layer: int | None, seconds: float) -> GpuOpCost:
    return GpuOpCost(name, "overhead", "", "fwd", layer, seconds, 0, 0, 0, 0, 0, 0, "overhead")


def check_parallel(gpu: GpuSpec, n_gpus: Any, parallel: Any) -> int:
    """Validate ``n_gpus`` (1..``gpu.max_gpus``) and ``parallel`` (tp or dp); return n_gpus."""
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ConfigError("n_gpus", n_gpus, f"must be a whole number from 1 to {gpu.max_gpus}")
    if n_gpus > gpu.max_gpus:
        raise ConfigError(
            "n_gpus", n_gpus, f"at most {gpu.max_gpus} (one NVLink node; multi-node not modelled)"
        )
    if parallel not in PARALLEL_MODES:
        raise ConfigError("parallel", parallel, "use tp (tensor) or dp (data parallel)")
    return n_gpus


def cost_graph(
    graph: nx.DiGraph,
    gpu: GpuSpec | str,
    n_gpus: int = 1,
    parallel: str = "tp",
    eager: bool = False,
    tokens: float | None = None,
) -> GpuResult:
    """Time one step of ``graph`` on ``n_gpus`` GPUs of model ``gpu`` [s] (see module doc).

    ``tokens`` defaults to ``graph.graph["tokens"]``. ``eager`` charges every kernel the eager
    host-timed launch overhead instead of the CUDA-graph one.
    """
    gpu = get_gpu(gpu)
    n = check_parallel(gpu, n_gpus, parallel)
    ops = _ops(graph)
    mode = _mode(graph, ops)
    dtype = _dtype(graph, ops)
    notes: list[str] = []
    if tokens is None:
        tokens = graph.graph.get("tokens")
    if tokens is None:
        notes.append("token count unknown (graph has no 'tokens' attribute): tokens/s is 0")
    tokens_f = float(tokens or 0.0)
    if parallel == "dp" and n > 1:
        batch = graph.graph.get("batch")
        if isinstance(batch, int) and batch < n:
            notes.append(f"batch {batch} < {n} GPUs: {n - batch} data-parallel GPUs idle")

    per_op: list[GpuOpCost] = []
    dp_ar: list[tuple[OpSpec, float]] = []
    bwd_s = 0.0
    weights = state = 0.0
    unknown = set()
    for op in ops:
        if op.kind == "allreduce":
            dp_ar.append((op, op.input_bytes or op.output_bytes or op.state_bytes))
            continue
        part = shard_op(op, n, parallel, tokens_f or None)
        cost = op_cost(part, gpu, eager)
        if op.kernel not in ("gemm", "attention", "layernorm", "rmsnorm", "elementwise", "softmax"):
            unknown.add(op.kernel)
        per_op.append(_entry(part, cost))
        if op.stage == "bwd":
            bwd_s += cost.seconds
        share = split_factor(op, n, parallel)
        weights += (op.weight_bytes if op.stage == "fwd" else 0.0) * share
        state += op.state_bytes * share
    params = graph.graph.get("params")
    if isinstance(params, (int, float)) and params > 0:
        # the graph's parameter count does not count a tied embedding twice
        weights = params * dtype_bytes(dtype) / (n if parallel == "tp" else 1)
    memory = weights + state
    if unknown:
        notes.append(f"kernels costed as a plain roofline: {', '.join(sorted(unknown))}")

    if parallel == "tp" and n > 1:
        per_op.extend(_tp_allreduces(ops, gpu, n, mode))
    if parallel == "dp" and n > 1 and mode == "train":
        if not dp_ar:
            grads = sum(
                op.sizes.get("length", 0) * GRAD_BYTES_PER_PARAM
                for op in ops
                if op.options.get("op") == "adamw"
            )
            dp_ar = [(_grad_op(), float(grads))] if grads > 0 else []
        per_op.extend(_dp_allreduces(dp_ar, gpu, n, bwd_s))
    if mode == "decode" and gpu.decode_layer_overhead_s > 0:
        for layer in sorted({op.layer for op in ops if op.layer is not None}):
            t = gpu.decode_layer_overhead_s
            per_op.append(_overhead_entry(f"L{layer}.decode_overhead", layer, t))

    seconds = sum(e.seconds for e in per_op)
    flops = sum(op.flops for op in ops)
    peak = gpu.peak_flops(dtype)
    breakdown: dict[str, float] = {}
    for e in per_op:
        breakdown[e.kind] = breakdown.get(e.kind, 0.0) + e.seconds
    comm = sum(e.seconds for e in per_op if e.bound == "comm")
    power = gpu.tdp_w * n
    if memory > gpu.hbm_bytes:
        notes.append(
            f"weights and state need {memory / 1e9:.1f} GB per GPU, more than the "
            f"{gpu.hbm_bytes / 1e9:.0f} GB of HBM (activations not counted)"
        )
    return GpuResult(
        gpu=gpu.name,
        n_gpus=n,
        parallel=parallel,
        eager=eager,
        mode=mode,
        dtype=dtype,
        seconds=seconds,
        flops=flops,
        tokens=tokens_f,
        tokens_per_s=tokens_f / seconds if seconds > 0 else 0.0,
        tflops=flops / seconds / 1e12 if seconds > 0 else 0.0,
        peak_fraction=flops / (seconds * n * peak) if seconds > 0 else 0.0,
        power_w=power,
        energy_j=power * seconds,
        comm_s=comm,
        memory_bytes_per_gpu=memory,
        fits_memory=memory <= gpu.hbm_bytes,
        breakdown=breakdown,
        per_op=per_op,
        notes=notes,
    )


def _grad_op() -> OpSpec:
    return OpSpec("grad_allreduce", "allreduce", None, "bwd", "allreduce", {}, 0.0)


def _tp_allreduces(ops: list[OpSpec], gpu: GpuSpec, n: int, mode: str) -> list[GpuOpCost]:
    """One allreduce of ``rows x cols`` activations per forward norm of a layer (two per layer),
    and as many again in the backward pass of a training step."""
    out = []
    passes = ("fwd", "bwd") if mode == "train" else ("fwd",)
    for op in ops:
        if op.kernel not in ("layernorm", "rmsnorm") or op.layer is None or op.stage != "fwd":
            continue
        nbytes = float(op.sizes.get("rows", 0) * op.sizes.get("cols", 0) * dtype_bytes(op.dtype))
        t = allreduce_seconds(gpu, nbytes, n)
        for stage in passes:
            name = f"{op.name}.tp_allreduce.{stage}"
            out.append(_comm_entry(name, "tp_allreduce", stage, op.layer, t, t, nbytes))
    return out


def _dp_allreduces(
    items: list[tuple[OpSpec, float]], gpu: GpuSpec, n: int, bwd_s: float
) -> list[GpuOpCost]:
    """Gradient allreduces overlapped with the backward pass (``bwd_s`` seconds): the exposed
    time ``max(total - bwd_s, latency)`` is shared out in proportion to each one's time."""
    times = [allreduce_seconds(gpu, nbytes, n) for _, nbytes in items]
    total = sum(times)
    if total <= 0:
        return []
    exposed = max(total - bwd_s, min(total, gpu.allreduce_latency_s))
    return [
        _comm_entry(op.name, "dp_allreduce", op.stage, op.layer, exposed * t / total, t, nbytes)
        for (op, nbytes), t in zip(items, times)
    ]
