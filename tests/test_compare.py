"""``wse-sim compare`` and :mod:`wse_sim.baselines.compare`: the wafer and the GPUs cost the same
work; every row's numbers follow from its seconds and FLOPs; bad input is one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from wse_sim.baselines.calibration import evaluate, package_points
from wse_sim.baselines.compare import (
    WAFER_SYSTEM_POWER_W,
    GpuOptions,
    WaferOptions,
    calibration_error,
    compare_kernel,
    compare_model,
    gemm_group,
    kernel_opspec,
    point_group,
    wafer_power_w,
)
from wse_sim.baselines.gpus import GPUS, get_gpu
from wse_sim.baselines.graph_cost import cost_graph
from wse_sim.baselines.model import op_cost
from wse_sim.baselines.opspecs import attention_op, gemm_op
from wse_sim.cli.main import main
from wse_sim.errors import ConfigError
from wse_sim.graph.build import build_graph
from wse_sim.hardware.presets import get_preset
from wse_sim.kernels.runner import run_kernel
from wse_sim.spec.models import get_model

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("system", "seconds", "tflops", "flops", "kind", "work", "peak_fraction")


def _cli_json(tmp_path: Path, *argv: str) -> list[dict]:
    path = tmp_path / "compare.json"
    assert main(["compare", *argv, "--json", str(path)]) == 0
    return json.loads(path.read_text())


def _check_row(row: dict) -> None:
    for key in REQUIRED:
        assert key in row, key
    assert row["seconds"] > 0
    assert row["flops"] > 0
    assert math.isclose(row["tflops"], row["flops"] / row["seconds"] / 1e12, rel_tol=1e-12)
    peak = row["peak_tflops"] * 1e12
    assert math.isclose(row["peak_fraction"], row["flops"] / (row["seconds"] * peak), rel_tol=1e-9)
    if row["energy_j"] is not None:
        assert math.isclose(row["energy_j"], row["power_w"] * row["seconds"], rel_tol=1e-12)


# -- kernels ----------------------------------------------------------------------------------
def test_kernel_gemm_json_rows_and_gpu_time_is_the_model_kernel_time(tmp_path: Path) -> None:
    m, n, k = 2048, 1024, 4096
    rows = _cli_json(
        tmp_path,
        "--kernel",
        "gemm",
        "--m",
        str(m),
        "--n",
        str(n),
        "--k",
        str(k),
        "--gpu",
        "a100-80gb,h100,h200",
    )
    assert [r["system"] for r in rows] == ["wse2 750x994", "a100-80gb", "h100", "h200"]
    for row in rows:
        _check_row(row)
        assert row["flops"] == 2.0 * m * n * k
    for row in rows[1:]:
        expected = op_cost(gemm_op(m, n, k, "fp16"), row["system"]).seconds
        assert row["seconds"] == expected
        assert row["power_w"] == GPUS[row["system"]].tdp_w
    wafer = rows[0]
    ref = run_kernel("gemm", get_preset("wse2"), {"m": m, "n": n, "k": k}, engine="analytic")
    assert wafer["seconds"] == ref.seconds
    assert math.isclose(wafer["seconds"], ref.cycles / get_preset("wse2").pe.clock_hz)
    # full WSE-2 mesh: the documented system power, energy = power x time
    assert wafer["power_w"] == WAFER_SYSTEM_POWER_W["wse2"]
    assert wafer["calibration"] is None and rows[1]["calibration"] is not None


def test_kernel_attention_decode_gpu_time_is_the_model_kernel_time() -> None:
    sizes = {"batch": 4, "heads": 32, "kv_heads": 8, "seq": 1, "head_dim": 128, "context": 1024}
    rows = compare_kernel(
        "attention", sizes, {"phase": "decode"}, "fp16", WaferOptions(), GpuOptions(("h100",))
    )
    op = attention_op(4, 32, 1, 128, 1024, 8, causal=False, phase="decode", dtype="fp16")
    # decode reads the whole cache once: no causal halving, 4 d + 5 FLOPs per score
    assert op.flops == 4 * 32 * 1024 * (4 * 128 + 5)
    assert rows[1].seconds == op_cost(op, "h100").seconds
    assert rows[1].flops == op.flops == rows[0].flops
    assert rows[1].calibration is not None and rows[1].calibration.groups == ["memory"]


def test_kernel_gemv_is_the_one_token_projection() -> None:
    op = kernel_opspec("gemv", {"m": 3000, "k": 500})
    assert (op.sizes["m"], op.sizes["n"], op.sizes["k"]) == (1, 3000, 500)
    assert op.flops == 2 * 3000 * 500 and op.weight_bytes == 3000 * 500 * 2
    rows = compare_kernel("gemv", {"m": 3000, "k": 500}, gpus=GpuOptions(("a100",)))
    assert rows[1].system == "a100-80gb"
    assert rows[1].seconds == op_cost(gemm_op(1, 3000, 500), "a100-80gb").seconds
    assert rows[0].flops == rows[1].flops


def test_kernel_partial_mesh_has_no_energy_and_peak_is_the_whole_mesh() -> None:
    opts = WaferOptions(preset="wse2", mesh="32x16")
    rows = compare_kernel("gemm", {"m": 256, "n": 256, "k": 256}, wafer=opts)
    w = rows[0]
    assert w.system == "wse2 32x16"
    assert w.power_w is None and w.energy_j is None
    spec = opts.spec()
    assert math.isclose(w.peak_tflops * 1e12, 2 * spec.pe.simd_fp16_fmac * 512 * spec.pe.clock_hz)


def test_wafer_power() -> None:
    assert wafer_power_w(get_preset("wse3"))[0] == WAFER_SYSTEM_POWER_W["wse3"]
    assert wafer_power_w(get_preset("wse2"), 3)[0] == 3 * WAFER_SYSTEM_POWER_W["wse2"]
    assert wafer_power_w(get_preset("demo"))[0] is None
    assert wafer_power_w(get_preset("wse2").with_mesh(750, 993))[0] is None


# -- calibration error beside each GPU figure -------------------------------------------------
def test_calibration_error_is_the_worst_point_of_the_nearest_group() -> None:
    checks = evaluate(package_points())

    def worst(gpus: set[str], groups: set[str]) -> float:
        errs = [
            c.error
            for c in checks
            if get_gpu(c.point["gpu"]).name in gpus and point_group(c.point) in groups
        ]
        return max(errs, key=abs)

    a100 = calibration_error("a100-80gb", "prefill")
    assert a100 is not None
    assert a100.error == worst({"a100-80gb"}, {"gemm-large", "attention"})
    # the H200 has no GEMM or attention points: those of the GPUs that have them stand in
    h200 = calibration_error("h200", "prefill")
    assert h200 is not None and "h200" not in h200.gpus
    assert h200.error == worst({"a100-80gb", "h100"}, {"gemm-large", "attention"})
    train = calibration_error("h100", "train")
    assert train is not None and train.error == worst({"h100"}, {"train"})
    multi = calibration_error("h100", "decode", n_gpus=8)
    assert multi is not None and "allreduce" in multi.groups


def test_gemm_groups() -> None:
    assert gemm_group(64, 12288, 12288) == "gemm-weight"
    assert gemm_group(4096, 4096, 4096) == "gemm-large"
    assert gemm_group(8192, 128, 128) == "gemm-small"
    assert gemm_group(64, 64, 64) == "gemm-small"


# -- model steps: GPU side --------------------------------------------------------------------
def test_model_gpu_rows_equal_cost_graph_of_the_same_graph() -> None:
    rows = compare_model(
        "gpt2-small",
        "decode",
        batch=4,
        context=512,
        wafer=None,
        gpus=GpuOptions(("a100-80gb", "h200"), 2, "tp"),
    )
    graph = build_graph(get_model("gpt2-small"), "decode", 4, None, 512)
    for row in rows:
        ref = cost_graph(graph, row.config["gpu"], 2, "tp")
        assert row.system == f"2x {ref.gpu} tp"
        assert row.seconds == ref.seconds and row.flops == ref.flops == graph.graph["flops"]
        assert row.tokens == 4 and row.tokens_per_s == ref.tokens_per_s
        assert row.energy_j == ref.energy_j == 2 * GPUS[ref.gpu].tdp_w * ref.seconds
        assert row.config["workload"]["context"] == 512
        _check_row(row.to_dict())


def test_model_gpu_row_reports_memory_fit() -> None:
    rows = compare_model("llama3-8b", "train", batch=1, seq=128, wafer=None)
    params = get_model("llama3-8b").params()
    for row in rows:
        # fp16 weights (2 B) plus AdamW state and gradient (14 B) per parameter
        need = row.config["memory_bytes_per_gpu"]
        assert math.isclose(need, 16 * params, rel_tol=1e-3)
        assert row.fits == (need <= GPUS[row.system].hbm_bytes)
    assert [r.fits for r in rows] == [False, False, True]  # 80, 80 and 141 GB of HBM


def test_model_compare_json_wafer_and_gpus_cost_the_same_graph(tmp_path: Path) -> None:
    rows = _cli_json(
        tmp_path,
        "--model",
        "gpt2-small",
        "--mode",
        "prefill",
        "--batch",
        "2",
        "--seq",
        "128",
        "--gpu",
        "h100",
        "--placement",
        "whole",
    )
    assert [r["kind"] for r in rows] == ["wafer", "gpu"]
    graph = build_graph(get_model("gpt2-small"), "prefill", 2, 128)
    for row in rows:
        _check_row(row)
        assert row["flops"] == graph.graph["flops"]
        assert row["tokens"] == 256
    assert rows[1]["seconds"] == cost_graph(graph, "h100").seconds
    assert rows[0]["config"]["placement"] == "whole"


def test_wafer_pipeline_row_is_one_batch_latency_and_the_run_s_own_numbers() -> None:
    from wse_sim.api import simulate_model

    rows = compare_model(
        "gpt2-small",
        "decode",
        batch=2,
        context=256,
        wafer=WaferOptions(placement="pipeline"),
        gpus=GpuOptions(("h100",)),
    )
    ref = simulate_model("gpt2-small", "decode", 2, context=256, placement="pipeline")
    spec = get_preset("wse2")
    wafer = rows[0]
    assert wafer.config["placement"] == "pipeline"
    assert wafer.seconds == spec.seconds(ref.result.latency_cycles)
    assert wafer.config["steady_seconds"] == ref.result.seconds <= wafer.seconds
    assert wafer.flops == ref.graph.graph["flops"] == rows[1].flops
    assert wafer.energy_j == WAFER_SYSTEM_POWER_W["wse2"] * wafer.seconds
    assert rows[1].seconds == cost_graph(ref.graph, "h100").seconds


def test_wafer_that_does_not_fit_is_a_row_with_the_reason() -> None:
    rows = compare_model(
        "gpt2-small",
        "prefill",
        batch=1,
        seq=64,
        wafer=WaferOptions(preset="tiny", placement="whole"),
        gpus=GpuOptions(("a100-80gb",)),
    )
    wafer, gpu = rows
    assert not wafer.fits and wafer.seconds is None and wafer.tflops is None
    assert wafer.error and "\n" not in wafer.error and "placement" in wafer.error
    assert wafer.flops == gpu.flops > 0 and gpu.seconds > 0


# -- errors: one line, exit 2 -----------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["--kernel", "gemm", "--m", "64", "--n", "64", "--k", "64", "--gpu", "b200"],
        ["--kernel", "fft", "--m", "64"],
        ["--kernel", "gemm", "--m", "64", "--n", "64"],
        ["--kernel", "gemm", "--m", "0", "--n", "64", "--k", "64"],
        ["--model", "gpt2-small", "--gpus", "9"],
        ["--model", "gpt2-small", "--m", "64"],
    ],
    ids=["bad-gpu", "bad-kernel", "missing-size", "zero-size", "too-many-gpus", "kernel-size"],
)
def test_bad_input_is_one_line_exit_2(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wse_sim", "compare", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wse-sim") and " error: " in lines[0], (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_library_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="gpus"):
        compare_kernel("gemm", {"m": 8, "n": 8, "k": 8}, gpus=GpuOptions(("h100",), 2))
    with pytest.raises(ConfigError, match="gpu"):
        compare_model("gpt2-small", "prefill", wafer=None, gpus=GpuOptions(("tpu-v5",)))
    with pytest.raises(ConfigError, match="mode"):
        compare_model("gpt2-small", "serve", wafer=None)


# -- the benchmark's doc comes from its CSV ---------------------------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location(
        "wafer_vs_gpu", ROOT / "benchmarks" / "wafer_vs_gpu.py"
    )
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_csv_round_trip_and_markdown_from_csv(tmp_path: Path) -> None:
    bench = _bench()
    graph = build_graph(get_model("gpt2-small"), "decode", 2, None, 64)
    recs = []
    for gpu in ("a100-80gb", "h100"):
        row = compare_model(
            "gpt2-small", "decode", 2, context=64, wafer=None, gpus=GpuOptions((gpu,))
        )[0]
        recs.append(bench.record(row, graph))
    csv_path = bench.write_csv(recs, tmp_path / "r.csv")
    back = bench.read_csv(csv_path)
    assert [r["seconds"] for r in back] == [r["seconds"] for r in recs]
    doc = tmp_path / "results.md"
    doc.write_text(f"# R\n\nprose\n\n{bench.BEGIN}\nSTALE-BLOCK\n{bench.END}\n\ntail\n")
    bench.update_doc(back, doc)
    text = doc.read_text()
    assert "prose" in text and "tail" in text and "STALE-BLOCK" not in text
    for r in back:
        assert f"| {bench._fmt(r['seconds'], 1e3)} |" in text
        assert f"{100 * r['gpu_model_error']:+.1f}%" in text
