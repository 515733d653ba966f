"""Calibration points (measured GPU numbers) and the model's prediction for each.

A point is a JSON object (``wse_sim/baselines/calibration.json``; measured files
``benchmarks/results/gpu_measured*.json`` written by ``benchmarks/gpu_measure.py`` have the
same ``{"points": [...]}`` layout):

    id        unique name                      gpu      registry name or alias
    kernel    gemm | copy | elementwise | layernorm | rmsnorm | softmax | attention |
              allreduce | train_step
    sizes     the kernel's sizes (train_step: layers, d_model, heads, d_ff, vocab, seq, batch)
    dtype     fp16 | bf16 | fp8 | fp32           options  e.g. {"op": "gelu"}, {"causal": false}
    timing    host_sync (eager launch overhead) | device (CUDA-graph launch overhead)
    metric    tflops | tb_per_s | bw_fraction | peak_fraction | busbw_gb_per_s | latency_us | mfu
    value     the measurement; optional range [lo, hi] when the source gives one
    n_gpus, parallel   for allreduce and train_step
    tolerance optional: a documented worse bound for this point (default WORST_BOUND)
    source    where the number comes from (one line)

Metric definitions: ``tflops`` = FLOPs / time (attention FLOPs as the FlashAttention papers
count them: ``4 b h s ctx d``, halved when causal); ``tb_per_s`` = bytes read + written / time;
``bw_fraction`` = that over the peak HBM bandwidth; ``peak_fraction`` = tflops / peak;
``busbw_gb_per_s`` = ``2 (n-1)/n bytes / time`` (nccl-tests); ``mfu`` = model FLOPs / (time x
GPUs x peak).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from wse_sim.baselines.gpus import get_gpu
from wse_sim.baselines.graph_cost import cost_graph
from wse_sim.baselines.model import allreduce_seconds, op_cost, op_traffic
from wse_sim.baselines.opspecs import attention_op, elementwise_op, gemm_op, norm_op, softmax_op
from wse_sim.baselines.reference_graphs import transformer_graph
from wse_sim.errors import ConfigError
from wse_sim.graph.ops import OpSpec

TARGET = 0.15
"""Most points must be within this relative error [1]."""
TARGET_FRACTION = 0.80
"""The fraction of points that must be within :data:`TARGET` [1]."""
WORST_BOUND = 0.25
"""Every point without its own ``tolerance`` must be within this relative error [1]."""

METRICS = (
    "tflops",
    "tb_per_s",
    "bw_fraction",
    "peak_fraction",
    "busbw_gb_per_s",
    "latency_us",
    "mfu",
)
REQUIRED = ("id", "gpu", "kernel", "sizes", "metric", "value", "source")


@dataclass(frozen=True)
class Check:
    """One point against the model: ``error`` is the signed relative error (0 inside a range;
    outside it, relative to the nearest end)."""

    point: dict[str, Any]
    predicted: float
    error: float

    @property
    def tolerance(self) -> float:
        return float(self.point.get("tolerance", WORST_BOUND))

    @property
    def within_target(self) -> bool:
        return abs(self.error) <= TARGET

    @property
    def within_tolerance(self) -> bool:
        return abs(self.error) <= self.tolerance


def package_points() -> list[dict[str, Any]]:
    """The points shipped in ``wse_sim/baselines/calibration.json``."""
    text = resources.files("wse_sim.baselines").joinpath("calibration.json").read_text()
    return _points(json.loads(text), "calibration.json")


def measured_points(folder: str | Path) -> list[dict[str, Any]]:
    """Points from every ``gpu_measured*.json`` in ``folder`` (none if it does not exist)."""
    folder = Path(folder)
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("gpu_measured*.json")):
        out += _points(json.loads(path.read_text()), str(path))
    return out


def load_points(extra_folder: str | Path | None = None) -> list[dict[str, Any]]:
    """Package points plus measured ones from ``extra_folder``; ids must be unique."""
    points = package_points()
    if extra_folder is not None:
        points += measured_points(extra_folder)
    seen: set[str] = set()
    for p in points:
        if p["id"] in seen:
            raise ConfigError("calibration point id", p["id"], "ids must be unique")
        seen.add(p["id"])
    return points


def _points(data: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise ConfigError(f"{where}.points", type(data).__name__, "need {'points': [...]}")
    for p in data["points"]:
        validate_point(p, where)
    return list(data["points"])


def validate_point(p: Any, where: str = "point") -> None:
    """ConfigError unless ``p`` has every required field, a known metric and a number value."""
    if not isinstance(p, dict):
        raise ConfigError(where, type(p).__name__, "each point must be a JSON object")
    for key in REQUIRED:
        if key not in p:
            raise ConfigError(f"{where}:{p.get('id', '?')}.{key}", None, "is required")
    if p["metric"] not in METRICS:
        raise ConfigError(f"{where}:{p['id']}.metric", p["metric"], f"use {', '.join(METRICS)}")
    if isinstance(p["value"], bool) or not isinstance(p["value"], (int, float)):
        raise ConfigError(f"{where}:{p['id']}.value", p["value"], "must be a number")
    rng = p.get("range")
    if rng is not None and (len(rng) != 2 or not rng[0] <= p["value"] <= rng[1]):
        raise ConfigError(f"{where}:{p['id']}.range", rng, "must be [lo, hi] around value")


def point_op(p: dict[str, Any]) -> OpSpec:
    """The OpSpec of the single kernel a point measured (not for allreduce/train_step)."""
    s, dtype, opts = p["sizes"], p.get("dtype", "fp16"), p.get("options", {})
    kernel = p["kernel"]
    if kernel == "gemm":
        return gemm_op(s["m"], s["n"], s["k"], dtype)
    if kernel == "attention":
        return attention_op(
            s["batch"],
            s["heads"],
            s["seq"],
            s["head_dim"],
            s.get("context"),
            s.get("kv_heads"),
            bool(opts.get("causal", False)),
            opts.get("phase", "prefill"),
            dtype,
        )
    if kernel in ("layernorm", "rmsnorm"):
        return norm_op(s["rows"], s["cols"], kernel, dtype)
    if kernel == "softmax":
        return softmax_op(s["rows"], s["cols"], dtype)
    if kernel in ("elementwise", "copy"):
        default = "copy" if kernel == "copy" else "add"
        return elementwise_op(s["length"], opts.get("op", default), dtype)
    raise ConfigError(f"{p['id']}.kernel", kernel, "not a single-kernel point")


def metric_flops(p: dict[str, Any]) -> float:
    """FLOPs behind a point's ``tflops``/``peak_fraction`` [FLOP]: the op's FLOPs, except
    attention, counted as the FlashAttention papers do (``4 b h s ctx d``, halved if causal)."""
    if p["kernel"] != "attention":
        return point_op(p).flops
    s = p["sizes"]
    ctx = s.get("context") or s["seq"]
    f = 4.0 * s["batch"] * s["heads"] * s["seq"] * ctx * s["head_dim"]
    return f / 2 if p.get("options", {}).get("causal", False) else f


def metric_value(p: dict[str, Any], seconds: float) -> float:
    """The value of ``p["metric"]`` when ``p``'s work takes ``seconds`` [s].

    The same conversion serves the model's prediction and a measurement (gpu_measure.py).
    """
    if seconds <= 0:
        raise ConfigError(f"{p.get('id', '?')}.seconds", seconds, "must be > 0")
    gpu = get_gpu(p["gpu"])
    metric, kernel = p["metric"], p["kernel"]
    if metric == "latency_us":
        return seconds * 1e6
    if kernel == "allreduce" and metric == "busbw_gb_per_s":
        n = int(p.get("n_gpus", 8))
        return 2.0 * (n - 1) / n * float(p["sizes"]["bytes"]) / seconds / 1e9
    if kernel not in ("allreduce", "train_step"):
        if metric == "tflops":
            return metric_flops(p) / seconds / 1e12
        if metric == "peak_fraction":
            return metric_flops(p) / seconds / gpu.peak_flops(p.get("dtype", "fp16"))
        if metric == "tb_per_s":
            return op_traffic(point_op(p)) / seconds / 1e12
        if metric == "bw_fraction":
            return op_traffic(point_op(p)) / seconds / gpu.hbm_bw
    raise ConfigError(f"{p.get('id', '?')}.metric", metric, f"not defined for kernel {kernel}")


def model_seconds(p: dict[str, Any]) -> float:
    """Model time of a kernel or allreduce point [s]."""
    gpu = get_gpu(p["gpu"])
    if p["kernel"] == "allreduce":
        return allreduce_seconds(gpu, float(p["sizes"]["bytes"]), int(p.get("n_gpus", 8)))
    eager = p.get("timing", "device") == "host_sync"
    return op_cost(point_op(p), gpu, eager).seconds


def predict(p: dict[str, Any]) -> float:
    """The model's value of ``p["metric"]`` for point ``p``."""
    if p["kernel"] == "train_step":
        if p["metric"] != "mfu":
            raise ConfigError(f"{p['id']}.metric", p["metric"], "train_step points use mfu")
        return _train_mfu(p)
    return metric_value(p, model_seconds(p))


def make_point(seconds: float, **fields: Any) -> dict[str, Any]:
    """A calibration point from a measured time [s]: ``fields`` are the point's keys except
    ``value``, which is computed with :func:`metric_value`."""
    p = dict(fields)
    p["value"] = metric_value(p, seconds)
    p["seconds"] = seconds
    validate_point(p, "make_point")
    return p


def _train_mfu(p: dict[str, Any]) -> float:
    s = p["sizes"]
    graph = transformer_graph(
        layers=s["layers"],
        d_model=s["d_model"],
        heads=s["heads"],
        d_ff=s["d_ff"],
        vocab=s["vocab"],
        seq=s["seq"],
        batch=s["batch"],
        mode="train",
        kv_heads=s.get("kv_heads"),
        mlp=p.get("options", {}).get("mlp", "gelu"),
        norm=p.get("options", {}).get("norm", "layernorm"),
        dtype=p.get("dtype", "bf16"),
    )
    n = int(p.get("n_gpus", 1))
    result = cost_graph(graph, p["gpu"], n, p.get("parallel", "dp"))
    return result.peak_fraction


def relative_error(p: dict[str, Any], predicted: float) -> float:
    """Signed relative error of ``predicted`` against ``p`` (0 inside ``p["range"]``)."""
    lo, hi = p.get("range", (p["value"], p["value"]))
    if lo <= predicted <= hi:
        return 0.0
    ref = lo if predicted < lo else hi
    return (predicted - ref) / ref


def evaluate(points: list[dict[str, Any]]) -> list[Check]:
    """Every point against the model."""
    checks = []
    for p in points:
        pred = predict(p)
        checks.append(Check(p, pred, relative_error(p, pred)))
    return checks


def summary(checks: list[Check]) -> dict[str, Any]:
    """Counts: points, within TARGET, fraction, worst |error| and its id, failures."""
    n = len(checks)
    within = sum(c.within_target for c in checks)
    worst = max(checks, key=lambda c: abs(c.error)) if checks else None
    return {
        "points": n,
        "within_target": within,
        "fraction_within_target": within / n if n else 0.0,
        "target": TARGET,
        "worst_error": worst.error if worst else 0.0,
        "worst_id": worst.point["id"] if worst else None,
        "outside_tolerance": [c.point["id"] for c in checks if not c.within_tolerance],
    }
