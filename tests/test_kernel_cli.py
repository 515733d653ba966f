"""``wse-sim kernel`` through the real command line, the kernel registry, and KernelResult files."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wse_sim.cli.cmd_kernel import parse_region
from wse_sim.errors import ConfigError
from wse_sim.hardware.presets import get_preset
from wse_sim.kernels.gemm import Gemm
from wse_sim.kernels.runner import run_kernel
from wse_sim.program.ir import Region
from wse_sim.result.kernel_result import KernelResult


def wse_sim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wse_sim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_kernel_json_has_the_required_fields_and_check_passes(tmp_path):
    out = tmp_path / "gemm.json"
    proc = wse_sim(
        "kernel", "gemm", "--m", "64", "--n", "48", "--k", "32", "--mesh", "4x4",
        "--algorithm", "meshgemm", "--check", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["kernel"] == "gemm" and data["algorithm"] == "meshgemm"
    assert data["mesh"] == {"width": 4, "height": 4}
    assert data["engine"] == "des" and data["check"] == "passed"
    for key in ("cycles", "seconds", "flops"):
        assert data[key] > 0
    assert data["flops"] == 2 * 64 * 48 * 32
    assert data["seconds"] == pytest.approx(data["cycles"] / get_preset("small").pe.clock_hz)
    assert 0 < data["utilization"]["compute_mean"] <= 1
    assert 0 < data["utilization"]["link_mean"] <= 1
    # The printout shows the same numbers.
    assert f"{data['cycles']:,.0f}" in proc.stdout
    assert "check             passed" in proc.stdout
    # The arrays file sits beside the JSON and loads back.
    back = KernelResult.load(out)
    assert back.cycles == data["cycles"]
    assert back.pe_flops.shape == (4, 4) and back.link_wavelets.shape == (4, 4, 4)
    assert back.pe_flops.sum() >= data["flops"]


def test_analytic_engine_prints_the_closed_form(tmp_path):
    out = tmp_path / "gemv.json"
    proc = wse_sim(
        "kernel", "gemv", "--m", "512", "--k", "512", "--algorithm", "tree", "--k-ary", "4",
        "--engine", "analytic", "--preset", "demo", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    spec = get_preset("demo")
    from wse_sim.kernels.gemv import Gemv

    plan = Gemv().plan(spec, Region(0, 0, 64, 64), {"m": 512, "k": 512}, "fp16", "tree", k_ary=4)
    assert data["cycles"] == Gemv().estimate(plan, spec).cycles
    assert data["mesh"] == {"width": 64, "height": 64}
    assert data["utilization"]["link_max"] is None  # the closed form has no per-link view
    assert data["options"] == {"k_ary": 4}


def test_plan_that_does_not_fit_exits_2_naming_the_bytes():
    proc = wse_sim("kernel", "gemm", "--m", "2048", "--n", "2048", "--k", "2048")
    line = assert_one_line_error(proc, "needs", "bytes per PE", "43008", "smallest region")
    assert "16x16" in line


@pytest.mark.parametrize(
    "args,words",
    [
        (("--m", "0", "--n", "4", "--k", "4"), ("--m", "0")),
        (("--m", "x", "--n", "4", "--k", "4"), ("--m", "'x'")),
        (("--m", "4", "--n", "4"), ("k", "m, n, k")),
        (("--m", "4", "--n", "4", "--k", "4", "--length", "8"), ("length", "--m, --n, --k")),
        (("--m", "4", "--n", "4", "--k", "4", "--algorithm", "fast"), ("algorithm", "summa")),
        (("--m", "4", "--n", "4", "--k", "4", "--region", "20x4"), ("region", "16x16")),
    ],
)
def test_bad_sizes_and_options_exit_2_with_one_line(args, words):
    assert_one_line_error(wse_sim("kernel", "gemm", *args), *words)


def test_unknown_kernel_lists_the_registry():
    assert_one_line_error(wse_sim("kernel", "matmul", "--m", "4"), "matmul", "gemm", "gemv")


def test_registry_imports_every_public_kernel_module():
    from wse_sim.kernels import registry

    names = [
        m.name for m in pkgutil.iter_modules(importlib.import_module("wse_sim.kernels").__path__)
    ]
    public = [n for n in names if not n.startswith("_") and n not in registry.SKIP]
    assert "gemm" in public and "gemv" in public
    for name in public:
        assert f"wse_sim.kernels.{name}" in sys.modules
    assert {"gemm", "gemv"} <= set(registry.KERNELS)
    with pytest.raises(ConfigError, match="gemm"):
        registry.get_kernel("nope")


def test_kernel_result_round_trips_without_arrays(tmp_path):
    r = run_kernel("gemm", get_preset("tiny"), {"m": 8, "n": 8, "k": 8}, engine="analytic")
    assert r.link_wavelets is None and r.pe_busy_cycles is None
    path = r.save(tmp_path / "r.json")
    back = KernelResult.load(path)
    assert back.to_dict() == r.to_dict()
    np.testing.assert_array_equal(back.pe_flops, r.pe_flops)
    assert back.link_wavelets is None


def test_run_kernel_on_a_subregion_crops_the_arrays():
    spec = get_preset("small")
    r = run_kernel("gemm", spec, {"m": 16, "n": 16, "k": 16}, region=(4, 8, 4, 4), check=True)
    assert r.check == "passed"
    assert r.region == [4, 8, 4, 4]
    assert r.pe_flops.shape == (4, 4)
    assert r.pe_flops.sum() == 2 * 16**3
    plan = Gemm().plan(spec, Region(4, 8, 4, 4), {"m": 16, "n": 16, "k": 16})
    assert r.estimate_cycles == Gemm().estimate(plan, spec).cycles


def test_region_text_parses():
    assert parse_region("8x4") == (0, 0, 8, 4)
    assert parse_region("8x4+2+3") == (2, 3, 8, 4)
    with pytest.raises(ConfigError):
        parse_region("8by4")


def test_kernel_heatmap_shows_utilization_and_trace_has_per_pe_spans(tmp_path):
    import matplotlib.image as mpimg

    png, trace, out = tmp_path / "k.png", tmp_path / "k.trace.json", tmp_path / "k.json"
    proc = wse_sim(
        "kernel", "gemm", "--m", "32", "--n", "32", "--k", "32", "--mesh", "4x4",
        "--json", str(out), "--heatmap", str(png), "--trace", str(trace),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    image = mpimg.imread(str(png))
    assert image.shape[1] > image.shape[0] and image.std() > 0.05
    result = KernelResult.load(out)
    events = json.loads(trace.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X" and e.get("cat") in ("compute", "send", "recv")]
    assert {e["pid"] for e in spans} and all(e["dur"] >= 0 for e in spans)
    # every PE of the 4x4 region has a track (overlapping spans, such as a background send
    # beside a receive, go to a second lane of the same PE), and the last span ends the run
    names = {
        e["args"]["name"].split(" lane")[0]
        for e in events
        if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == spans[0]["pid"]
    }
    assert names == {f"PE ({x},{y})" for x in range(4) for y in range(4)}
    clock = get_preset("small").pe.clock_hz
    last_end_us = max(e["ts"] + e["dur"] for e in spans)
    assert last_end_us == pytest.approx(result.cycles / clock * 1e6, rel=1e-6)
