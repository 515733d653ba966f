"""GPU specifications and calibration parameters: the registry :data:`GPUS`.

Every value carries its source in :attr:`GpuSpec.sources` (shown in ``docs/baselines.md``).
"REF" is /work/shared/reference/gpu-baselines.md, which collects NVIDIA's data sheets and public
measurements (cuBLAS/cuBLASLt sweeps, stream benchmarks, FlashAttention-2/3 papers, Megatron-LM,
nccl-tests). Values marked "estimate" have no public number behind them; they are our choice,
and ``benchmarks/gpu_measure.py`` exists to replace them with measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from wse_sim.errors import ConfigError

DTYPE_BYTES: dict[str, int] = {"fp8": 1, "fp16": 2, "bf16": 2, "fp32": 4}
"""Bytes per element of each dtype the GPU model understands."""


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model: public specs plus the calibration parameters of the performance model.

    Attributes (units in brackets):
        name: registry name, e.g. ``"h100"``.
        description: one line for ``wse-sim presets gpus``.
        peak_tflops: dense peak by dtype [TFLOP/s]; ``fp32`` is the non-tensor-core rate.
        hbm_bytes: HBM capacity [bytes, decimal GB as on the data sheet].
        hbm_bw: HBM peak bandwidth [bytes/s].
        l2_bytes: L2 cache [bytes].
        sms: streaming multiprocessors [count].
        clock_hz: boost clock [Hz].
        nvlink_bw: NVLink bandwidth, both directions summed [bytes/s].
        tdp_w: board power limit [W].
        max_gpus: GPUs in one NVLink domain (the most ``cost_graph`` accepts) [count].
        eta_c: large-GEMM ceiling, fraction of ``peak_tflops`` by dtype [1].
        eta_m: fraction of ``hbm_bw`` a large streaming copy reaches [1].
        launch_graph_s: per-kernel overhead with CUDA graphs or a compiler [s].
        launch_eager_s: per-kernel overhead of an eager, host-timed call with a sync [s].
        attn_eta_max: attention efficiency (fraction of peak) at infinite sequence length [1].
        attn_l_half: key length at which attention reaches half of ``attn_eta_max`` [tokens].
        decode_layer_overhead_s: extra time per transformer layer in a decode step [s].
        allreduce_busbw: NCCL allreduce bus bandwidth, 8 GPUs, large messages [bytes/s].
        allreduce_latency_s: fixed cost of one allreduce call [s].
        sources: field name -> where its value comes from.
    """

    name: str
    description: str
    peak_tflops: dict[str, float]
    hbm_bytes: float
    hbm_bw: float
    l2_bytes: float
    sms: int
    clock_hz: float
    nvlink_bw: float
    tdp_w: float
    eta_c: dict[str, float]
    eta_m: float
    launch_graph_s: float
    launch_eager_s: float
    attn_eta_max: float
    attn_l_half: float
    decode_layer_overhead_s: float
    allreduce_busbw: float
    allreduce_latency_s: float
    max_gpus: int = 8
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "description", "sources"):
                continue
            if isinstance(value, dict):
                for key, v in value.items():
                    _check_positive(f"{self.name}.{f.name}[{key}]", v)
                continue
            _check_positive(f"{self.name}.{f.name}", value, allow_zero=f.name.endswith("_s"))
        for dtype, eta in self.eta_c.items():
            if eta > 1.0:
                raise ConfigError(f"{self.name}.eta_c[{dtype}]", eta, "must be in (0, 1]")
        for name in ("eta_m", "attn_eta_max"):
            if getattr(self, name) > 1.0:
                raise ConfigError(f"{self.name}.{name}", getattr(self, name), "must be in (0, 1]")

    # -- derived quantities -------------------------------------------------------------------
    def peak_flops(self, dtype: str) -> float:
        """Dense peak for ``dtype`` [FLOP/s]; ConfigError when this GPU has no such rate."""
        try:
            return self.peak_tflops[dtype] * 1e12
        except KeyError:
            raise ConfigError(
                "dtype", dtype, f"{self.name} supports {', '.join(self.peak_tflops)}"
            ) from None

    def gemm_ceiling(self, dtype: str) -> float:
        """Large-GEMM efficiency ceiling for ``dtype`` [fraction of peak]."""
        self.peak_flops(dtype)
        return self.eta_c.get(dtype, self.eta_c["fp16"])

    @property
    def stream_bw(self) -> float:
        """Achieved bandwidth of a large streaming copy: ``hbm_bw * eta_m`` [bytes/s]."""
        return self.hbm_bw * self.eta_m

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        need = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ConfigError(name, value, f"must be {need}")


# -- sources ----------------------------------------------------------------------------------
_SPEC = "REF spec table (NVIDIA data sheets, dense)"
_LAUNCH_G = "REF: 4-5 us per kernel with CUDA graphs or a compiler"
_LAUNCH_E = (
    "REF: 20-25 us for eager host-timed calls; 27 us fits the A100-80GB 8192xNxN series, "
    "whose smallest points (N = 64: 29 us in all) imply 27-29 us"
)
_DECODE = (
    "estimate (no public per-layer figure in REF): memory-pipeline ramp and tail of a layer's "
    "short kernels beyond their launch cost; replace with gpu_measure.py data"
)
_LAT = "REF: per-call allreduce latency 25-45 us; midpoint"
_MAXG = "one NVLink/NVSwitch node (HGX 8-GPU board); multi-node is not modelled"

_A100_COMMON_SOURCES = {
    "peak_tflops": _SPEC,
    "l2_bytes": _SPEC,
    "sms": _SPEC,
    "clock_hz": _SPEC,
    "nvlink_bw": _SPEC,
    "tdp_w": _SPEC,
    "hbm_bytes": _SPEC,
    "hbm_bw": _SPEC,
    "eta_c": "REF: A100 BF16 large-GEMM ceiling about 271 TFLOP/s = 87% of 312; fp32 (non-tensor) "
    "0.90 is an estimate",
    "launch_graph_s": _LAUNCH_G,
    "launch_eager_s": _LAUNCH_E,
    "attn_eta_max": "REF: FlashAttention-2 reaches 50-73% of peak on A100; fitted with attn_l_half "
    "so that seq 512 gives 50% and seq 16k gives 73% (head dim 128, non-causal)",
    "attn_l_half": "fitted together with attn_eta_max (see there)",
    "decode_layer_overhead_s": _DECODE,
    "allreduce_busbw": "REF: nccl-tests allreduce bus bandwidth, 8x A100, large messages, ~231 GB/s",
    "allreduce_latency_s": _LAT,
    "max_gpus": _MAXG,
}

_HOPPER_COMMON_SOURCES = {
    **_A100_COMMON_SOURCES,
    "eta_c": "REF: H100 BF16 ceiling about 795 TFLOP/s (80%), FP8 about 1400 TFLOP/s (71%); "
    "fp32 (non-tensor) 0.90 is an estimate",
    "attn_eta_max": "REF: FlashAttention-3 FP16 on H100, head dim 128, non-causal: ~740 TFLOP/s "
    "(75%) at long sequences (16k), ~470 TFLOP/s at 512; fitted with attn_l_half",
    "allreduce_busbw": "REF: nccl-tests allreduce bus bandwidth, 8x H100/H200, large messages, "
    "~480 GB/s",
}

_A100_40 = GpuSpec(
    name="a100-40gb",
    description="NVIDIA A100 SXM4 40GB: 312 TFLOP/s fp16, 1555 GB/s HBM2, 108 SMs, 400 W",
    peak_tflops={"fp16": 312.0, "bf16": 312.0, "fp32": 19.5},
    hbm_bytes=40e9,
    hbm_bw=1555e9,
    l2_bytes=40e6,
    sms=108,
    clock_hz=1.41e9,
    nvlink_bw=600e9,
    tdp_w=400.0,
    eta_c={"fp16": 0.87, "bf16": 0.87, "fp32": 0.90},
    eta_m=0.84,
    launch_graph_s=4.5e-6,
    launch_eager_s=27e-6,
    attn_eta_max=0.741,
    attn_l_half=247.0,
    decode_layer_overhead_s=10e-6,
    allreduce_busbw=231e9,
    allreduce_latency_s=35e-6,
    sources={
        **_A100_COMMON_SOURCES,
        "eta_m": "estimate: no stream measurement for the 40GB part in REF; taken equal to the "
        "A100-80GB value (same memory controller, HBM2 instead of HBM2e)",
    },
)

_A100_80 = replace(
    _A100_40,
    name="a100-80gb",
    description="NVIDIA A100 SXM4 80GB: 312 TFLOP/s fp16, 2039 GB/s HBM2e, 108 SMs, 400 W",
    hbm_bytes=80e9,
    hbm_bw=2039e9,
    eta_m=0.84,
    sources={
        **_A100_COMMON_SOURCES,
        "eta_m": "REF: stream benchmarks reach 1.61-1.75 TB/s = 0.79-0.86 of 2039 GB/s; 0.84 also "
        "fits the weight-bound 64x12288x12288 GEMM (about 1.6 TB/s with launch)",
    },
)

_H100 = GpuSpec(
    name="h100",
    description="NVIDIA H100 SXM5 80GB: 989 TFLOP/s bf16, 1979 fp8, 3350 GB/s HBM3, 132 SMs, 700 W",
    peak_tflops={"fp16": 989.0, "bf16": 989.0, "fp8": 1979.0, "fp32": 66.9},
    hbm_bytes=80e9,
    hbm_bw=3350e9,
    l2_bytes=50e6,
    sms=132,
    clock_hz=1.83e9,
    nvlink_bw=900e9,
    tdp_w=700.0,
    eta_c={"fp16": 0.80, "bf16": 0.80, "fp8": 0.71, "fp32": 0.90},
    eta_m=0.90,
    launch_graph_s=4.5e-6,
    launch_eager_s=27e-6,
    attn_eta_max=0.762,
    attn_l_half=310.0,
    decode_layer_overhead_s=10e-6,
    allreduce_busbw=480e9,
    allreduce_latency_s=35e-6,
    sources={
        **_HOPPER_COMMON_SOURCES,
        "eta_m": "REF: stream benchmarks reach 2.90-3.18 TB/s = 0.87-0.95 of 3350 GB/s; 0.90 "
        "(3.02 TB/s) sits inside the range",
    },
)

_H200 = replace(
    _H100,
    name="h200",
    description="NVIDIA H200 SXM 141GB: 989 TFLOP/s bf16, 4800 GB/s HBM3e, 132 SMs, 700 W",
    hbm_bytes=141e9,
    hbm_bw=4800e9,
    eta_m=0.89,
    sources={
        **_HOPPER_COMMON_SOURCES,
        "eta_c": "estimate: the H100 ceilings (REF: 80% bf16, 71% fp8), same GH100 die and clocks",
        "attn_eta_max": "estimate: the H100 FlashAttention-3 fit (same SMs; attention is "
        "compute-bound at these lengths)",
        "attn_l_half": "estimate: the H100 fit",
        "eta_m": "REF: stream benchmarks reach 4.00-4.57 TB/s = 0.83-0.95 of 4800 GB/s; 0.89 "
        "(4.27 TB/s) sits inside the range",
    },
)

GPUS: dict[str, GpuSpec] = {g.name: g for g in (_A100_40, _A100_80, _H100, _H200)}
"""The GPU models, by canonical name."""

ALIASES: dict[str, str] = {
    "a100": "a100-80gb",
    "a100-40": "a100-40gb",
    "a100-80": "a100-80gb",
    "h100-sxm": "h100",
    "h100-80gb": "h100",
    "h200-sxm": "h200",
    "h200-141gb": "h200",
}
"""Other accepted spellings of the names in :data:`GPUS`."""


def get_gpu(name: str | GpuSpec) -> GpuSpec:
    """The :class:`GpuSpec` called ``name`` (or an alias); a GpuSpec is returned unchanged."""
    if isinstance(name, GpuSpec):
        return name
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    try:
        return GPUS[key]
    except KeyError:
        raise ConfigError("gpu", name, f"use one of {', '.join(GPUS)}") from None


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of ``dtype`` (fp8 1, fp16/bf16 2, fp32 4)."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ConfigError("dtype", dtype, f"use one of {', '.join(DTYPE_BYTES)}") from None
