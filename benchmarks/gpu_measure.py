"""Measure the calibration kernels on a real GPU with PyTorch; write calibration points.

    python benchmarks/gpu_measure.py [--quick] [--gpu NAME] [--out-dir benchmarks/results]

Measures the same work as ``wse_sim/baselines/calibration.json``: the A100 GEMM series
(M x 12288 x 12288 and 8192 x N x N host-timed with a sync; square GEMMs device-timed), a large
GEMM at the dtype ceilings, a 1 GiB copy, GELU, layernorm and softmax, and attention through
``torch.nn.functional.scaled_dot_product_attention`` (head dim 128, 16k tokens per batch,
causal and not). Writes ``<out-dir>/gpu_measured_<gpu>.json`` in the calibration format, which
``tests/test_gpu_calibration.py`` and ``benchmarks/calibration_table.py`` read.

torch is optional: without it, or without a CUDA GPU, the script says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from wse_sim.baselines.calibration import make_point
from wse_sim.baselines.gpus import get_gpu
from wse_sim.errors import WseSimError
from wse_sim.result.io import atomic_write_json

DEFAULT_OUT = Path(__file__).resolve().parent / "results"

M_SERIES = (64, 128, 256, 1024, 8192, 16384)
N_SERIES = (64, 128, 256, 512, 1024, 2048, 8192, 16384)
SQUARES = (1024, 2048, 4096, 8192, 16384)
ATTN_SEQS = (512, 1024, 2048, 4096, 8192, 16384)
ATTN_TOKENS = 16384
ATTN_HEADS = 16
ATTN_HEAD_DIM = 128
HOPPER_SDPA_NOTE = (
    "torch SDPA uses FlashAttention-2 kernels on Hopper while the model is fitted to "
    "FlashAttention-3, so the model is expected to be higher"
)


def detect_gpu(device_name: str) -> str | None:
    """Registry name for a CUDA device name (``torch.cuda.get_device_name()``), or None."""
    name = device_name.lower()
    if "h200" in name:
        return "h200"
    if "h100" in name:
        return "h100"
    if "a100" in name:
        return "a100-40gb" if "40gb" in name.replace(" ", "") else "a100-80gb"
    return None


def plan(gpu: str, quick: bool = False) -> list[dict[str, Any]]:
    """The points to measure on ``gpu`` (every field but ``value``/``seconds``/``source``)."""
    g = get_gpu(gpu).name
    pts: list[dict[str, Any]] = []

    def add(pid: str, kernel: str, sizes: dict[str, int], metric: str, **kw: Any) -> None:
        pts.append(
            {
                "id": f"measured.{g}.{pid}",
                "gpu": g,
                "kernel": kernel,
                "sizes": sizes,
                "metric": metric,
                "dtype": kw.pop("dtype", "fp16"),
                "timing": kw.pop("timing", "device"),
                **kw,
            }
        )

    m_series = M_SERIES[::2] if quick else M_SERIES
    n_series = N_SERIES[::2] if quick else N_SERIES
    for m in m_series:
        add(
            f"gemm.host.{m}x12288x12288",
            "gemm",
            {"m": m, "n": 12288, "k": 12288},
            "tflops",
            timing="host_sync",
        )
    for n in n_series:
        add(
            f"gemm.host.8192x{n}x{n}",
            "gemm",
            {"m": 8192, "n": n, "k": n},
            "tflops",
            timing="host_sync",
        )
    for n in SQUARES[::2] if quick else SQUARES:
        add(f"gemm.device.{n}cubed", "gemm", {"m": n, "n": n, "k": n}, "tflops")
    add("gemm.ceiling.bf16", "gemm", {"m": 8192, "n": 8192, "k": 8192}, "tflops", dtype="bf16")
    add("stream.copy", "copy", {"length": 2**29}, "tb_per_s", options={"op": "copy"})
    add("membound.gelu", "elementwise", {"length": 2**28}, "bw_fraction", options={"op": "gelu"})
    add("membound.layernorm", "layernorm", {"rows": 65536, "cols": 4096}, "bw_fraction")
    add("membound.softmax", "softmax", {"rows": 65536, "cols": 4096}, "bw_fraction")
    # the model's Hopper attention is fitted to FlashAttention-3; torch's SDPA runs
    # FlashAttention-2 kernels there, which FA3 outruns by 1.5-2x: allow the model up to 2x
    hopper = g in ("h100", "h200")
    kw_attn = {"tolerance": 1.0, "note": HOPPER_SDPA_NOTE} if hopper else {}
    for causal in (False, True):
        for seq in ATTN_SEQS[::2] if quick else ATTN_SEQS:
            sizes = {
                "batch": ATTN_TOKENS // seq,
                "heads": ATTN_HEADS,
                "seq": seq,
                "head_dim": ATTN_HEAD_DIM,
            }
            tag = "causal" if causal else "full"
            add(
                f"attention.sdpa.{tag}.seq{seq}",
                "attention",
                sizes,
                "tflops",
                options={"causal": causal},
                **kw_attn,
            )
    return pts


# -- timing (needs torch and a GPU) -------------------------------------------------------------
def _host_sync_seconds(torch: Any, fn: Any, repeats: int) -> float:
    """Median of host-timed calls, each followed by a sync (launch overhead included) [s]."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _device_seconds(torch: Any, fn: Any, repeats: int) -> float:
    """Mean time per call of ``repeats`` back-to-back calls between two CUDA events [s]."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / repeats


def _workload(torch: Any, p: dict[str, Any]) -> Any:
    """A zero-argument callable running the point's kernel once on the GPU."""
    F = torch.nn.functional
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[p["dtype"]]
    s = p["sizes"]
    dev = "cuda"
    kernel = p["kernel"]
    if kernel == "gemm":
        a = torch.randn(s["m"], s["k"], device=dev, dtype=dt)
        b = torch.randn(s["k"], s["n"], device=dev, dtype=dt)
        return lambda: torch.matmul(a, b)
    if kernel == "copy":
        x = torch.empty(s["length"], device=dev, dtype=dt)
        y = torch.empty_like(x)
        return lambda: y.copy_(x)
    if kernel == "elementwise":
        x = torch.randn(s["length"], device=dev, dtype=dt)
        return lambda: F.gelu(x)
    if kernel == "layernorm":
        x = torch.randn(s["rows"], s["cols"], device=dev, dtype=dt)
        w = torch.ones(s["cols"], device=dev, dtype=dt)
        b = torch.zeros(s["cols"], device=dev, dtype=dt)
        return lambda: F.layer_norm(x, (s["cols"],), w, b)
    if kernel == "softmax":
        x = torch.randn(s["rows"], s["cols"], device=dev, dtype=dt)
        return lambda: torch.softmax(x, dim=-1)
    if kernel == "attention":
        shape = (s["batch"], s["heads"], s["seq"], s["head_dim"])
        q, k, v = (torch.randn(shape, device=dev, dtype=dt) for _ in range(3))
        causal = bool(p.get("options", {}).get("causal", False))
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    raise ValueError(f"no workload for kernel {kernel}")


def measure(torch: Any, pts: list[dict[str, Any]], repeats: int, source: str) -> list[dict]:
    """Time every planned point and turn it into a calibration point."""
    out = []
    for p in pts:
        fn = _workload(torch, p)
        if p["timing"] == "host_sync":
            seconds = _host_sync_seconds(torch, fn, repeats)
        else:
            seconds = _device_seconds(torch, fn, repeats)
        point = make_point(seconds, **p, source=f"{source}; timing {p['timing']}")
        print(f"  {point['id']:55s} {point['value']:10.3f} {p['metric']}", flush=True)
        out.append(point)
        del fn
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default=None, help="registry name; default: detect")
    parser.add_argument("--quick", action="store_true", help="every other size only")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per point")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT), help="where the JSON goes")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_measure: torch is not installed; nothing measured (install torch on a GPU host)")
        return 0
    if not torch.cuda.is_available():
        print("gpu_measure: no CUDA GPU is visible to torch; nothing measured")
        return 0
    device_name = torch.cuda.get_device_name()
    try:
        gpu = get_gpu(args.gpu).name if args.gpu else detect_gpu(device_name)
    except WseSimError as exc:
        print(f"gpu_measure: {exc}")
        return 2
    if gpu is None:
        print(f"gpu_measure: no GPU model for {device_name!r}; pass --gpu a100-80gb|h100|h200")
        return 2
    date = _dt.date.today().isoformat()
    source = (
        f"benchmarks/gpu_measure.py on {device_name} (torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}), {date}"
    )
    print(f"gpu_measure: {device_name} as {gpu}", flush=True)
    points = measure(torch, plan(gpu, args.quick), max(1, args.repeats), source)
    path = Path(args.out_dir) / f"gpu_measured_{gpu}.json"
    atomic_write_json(path, {"version": 1, "gpu": gpu, "source": source, "points": points})
    print(f"gpu_measure: wrote {len(points)} points to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
