"""Calibrated GPU kernel-time model: GEMM, attention, memory-bound kernels and allreduce.

Every kernel costs

    t = t_launch + max(t_compute, t_memory)                                    [s]

* ``t_launch`` is :attr:`GpuSpec.launch_graph_s` (CUDA graphs / compiled) or
  :attr:`GpuSpec.launch_eager_s` (eager, host-timed with a sync).
* GEMM ``t_compute`` tiles the output over the SMs: a tile of ``tm x tn`` outputs takes
  ``2 tm tn (k + K0) / (P_sm eta_c eff_tile)`` and the tiles run in ``ceil(tiles / sms)`` waves
  (wave quantisation). The tile shape is the candidate with the least time (as cuBLAS's
  heuristics pick one), so small and skinny GEMMs lose efficiency to partial tiles, short ``k``
  and idle SMs. With fewer tiles than SMs, split-k variants (the reduction divided over more
  SMs, partial sums through HBM) are candidates too.
* Attention ``t_compute = F / (P eta_max L / (L + L_half))`` with ``L`` the key length (halved for
  causal prefill), times the SM occupancy when there are fewer blocks than SMs.
* ``t_memory = bytes / (hbm_bw eta_m r_class)``, with ``r_class`` the fraction of stream
  bandwidth a kernel class reaches (:data:`BW_RATIO`).

Documentation of every parameter and its source: ``docs/baselines.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from wse_sim.baselines.gpus import GpuSpec, dtype_bytes, get_gpu
from wse_sim.errors import ConfigError
from wse_sim.graph._flops import attention_flops
from wse_sim.graph.ops import OpSpec

GEMM_TILES: tuple[tuple[int, int, float], ...] = (
    (256, 128, 1.00),
    (128, 256, 1.00),
    (128, 128, 0.97),
    (128, 64, 0.90),
    (64, 128, 0.90),
    (64, 64, 0.75),
)
"""Candidate output tiles ``(tm, tn, eff_tile)``: cuBLAS/CUTLASS tile shapes for Ampere/Hopper
tensor cores. ``eff_tile`` is the tile's efficiency relative to the largest tiles (smaller tiles
re-read more operands per FLOP); chosen by hand and checked against the A100-80GB 8192xNxN
and square cuBLASLt series."""

GEMM_K_OVERHEAD = 64
"""Per-tile prologue/epilogue cost, in elements of ``k`` [elements]: a tile with reduction length
``k`` costs as much as ``k + 64`` steady-state MACs per output. Chosen by hand against the
8192xNxN series (N = 128..1024, where ``k`` is short)."""

GEMM_SPLITS = (1, 2, 4, 8, 16, 32)
"""Split-k factors tried when the output has fewer tiles than SMs (skinny GEMMs, GEMV-like
decode projections): each of ``split`` partial products reduces ``k / split``."""

GEMM_SPLIT_MIN_K = 256
"""Shortest reduction slice a split-k part gets [elements]."""

GEMM_PARTIAL_BYTES = 4
"""Bytes per fp32 partial-sum element; a split-k GEMM writes and re-reads ``split - 1`` partial
``m x n`` outputs [bytes]."""

REF_ETA_M_A100 = 0.84
"""``eta_m`` of the A100-80GB, against which the kernel-class fractions below were measured."""

BW_FRACTION_A100: dict[str, float] = {
    "copy": REF_ETA_M_A100,
    "elementwise": 0.77,
    "norm": 0.76,
    "softmax": 0.55,
}
"""Fraction of peak HBM bandwidth reached per kernel class on A100-80GB (REF: GELU 77%,
layernorm 76%, softmax 55%; a plain copy is the stream benchmark)."""

BW_RATIO: dict[str, float] = {k: v / REF_ETA_M_A100 for k, v in BW_FRACTION_A100.items()}
"""Fraction of the stream bandwidth (``eta_m``) a kernel class reaches; assumed to carry over
from the A100-80GB to the other GPUs (estimate)."""

ADAMW_BYTES_PER_PARAM = 28
"""HBM traffic of a mixed-precision AdamW step per parameter [bytes]: read fp32 master weight and
two fp32 moments plus the fp16 gradient (14 B), write them back (12 B) and the fp16 weight (2 B)."""

ATTN_BLOCK_Q = 128
"""Query rows per FlashAttention thread block [tokens] (FA2/FA3 use 128 for head dim 128)."""

NORM_KERNELS = ("layernorm", "rmsnorm")


@dataclass(frozen=True)
class KernelCost:
    """Time of one kernel on one GPU.

    Attributes:
        seconds: total time [s] = ``launch_s + max(compute_s, memory_s)`` (+ ``comm_s``).
        launch_s, compute_s, memory_s, comm_s: the parts [s].
        flops: FLOPs the kernel executes [FLOP].
        bytes: HBM traffic [bytes] (for collectives: the message size).
        bound: ``"compute"``, ``"memory"``, ``"launch"`` (launch exceeds both) or ``"comm"``.
        detail: model internals (tile, waves, efficiency...).
    """

    seconds: float
    launch_s: float
    compute_s: float
    memory_s: float
    flops: float
    bytes: float
    bound: str
    comm_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def tflops(self) -> float:
        """Achieved rate [TFLOP/s] (0 for a zero-time kernel)."""
        return self.flops / self.seconds / 1e12 if self.seconds > 0 else 0.0


def launch_seconds(gpu: GpuSpec, eager: bool) -> float:
    """Per-kernel overhead [s]: eager host-timed or graph/compiled."""
    return gpu.launch_eager_s if eager else gpu.launch_graph_s


def _finish(
    launch: float,
    compute: float,
    memory: float,
    flops: float,
    nbytes: float,
    detail: dict[str, Any],
) -> KernelCost:
    body = max(compute, memory)
    bound = "launch" if launch > body else ("compute" if compute >= memory else "memory")
    return KernelCost(launch + body, launch, compute, memory, flops, nbytes, bound, 0.0, detail)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        raise ConfigError(name, value, "must be a whole number >= 1")
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(name, value, "must be a whole number >= 1")
    return int(value)


# -- GEMM ---------------------------------------------------------------------------------------
def gemm_cost(
    gpu: GpuSpec | str,
    m: int,
    n: int,
    k: int,
    dtype: str = "fp16",
    eager: bool = False,
    batch: int = 1,
) -> KernelCost:
    """Time of ``batch`` GEMMs ``C[m, n] = A[m, k] @ B[k, n]`` [s]; 2*m*n*k FLOPs each.

    HBM traffic is the operands once: ``(m k + k n + m n) * bytes_per_element * batch``.
    """
    gpu = get_gpu(gpu)
    m, n, k = (_positive_int(s, v) for s, v in (("m", m), ("n", n), ("k", k)))
    batch = _positive_int("batch", batch)
    bpe = dtype_bytes(dtype)
    peak = gpu.peak_flops(dtype)
    eta = gpu.gemm_ceiling(dtype)
    p_sm = peak / gpu.sms
    flops = 2.0 * m * n * k * batch
    nbytes = float(m * k + k * n + m * n) * bpe * batch
    launch = launch_seconds(gpu, eager)
    best: KernelCost | None = None
    for tm, tn, eff in GEMM_TILES:
        tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
        for split in GEMM_SPLITS:
            if split > 1 and (tiles >= gpu.sms or k < split * GEMM_SPLIT_MIN_K):
                continue
            k_part = math.ceil(k / split)
            waves = math.ceil(tiles * split / gpu.sms)
            compute = waves * 2.0 * tm * tn * (k_part + GEMM_K_OVERHEAD) / (p_sm * eta * eff)
            partials = (split - 1) * 2.0 * m * n * GEMM_PARTIAL_BYTES * batch if split > 1 else 0.0
            memory = (nbytes + partials) / gpu.stream_bw
            detail = {
                "tile": [tm, tn],
                "split_k": split,
                "tiles": tiles,
                "waves": waves,
                "eff_tile": eff,
                "efficiency": flops / (compute * peak),
            }
            cost = _finish(launch, compute, memory, flops, nbytes + partials, detail)
            if best is None or cost.seconds < best.seconds * (1 - 1e-12):
                best = cost
    assert best is not None
    return best


# -- attention ----------------------------------------------------------------------------------
def attention_efficiency(gpu: GpuSpec | str, key_len: float) -> float:
    """``eta_max * L / (L + L_half)`` [fraction of peak] for key length ``L`` [tokens]."""
    gpu = get_gpu(gpu)
    if key_len <= 0:
        return 0.0
    return gpu.attn_eta_max * key_len / (key_len + gpu.attn_l_half)


def attention_bytes(
    batch: int, heads: int, kv_heads: int, seq: int, context: int, head_dim: int, dtype: str
) -> float:
    """HBM traffic of fused attention [bytes]: Q and O (seq rows), K and V (context rows)."""
    bpe = dtype_bytes(dtype)
    return float(bpe * head_dim * batch * (2 * heads * seq + 2 * kv_heads * context))


def attention_cost(
    gpu: GpuSpec | str,
    batch: int,
    heads: int,
    seq: int,
    head_dim: int,
    context: int | None = None,
    kv_heads: int | None = None,
    causal: bool = False,
    phase: str = "prefill",
    dtype: str = "fp16",
    eager: bool = False,
    flops: float | None = None,
    nbytes: float | None = None,
) -> KernelCost:
    """Time of one fused (FlashAttention-style) attention kernel [s].

    ``seq`` query tokens per sequence attend to ``context`` keys (``context = seq`` for prefill;
    decode has ``seq = 1``). The efficiency uses the key length, halved for causal prefill (a
    causal query sees on average half the keys). Blocks are ``batch * heads * ceil(seq / 128)``;
    with fewer blocks than SMs the efficiency scales by ``blocks / sms``.
    """
    gpu = get_gpu(gpu)
    batch, heads, seq, head_dim = (
        _positive_int(s, v)
        for s, v in (("batch", batch), ("heads", heads), ("seq", seq), ("head_dim", head_dim))
    )
    if phase not in ("prefill", "decode"):
        raise ConfigError("phase", phase, "use prefill or decode")
    if context is None:
        context = seq if phase == "prefill" else 1
    context = _positive_int("context", context)
    kv_heads = heads if kv_heads is None else _positive_int("kv_heads", kv_heads)
    causal_prefill = bool(causal) and phase == "prefill" and seq == context and seq > 1
    if flops is None:
        flops = attention_flops(batch, heads, seq, context, head_dim, causal_prefill)
    if nbytes is None:
        nbytes = attention_bytes(batch, heads, kv_heads, seq, context, head_dim, dtype)
    key_len = context / 2 if causal_prefill else context
    eta = attention_efficiency(gpu, key_len)
    blocks = batch * heads * math.ceil(seq / ATTN_BLOCK_Q)
    occupancy = min(1.0, blocks / gpu.sms)
    if phase == "decode":
        # flash-decoding splits the keys too, so every SM has work
        occupancy = 1.0
    compute = flops / (gpu.peak_flops(dtype) * eta * occupancy)
    memory = nbytes / gpu.stream_bw
    detail = {"efficiency": eta * occupancy, "key_len": key_len, "blocks": blocks}
    return _finish(launch_seconds(gpu, eager), compute, memory, flops, nbytes, detail)


# -- memory-bound kernels -----------------------------------------------------------------------
def stream_cost(
    gpu: GpuSpec | str,
    nbytes: float,
    kernel_class: str = "copy",
    flops: float = 0.0,
    eager: bool = False,
) -> KernelCost:
    """Time of a memory-bound kernel moving ``nbytes`` [bytes] and doing ``flops`` [FLOP].

    ``kernel_class`` picks the bandwidth fraction (:data:`BW_RATIO`): copy, elementwise, norm or
    softmax. FLOPs run on the CUDA cores at the fp32 rate times its ceiling.
    """
    gpu = get_gpu(gpu)
    try:
        ratio = BW_RATIO[kernel_class]
    except KeyError:
        raise ConfigError(
            "kernel_class", kernel_class, f"use one of {', '.join(BW_RATIO)}"
        ) from None
    if nbytes < 0 or flops < 0:
        raise ConfigError("nbytes", nbytes, "bytes and flops must be >= 0")
    memory = nbytes / (gpu.stream_bw * ratio)
    compute = flops / (gpu.peak_flops("fp32") * gpu.gemm_ceiling("fp32"))
    detail = {"bw_fraction": gpu.eta_m * ratio, "class": kernel_class}
    return _finish(launch_seconds(gpu, eager), compute, memory, flops, nbytes, detail)


# -- collectives --------------------------------------------------------------------------------
def allreduce_seconds(gpu: GpuSpec | str, nbytes: float, n_gpus: int) -> float:
    """Ring allreduce of ``nbytes`` [bytes] over ``n_gpus`` [s]: ``lat + 2 (n-1)/n B / busbw``.

    nccl-tests define bus bandwidth so that this is exact: ``busbw = 2 (n-1)/n * B / t``. Zero
    for one GPU or an empty message.
    """
    gpu = get_gpu(gpu)
    n_gpus = _positive_int("n_gpus", n_gpus)
    if n_gpus == 1 or nbytes <= 0:
        return 0.0
    return gpu.allreduce_latency_s + 2.0 * (n_gpus - 1) / n_gpus * nbytes / gpu.allreduce_busbw


def allreduce_cost(gpu: GpuSpec | str, nbytes: float, n_gpus: int) -> KernelCost:
    """:func:`allreduce_seconds` as a :class:`KernelCost` (bound ``"comm"``)."""
    t = allreduce_seconds(gpu, nbytes, n_gpus)
    return KernelCost(t, 0.0, 0.0, 0.0, 0.0, float(nbytes), "comm", t, {"n_gpus": n_gpus})


# -- an OpSpec ----------------------------------------------------------------------------------
def op_traffic(op: OpSpec) -> float:
    """HBM bytes an op moves [bytes]: weights + inputs + outputs, with three exceptions.

    * attention also reads its state (the KV cache in decode);
    * an AdamW update moves :data:`ADAMW_BYTES_PER_PARAM` per parameter (``sizes["length"]``),
      whatever its byte fields say (they describe what it holds, not what it moves);
    * an embedding lookup reads only the rows it gathers (as many bytes as it writes), not the
      whole table in ``weight_bytes``.
    """
    if op.options.get("op") == "adamw" and "length" in op.sizes:
        return float(op.sizes["length"]) * ADAMW_BYTES_PER_PARAM
    if op.kind == "embedding":
        return max(op.input_bytes, op.output_bytes) + op.output_bytes
    state = op.state_bytes if op.kernel == "attention" else 0.0
    return op.weight_bytes + op.input_bytes + op.output_bytes + state


def _size(op: OpSpec, name: str, default: int | None = None) -> int:
    if name in op.sizes:
        return _positive_int(f"{op.name}.sizes.{name}", op.sizes[name])
    if default is not None:
        return default
    raise ConfigError(f"{op.name}.sizes", sorted(op.sizes), f"kernel {op.kernel} needs '{name}'")


def op_cost(op: OpSpec, gpu: GpuSpec | str, eager: bool = False) -> KernelCost:
    """Time of one graph op on one GPU [s], dispatched on ``op.kernel``.

    gemm and attention are costed from their sizes; memory-bound kernels from the op's bytes
    (falling back to the sizes when the op carries no bytes). An unknown kernel gets a plain
    roofline at the GEMM ceiling and the stream bandwidth.
    """
    gpu = get_gpu(gpu)
    if op.kernel == "gemm":
        return gemm_cost(
            gpu,
            _size(op, "m"),
            _size(op, "n"),
            _size(op, "k"),
            op.dtype,
            eager,
            _size(op, "batch", 1),
        )
    if op.kernel == "attention":
        phase = str(op.options.get("phase", "prefill"))
        seq = _size(op, "seq", 1 if phase == "decode" else None)
        traffic = op_traffic(op)
        return attention_cost(
            gpu,
            batch=_size(op, "batch"),
            heads=_size(op, "heads"),
            seq=seq,
            head_dim=_size(op, "head_dim"),
            context=_size(op, "context", seq if phase == "prefill" else None),
            kv_heads=_size(op, "kv_heads", _size(op, "heads")),
            causal=bool(op.options.get("causal", False)),
            phase=phase,
            dtype=op.dtype,
            eager=eager,
            flops=op.flops if op.flops > 0 else None,
            nbytes=traffic if traffic > 0 else None,
        )
    if op.kernel in NORM_KERNELS or op.kernel in ("elementwise", "softmax"):
        nbytes = op_traffic(op)
        if nbytes <= 0:
            nbytes = _default_stream_bytes(op)
        return stream_cost(gpu, nbytes, kernel_class(op), op.flops, eager)
    # unknown kernel: a plain roofline
    nbytes = op_traffic(op)
    compute = op.flops / (gpu.peak_flops(op.dtype) * gpu.gemm_ceiling(op.dtype))
    memory = nbytes / gpu.stream_bw
    return _finish(
        launch_seconds(gpu, eager), compute, memory, op.flops, nbytes, {"roofline": True}
    )


def kernel_class(op: OpSpec) -> str:
    """Bandwidth class of a memory-bound op: copy, elementwise, norm or softmax."""
    if op.kernel in NORM_KERNELS:
        return "norm"
    if op.kernel == "softmax":
        return "softmax"
    return "copy" if op.options.get("op") == "copy" else "elementwise"


def _default_stream_bytes(op: OpSpec) -> float:
    """Bytes of a memory-bound op from its sizes when it carries none [bytes]."""
    bpe = dtype_bytes(op.dtype)
    if op.kernel in NORM_KERNELS or op.kernel == "softmax":
        rows, cols = _size(op, "rows"), _size(op, "cols")
        return float(2 * rows * cols * bpe + (cols * bpe if op.kernel in NORM_KERNELS else 0))
    length = _size(op, "length")
    kind = op.options.get("op", "add")
    reads = 2 if kind in ("add", "mul") else 1
    return float((reads + 1) * length * bpe)
