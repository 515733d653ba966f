"""The GPU model against every calibration point of the reference (and any measured ones)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wse_sim.baselines.calibration import (
    TARGET,
    TARGET_FRACTION,
    evaluate,
    load_points,
    make_point,
    measured_points,
    metric_value,
    model_seconds,
    package_points,
    predict,
    relative_error,
    summary,
    validate_point,
)
from wse_sim.baselines.gpus import GPUS
from wse_sim.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def checks():
    return evaluate(load_points(RESULTS))


def _by_id():
    return {p["id"]: p for p in package_points()}


# -- the data file encodes the reference ---------------------------------------------------------
def test_points_are_valid_unique_and_sourced():
    points = package_points()
    assert len({p["id"] for p in points}) == len(points)
    for p in points:
        validate_point(p)
        assert p["source"].startswith("REF") and len(p["source"]) > 20
        assert p["gpu"] in GPUS


def test_every_reference_series_is_present():
    pts = _by_id()
    m_series = {64: 101.7, 128: 193, 256: 243, 1024: 258, 8192: 287, 16384: 290.5}
    for m, v in m_series.items():
        p = pts[f"a100-80gb.gemm.host.{m}x12288x12288"]
        assert p["value"] == v and p["timing"] == "host_sync"
    n_series = {64: 2.3, 128: 8.7, 256: 30, 512: 91, 1024: 185, 2048: 244, 8192: 278, 16384: 293}
    for n, v in n_series.items():
        assert pts[f"a100-80gb.gemm.host.8192x{n}x{n}"]["value"] == v
    for n, v in {1024: 119, 2048: 222, 4096: 228, 8192: 254, 16384: 257}.items():
        assert pts[f"a100-80gb.gemm.cublaslt.{n}cubed"]["value"] == v
    assert pts["a100-80gb.gemm.ceiling.bf16"]["value"] == 271
    assert pts["h100.gemm.ceiling.bf16"]["value"] == 795
    assert pts["h100.gemm.ceiling.fp8"]["value"] == 1400
    assert pts["a100-80gb.stream.copy"]["range"] == [1.61, 1.75]
    assert pts["h100.stream.copy"]["range"] == [2.90, 3.18]
    assert pts["h200.stream.copy"]["range"] == [4.00, 4.57]
    assert pts["a100-80gb.membound.layernorm"]["value"] == 0.76
    assert pts["a100-80gb.membound.gelu"]["value"] == 0.77
    assert pts["a100-80gb.membound.softmax"]["value"] == 0.55
    assert pts["h100.attention.fa3.seq512"]["value"] == 470
    assert pts["h100.attention.fa3.seq16384"]["value"] == 740
    assert {pts[f"a100-80gb.attention.fa2.seq{s}"]["value"] for s in (512, 16384)} == {0.5, 0.73}
    assert pts["a100-80gb.train.fa2-gpt3-2.7b"]["value"] == 0.72
    assert pts["h100.train.megatron-gpt3-175b"]["range"] == [0.41, 0.48]
    assert pts["a100-80gb.allreduce.busbw"]["value"] == 231
    assert pts["h100.allreduce.busbw"]["value"] == pts["h200.allreduce.busbw"]["value"] == 480
    assert pts["h100.allreduce.latency"]["range"] == [25, 45]


# -- the model reproduces them -------------------------------------------------------------------
def test_most_points_within_target(checks):
    s = summary(checks)
    assert s["points"] >= 39
    assert s["fraction_within_target"] >= TARGET_FRACTION, [
        (c.point["id"], round(c.error, 3)) for c in checks if not c.within_target
    ]


def test_every_point_within_its_documented_bound(checks):
    bad = [
        (c.point["id"], round(c.error, 3), c.tolerance) for c in checks if not c.within_tolerance
    ]
    assert not bad
    for c in checks:
        if not c.within_target:  # a point beyond the target must say why
            assert c.point.get("note") or c.point.get("tolerance"), c.point["id"]


@pytest.mark.parametrize(
    "group,bound",
    [
        ("gemm.host", TARGET),
        ("gemm.cublaslt", TARGET),
        ("gemm.ceiling", 0.05),
        ("stream", 0.0),
        ("membound", 0.02),
        ("attention", 0.05),
        ("allreduce", 0.01),
    ],
)
def test_each_kernel_family_within_its_bound(checks, group, bound):
    mine = [c for c in checks if f".{group}" in c.point["id"] and "measured" not in c.point["id"]]
    assert mine
    worst = max(abs(c.error) for c in mine)
    assert worst <= bound + 1e-9, [(c.point["id"], round(c.error, 3)) for c in mine]


def test_shape_trends_of_the_gemm_series(checks):
    """Efficiency rises with M and N in both host-timed series, as measured."""
    by_id = {c.point["id"]: c.predicted for c in checks}
    m = [by_id[f"a100-80gb.gemm.host.{v}x12288x12288"] for v in (64, 128, 256, 1024, 8192, 16384)]
    n = [by_id[f"a100-80gb.gemm.host.8192x{v}x{v}"] for v in (64, 128, 256, 512, 1024, 2048, 8192)]
    assert m == sorted(m) and n == sorted(n)
    assert n[0] < 0.02 * n[-1]


def test_relative_error_ranges_and_signs():
    p = {"value": 1.0, "range": [0.9, 1.2]}
    assert relative_error(p, 1.1) == 0.0
    assert relative_error(p, 1.32) == pytest.approx(0.1)
    assert relative_error(p, 0.81) == pytest.approx(-0.1)
    assert relative_error({"value": 200}, 230) == pytest.approx(0.15)


# -- measured points round-trip --------------------------------------------------------------
def test_make_point_inverts_the_model():
    """A point made from the model's own time predicts itself exactly (same conversions)."""
    for base in package_points():
        if base["kernel"] == "train_step":
            continue
        fields = {k: v for k, v in base.items() if k not in ("value", "range")}
        fields["id"] = "measured." + base["id"]
        p = make_point(model_seconds(base), **fields)
        assert p["value"] == pytest.approx(predict(p), rel=1e-12), base["id"]


def test_metric_value_closed_forms():
    gemm = {
        "id": "g",
        "gpu": "h100",
        "kernel": "gemm",
        "sizes": {"m": 1024, "n": 1024, "k": 1024},
        "metric": "tflops",
        "dtype": "bf16",
    }
    assert metric_value(gemm, 1e-5) == pytest.approx(2 * 1024**3 / 1e-5 / 1e12)
    copy = {
        "id": "c",
        "gpu": "h100",
        "kernel": "copy",
        "sizes": {"length": 1000},
        "metric": "tb_per_s",
        "dtype": "fp16",
        "options": {"op": "copy"},
    }
    assert metric_value(copy, 1e-6) == pytest.approx(4000 / 1e-6 / 1e12)
    attn = {
        "id": "a",
        "gpu": "h100",
        "kernel": "attention",
        "metric": "tflops",
        "sizes": {"batch": 2, "heads": 4, "seq": 256, "head_dim": 64},
        "options": {"causal": True},
    }
    assert metric_value(attn, 1e-3) == pytest.approx(4 * 2 * 4 * 256 * 256 * 64 / 2 / 1e-3 / 1e12)
    ar = {
        "id": "r",
        "gpu": "h100",
        "kernel": "allreduce",
        "sizes": {"bytes": 8e9},
        "n_gpus": 8,
        "metric": "busbw_gb_per_s",
    }
    assert metric_value(ar, 1.0) == pytest.approx(2 * 7 / 8 * 8)
    with pytest.raises(ConfigError, match="seconds"):
        metric_value(gemm, 0.0)


def test_measured_files_are_read(tmp_path):
    base = _by_id()["h100.gemm.ceiling.bf16"]
    fields = {k: v for k, v in base.items() if k != "value"}
    fields.update(id="measured.h100.test", source="test")
    point = make_point(1e-3, **fields)
    (tmp_path / "gpu_measured_h100.json").write_text(json.dumps({"points": [point]}))
    (tmp_path / "other.json").write_text("not read")
    assert [p["id"] for p in measured_points(tmp_path)] == ["measured.h100.test"]
    assert len(load_points(tmp_path)) == len(package_points()) + 1
    assert measured_points(tmp_path / "missing") == []


def test_bad_points_are_config_errors(tmp_path):
    good = dict(_by_id()["h100.gemm.ceiling.bf16"])
    for broken, field in [
        ({k: v for k, v in good.items() if k != "source"}, "source"),
        ({**good, "metric": "speed"}, "metric"),
        ({**good, "value": "fast"}, "value"),
        ({**good, "range": [1, 2]}, "range"),
    ]:
        with pytest.raises(ConfigError, match=field):
            validate_point(broken)
    (tmp_path / "gpu_measured_x.json").write_text(json.dumps({"points": [good]}))
    with pytest.raises(ConfigError, match="unique"):
        load_points(tmp_path)  # same id as a package point


# -- the scripts ---------------------------------------------------------------------------------
def _script_env(tmp_path: Path, fake_torch: str | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT)]
    if fake_torch is not None:
        pkg = tmp_path / "fake" / "torch"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(fake_torch)
        paths.insert(0, str(tmp_path / "fake"))
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize(
    "fake,expect",
    [
        ("raise ImportError('torch hidden for this test')", "torch is not installed"),
        (
            "class cuda:\n    @staticmethod\n    def is_available():\n        return False\n",
            "no CUDA GPU",
        ),
    ],
)
def test_gpu_measure_without_torch_or_gpu_says_one_line_and_exits_0(tmp_path, fake, expect):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_measure.py"), "--out-dir", str(out)],
        capture_output=True,
        text=True,
        env=_script_env(tmp_path, fake),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0]
    assert not out.exists()


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_measure_plan_is_evaluable_and_detects_gpus():
    gm = _load_script("gpu_measure")
    assert gm.detect_gpu("NVIDIA H200") == "h200"
    assert gm.detect_gpu("NVIDIA H100 80GB HBM3") == "h100"
    assert gm.detect_gpu("NVIDIA A100-SXM4-40GB") == "a100-40gb"
    assert gm.detect_gpu("NVIDIA A100-SXM4-80GB") == "a100-80gb"
    assert gm.detect_gpu("Tesla V100") is None
    plan = gm.plan("h200")
    quick = gm.plan("h200", quick=True)
    assert len(quick) < len(plan) and len({p["id"] for p in plan}) == len(plan)
    for p in plan:  # every planned point is one the calibration code can turn into a value
        point = make_point(model_seconds(p), **p, source="plan test")
        assert point["value"] > 0


def test_calibration_table_writes_every_point(tmp_path):
    ct = _load_script("calibration_table")
    out = tmp_path / "table.md"
    rc = ct.main(["--out", str(out), "--results", str(tmp_path / "none")])
    text = out.read_text()
    assert rc == 0
    for p in package_points():
        assert f"| {p['id']} |" in text
    s = summary(evaluate(package_points()))
    assert f"{s['within_target']} of {s['points']} points" in text
