"""Every ``wse-sim`` subcommand end to end, through a subprocess (``python -m wse_sim ...``).

Outputs parse, pictures have the expected pixel size and are not blank, traces are well-formed
trace-event JSON, a repeated sweep computes nothing, usage errors are one line with exit code 2 and
no traceback, and docs/cli.md matches the parsers. Tiny meshes and the analytic engine keep it fast;
the parts for ``run``, ``kernel`` and ``compare`` run when the installation has those commands.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

import wse_sim
from wse_sim.cli.main import build_parser
from wse_sim.engine.result import Span
from wse_sim.hardware.presets import PRESETS
from wse_sim.report.heatmap import figure_pixels
from wse_sim.report.trace import save_spans
from wse_sim.result.run_result import OpResult, RunResult
from wse_sim.sweep.plot import DPI, PANEL_SIZE_IN

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
TIMEOUT_S = 120
PARALLEL = 4
"""Commands run at once by :func:`cli_many` (each is mostly interpreter start-up)."""


def _parser_commands() -> dict:
    for action in build_parser()._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            return dict(action.choices)
    return {}


COMMANDS = _parser_commands()
"""Subcommand name -> its argparse parser, as this installation has them."""


def needs(name: str):
    return pytest.mark.skipif(name not in COMMANDS, reason=f"no `wse-sim {name}` yet")


def cli(*args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m wse_sim ARGS``; with ``ok`` assert exit code 0."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(REPO), env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, "-m", "wse_sim", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=TIMEOUT_S,
    )
    if ok:
        assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
    return proc


def cli_many(
    arg_lists: list[tuple[str, ...] | list[str]], cwd: Path | None = None
) -> list[subprocess.CompletedProcess]:
    """Run several ``python -m wse_sim`` commands at once (threads waiting on processes); their
    results in order. Exit codes are not checked."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda args: cli(*args, cwd=cwd, ok=False), arg_lists))


def assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wse-sim"), lines[0]
    assert "error" in lines[0]
    assert "Traceback" not in proc.stderr


def assert_png(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The PNG at ``path`` is ``shape`` (height, width) pixels and shows something."""
    img = mpimg.imread(str(path))
    assert img.shape[:2] == shape
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # not one flat colour
    assert (rgb.min(axis=2) < 0.5).mean() > 0.01  # some dark ink (text, axes, cells)
    return img


# -- a saved result with known arrays (for heatmap and trace) ------------------------------------
CLOCK_HZ = 1.0e9
WIDTH, HEIGHT = 12, 8
OPS = [  # name, region, start cycle, cycles
    ("embed", [0, 0, 6, 8], 0.0, 200.0),
    ("qkv", [6, 0, 6, 8], 200.0, 500.0),
    ("proj", [6, 0, 6, 8], 700.0, 300.0),
]


@pytest.fixture
def saved_result(tmp_path) -> Path:
    """A RunResult saved as run.json + run.npz: the west half computes all the time, the east
    half never; SRAM grows west to east; one east-bound link is loaded; 1000 cycles at 1 GHz."""
    busy = np.zeros((HEIGHT, WIDTH))
    busy[:, : WIDTH // 2] = 1.0
    links = np.zeros((4, HEIGHT, WIDTH))
    links[0, 3, 5] = 800.0
    result = RunResult(
        model="toy",
        mode="prefill",
        mesh={"width": WIDTH, "height": HEIGHT},
        placement="pipeline",
        engine="analytic",
        preset="tiny",
        cycles=1000.0,
        seconds=1000.0 / CLOCK_HZ,
        flops=2.0e6,
        tokens=16.0,
        tokens_per_s=16.0 / (1000.0 / CLOCK_HZ),
        tflops=2.0e6 / (1000.0 / CLOCK_HZ) / 1e12,
        peak_fraction=0.5,
        utilization={"compute_mean": 0.5},
        per_op=[
            OpResult(name, "gemm", "summa", region, cycles, 1e6, start_cycle=start)
            for name, region, start, cycles in OPS
        ],
        pe_compute_busy=busy,
        pe_flops=busy * 1e4,
        pe_sram_peak_bytes=np.tile(np.arange(WIDTH, dtype=float) * 1000.0, (HEIGHT, 1)),
        link_wavelets=links,
    )
    return result.save(tmp_path / "run.json")


# -- the command frame -----------------------------------------------------------------------------
def test_version():
    proc = cli("--version")
    assert proc.stdout.strip() == f"wse-sim {wse_sim.__version__}"


def test_top_level_help_lists_every_command():
    out = cli("--help").stdout
    assert out.startswith("usage: wse-sim")
    for name in COMMANDS:
        assert name in out


def test_help_of_each_command_names_every_flag():
    names = sorted(COMMANDS)
    for name, proc in zip(names, cli_many([(name, "--help") for name in names])):
        assert proc.returncode == 0, f"{name} --help: {proc.stderr}"
        assert proc.stdout.startswith(f"usage: wse-sim {name}")
        for action in COMMANDS[name]._actions:
            for flag in action.option_strings:
                assert flag in proc.stdout, f"{name} --help does not show {flag}"


USAGE_ERRORS: dict[str, str] = {
    "no_command": "",
    "unknown_command": "frobnicate",
    "unknown_flag": "hardware --frobnicate",
    "bad_mesh": "hardware --mesh 32y32",
    "unknown_field": "hardware --set fabric.warp_drive=1",
    "unknown_registry": "presets spaceships",
    "heatmap_missing_file": "heatmap no-such-run.json",
    "heatmap_bad_suffix": "heatmap run.json -o x.gif",
    "trace_missing_file": "trace no-such-run.json",
    "sweep_no_out": "sweep --batch 1",
    "sweep_bad_batch": "sweep --batch 0 --out o",
    "sweep_bad_point_fn": "sweep --batch 1 --point-fn nomodule_xyz:f --out o",
    "run_does_not_fit": "run --model gpt2-small --preset tiny --placement whole",
    "run_unknown_model": "run --model gpt9-huge",
    "run_bad_seq": "run --seq 0",
    "kernel_unknown": "kernel no-such-kernel --m 4",
    "kernel_missing_size": "kernel gemm --m 64",
    "compare_neither": "compare",
    "compare_both": "compare --model gpt2-small --kernel gemm",
    "compare_unknown_gpu": "compare --kernel gemm --m 8 --n 8 --k 8 --gpu tpu9",
}
"""Each case: the arguments. Cases of a command this installation lacks are left out."""


def test_usage_errors_are_one_line_exit_2(tmp_path):
    cases = {
        case: text.split()
        for case, text in sorted(USAGE_ERRORS.items())
        if not text or text.split()[0] in COMMANDS or case == "unknown_command"
    }
    for case, proc in zip(cases, cli_many(list(cases.values()), cwd=tmp_path)):
        try:
            assert_one_line_error(proc)
            assert proc.stdout == ""
        except AssertionError as exc:
            raise AssertionError(f"case {case}: {exc}") from None


# -- hardware and presets --------------------------------------------------------------------------
def test_hardware_json_and_toml_round_trip(tmp_path):
    cli(
        "hardware",
        "--preset",
        "tiny",
        "--set",
        "fabric.hop_latency_cycles=3",
        "--json",
        "a.json",
        "--toml",
        "a.toml",
        cwd=tmp_path,
    )
    first = json.loads((tmp_path / "a.json").read_text())
    values = {f["key"]: f["value"] for f in first["fields"]}
    assert values["fabric.hop_latency_cycles"] == 3
    assert tomllib.loads((tmp_path / "a.toml").read_text())["fabric"]["hop_latency_cycles"] == 3
    out = cli("hardware", "--hw", "a.toml", "--json", "b.json", cwd=tmp_path).stdout
    assert "fabric.hop_latency_cycles" in out
    assert json.loads((tmp_path / "b.json").read_text())["spec"] == first["spec"]


def test_presets_lists_every_hardware_preset():
    out = cli("presets", "hardware").stdout
    assert out.splitlines()[0] == "hardware presets:"
    listed = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert listed == list(PRESETS)


# -- heatmap and trace of a saved result -------------------------------------------------------------
VIRIDIS_ENDS = ((0.267, 0.005, 0.329), (0.993, 0.906, 0.144))
"""RGB of viridis at 0 and at 1: the compute map of :func:`saved_result` has only these two."""


def test_heatmap_png_and_svg(saved_result):
    png = saved_result.with_name("run.heatmap.png")
    single = saved_result.with_name("c.png")
    svg = saved_result.with_name("c.svg")
    procs = cli_many(
        [
            ("heatmap", str(saved_result)),
            ("heatmap", str(saved_result), "--kind", "compute", "-o", str(single)),
            ("heatmap", str(saved_result), "--kind", "compute", "-o", str(svg)),
        ]
    )
    assert [p.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    assert procs[0].stdout.strip() == f"wrote {png}"
    assert_png(png, figure_pixels(3))
    img = assert_png(single, figure_pixels(1))[..., :3]
    # the west half of the mesh is busy (1.0), the east half idle (0.0): both ends of the map
    for colour in VIRIDIS_ENDS:
        share = (np.abs(img - np.array(colour)).max(axis=2) < 0.02).mean()
        assert share > 0.05, f"too little of {colour} in the compute map ({share:.3f})"
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "fraction of cycles occupied" in svg.read_text()


def test_heatmap_of_a_result_without_that_array_is_one_line(saved_result):
    data = json.loads(saved_result.read_text())
    data.pop("arrays")
    bare = saved_result.with_name("bare.json")
    bare.write_text(json.dumps(data))
    assert_one_line_error(cli("heatmap", str(bare), "--kind", "sram", ok=False))


def test_trace_events_are_well_formed_and_timed(saved_result):
    spans = [
        Span(0, 0, "compute", "gemm", 0.0, 150.0),
        Span(0, 0, "send", "east", 100.0, 180.0),  # overlaps: a second lane
        Span(1, 0, "recv", "west", 110.0, 190.0),
    ]
    save_spans(saved_result.with_name("run.spans.json"), spans)
    proc = cli("trace", str(saved_result))
    out = saved_result.with_name("run.trace.json")
    assert proc.stdout.strip() == f"wrote {out} ({len(OPS)} ops, {len(spans)} spans)"
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    assert doc["otherData"]["clock_hz"] == pytest.approx(CLOCK_HZ)
    for ev in events:
        assert ev["ph"] in ("M", "X")
        assert isinstance(ev["name"], str) and ev["name"]
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        if ev["ph"] == "X":
            assert ev["ts"] >= 0 and ev["dur"] >= 0
    complete = [ev for ev in events if ev["ph"] == "X"]
    by_name = {ev["name"]: ev for ev in complete}
    for name, _, start, cycles in OPS:  # microseconds of simulated time at 1 GHz
        assert by_name[name]["ts"] == pytest.approx(start / CLOCK_HZ * 1e6)
        assert by_name[name]["dur"] == pytest.approx(cycles / CLOCK_HZ * 1e6)
    assert len(complete) == 1 + len(OPS) + len(spans)  # the run, its ops, the PE spans
    named = {(ev["pid"], ev["tid"]) for ev in events if ev["name"] == "thread_name"}
    assert {(ev["pid"], ev["tid"]) for ev in complete} <= named  # every track is named
    # tracks nest: on every (pid, tid), events never overlap
    for track in {(ev["pid"], ev["tid"]) for ev in complete}:
        spans_on = sorted(
            (ev["ts"], ev["ts"] + ev["dur"]) for ev in complete if (ev["pid"], ev["tid"]) == track
        )
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans_on, spans_on[1:]))


# -- run, then heatmap and trace of what it saved ---------------------------------------------------
TINY_GPT2 = {
    "model_type": "gpt2",
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 4,
    "n_inner": None,
    "vocab_size": 512,
    "n_positions": 128,
}
"""A two-layer GPT-2 that runs on the 16x16 ``small`` preset in about a second."""


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    path = tmp_path / "tiny" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY_GPT2))
    return path


def small_peak_flops_per_s() -> float:
    """fp16 peak of the 16x16 ``small`` preset: PEs x 2 x FMACs per cycle x clock."""
    spec = PRESETS["small"].spec
    pes = spec.mesh.width * spec.mesh.height
    return pes * 2 * spec.pe.simd_fp16_fmac * spec.pe.clock_hz


@needs("run")
def test_run_headline_numbers_follow_their_definitions(tmp_path, tiny_model):
    args = ("run", "--model", str(tiny_model), "--batch", "2", "--seq", "32", "--preset", "small")
    proc = cli(
        *args, "--placement", "whole", "--engine", "analytic", "--json", "r.json", cwd=tmp_path
    )
    r = json.loads((tmp_path / "r.json").read_text())
    clock = PRESETS["small"].spec.pe.clock_hz
    assert r["tokens"] == 2 * 32
    assert r["seconds"] == pytest.approx(r["cycles"] / clock)
    assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["seconds"])
    assert r["flops"] == pytest.approx(sum(op["flops"] for op in r["per_op"]))
    assert r["tflops"] == pytest.approx(r["flops"] / r["seconds"] / 1e12)
    assert r["peak_fraction"] == pytest.approx(
        r["flops"] / (r["seconds"] * small_peak_flops_per_s())
    )
    printed = next(line for line in proc.stdout.splitlines() if line.startswith("cycles"))
    assert float(printed.split()[1].replace(",", "")) == pytest.approx(r["cycles"], abs=0.5)
    with np.load(tmp_path / r["arrays"]) as arrays:
        busy = arrays["pe_compute_busy"]
        assert busy.shape == (16, 16)
        # the heatmap's compute map and the headline compute utilization are the same numbers
        assert busy.mean() == pytest.approx(r["utilization"]["compute_mean"])


@needs("run")
def test_des_run_saves_what_heatmap_and_trace_draw(tmp_path, tiny_model):
    args = ("run", "--model", str(tiny_model), "--seq", "16", "--preset", "small", "--mesh", "8x8")
    cli(
        *args,
        "--placement",
        "pipeline",
        "--engine",
        "des",
        "--json",
        "r.json",
        "--trace",
        "t.json",
        cwd=tmp_path,
    )
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["engine"] == "des" and saved["placement"] == "pipeline"
    cli("heatmap", "r.json", cwd=tmp_path)
    assert_png(tmp_path / "r.heatmap.png", figure_pixels(3))
    proc = cli("trace", "r.json", "-o", "again.json", cwd=tmp_path)
    n_ops = len(saved["per_op"])
    for name in ("t.json", "again.json"):
        doc = json.loads((tmp_path / name).read_text())
        complete = [ev for ev in doc["traceEvents"] if ev["ph"] == "X"]
        assert all(ev["dur"] >= 0 and ev["ts"] >= 0 for ev in complete)
        ops = [ev for ev in complete if ev["pid"] == 1 and ev.get("cat") != "run"]
        assert len(ops) == n_ops
        assert any(ev["pid"] == 2 for ev in complete)  # per-PE spans of the DES run
    assert proc.stdout.startswith(f"wrote again.json ({n_ops} ops, ")


# -- kernel ------------------------------------------------------------------------------------------
GEMM = (
    "kernel",
    "gemm",
    "--m",
    "64",
    "--n",
    "48",
    "--k",
    "32",
    "--preset",
    "small",
    "--mesh",
    "4x4",
)


@needs("kernel")
def test_kernel_analytic_json_has_the_problem_flops_and_consistent_times(tmp_path):
    proc = cli(*GEMM, "--engine", "analytic", "--json", "k.json", cwd=tmp_path)
    head = proc.stdout.splitlines()[0]
    assert head.startswith("gemm/") and "m=64 n=48 k=32" in head and "engine analytic" in head
    data = json.loads((tmp_path / "k.json").read_text())
    assert data["flops"] == 2 * 64 * 48 * 32
    assert data["engine"] == "analytic" and data["region"] == [0, 0, 4, 4]
    clock = PRESETS["small"].spec.pe.clock_hz
    assert data["seconds"] == pytest.approx(data["cycles"] / clock)
    assert data["achieved_flops_per_s"] == pytest.approx(data["flops"] / data["seconds"])
    printed = next(line for line in proc.stdout.splitlines() if line.split()[:1] == ["cycles"])
    assert float(printed.split()[1].replace(",", "")) == pytest.approx(data["cycles"], abs=0.5)


@needs("kernel")
def test_kernel_des_check_passes_and_reports_the_closed_form(tmp_path):
    cli(*GEMM, "--engine", "des", "--check", "--json", "k.json", cwd=tmp_path)
    data = json.loads((tmp_path / "k.json").read_text())
    assert data["check"] == "passed"
    assert data["engine"] == "des" and data["estimate_cycles"] > 0
    assert data["check_error"] < 1e-2  # fp16 accumulation against a float64 reference


# -- compare -----------------------------------------------------------------------------------------
@needs("compare")
def test_compare_kernel_rows_share_the_work_and_their_rates_follow(tmp_path):
    args = ("compare", "--kernel", "gemm", "--m", "128", "--n", "128", "--k", "128")
    proc = cli(
        *args, "--preset", "small", "--gpu", "a100-80gb,h100", "--json", "c.json", cwd=tmp_path
    )
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["kind"] for r in rows] == ["wafer", "gpu", "gpu"]
    assert [r["system"] for r in rows[1:]] == ["a100-80gb", "h100"]
    for r in rows:
        assert r["flops"] == 2 * 128**3
        assert r["tflops"] == pytest.approx(r["flops"] / r["seconds"] / 1e12)
        assert r["peak_fraction"] == pytest.approx(r["tflops"] / r["peak_tflops"])
        assert r["system"] in proc.stdout
    assert rows[0]["config"]["cycles"] / rows[0]["seconds"] == pytest.approx(
        PRESETS["small"].spec.pe.clock_hz
    )


# -- sweep --------------------------------------------------------------------------------------------
def e2e_point(point: dict) -> dict:
    """Closed form used by the sweep tests: cycles = batch * seq + 10 * hop at 1 GHz."""
    hop = point.get("fabric.hop_latency_cycles", 1)
    cycles = float(point["batch"] * point["seq"] + 10 * hop)
    return {
        "cycles": cycles,
        "seconds": cycles / 1e9,
        "tokens_per_s": point["batch"] * 1e9 / cycles,
    }


def test_sweep_writes_csv_and_plot_and_a_second_run_computes_nothing(tmp_path):
    args = (
        "sweep",
        "--batch",
        "1,4",
        "--seq",
        "16,64",
        "--set",
        "fabric.hop_latency_cycles=1,3",
        "--point-fn",
        f"{__name__}:e2e_point",
        "--out",
        "o",
        "--jobs",
        "2",
    )
    first = cli(*args, cwd=tmp_path)
    assert first.stdout.strip().splitlines()[-1] == "computed 8, cached 0"
    with open(tmp_path / "o" / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    for row in rows:
        b, s, h = int(row["batch"]), int(row["seq"]), int(row["fabric.hop_latency_cycles"])
        assert float(row["cycles"]) == b * s + 10 * h
    # tokens_per_s and seconds: two panels
    size = (round(PANEL_SIZE_IN[1] * DPI), round(2 * PANEL_SIZE_IN[0] * DPI))
    assert_png(tmp_path / "o" / "sweep.png", size)
    second = cli(*args, cwd=tmp_path)
    assert second.stdout.strip().splitlines()[-1] == "computed 0, cached 8"


@needs("run")
def test_sweep_of_model_runs_matches_single_runs(tmp_path, tiny_model):
    grid = ("--model", str(tiny_model), "--preset", "small", "--placement", "whole,pipeline")
    args = ("sweep", *grid, "--seq", "16,32", "--engine", "analytic", "--out", "o", "--jobs", "2")
    first = cli(*args, cwd=tmp_path)
    assert first.stdout.strip().splitlines()[-1] == "computed 4, cached 0"
    with open(tmp_path / "o" / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["placement"], r["seq"]) for r in rows] == [
        ("whole", "16"),
        ("whole", "32"),
        ("pipeline", "16"),
        ("pipeline", "32"),
    ]
    one = ("run", "--model", str(tiny_model), "--preset", "small", "--placement", "pipeline")
    cli(*one, "--seq", "32", "--engine", "analytic", "--json", "p.json", cwd=tmp_path)
    single = json.loads((tmp_path / "p.json").read_text())
    assert float(rows[3]["cycles"]) == pytest.approx(single["cycles"])
    assert float(rows[3]["tokens_per_s"]) == pytest.approx(single["tokens_per_s"])
    assert cli(*args, cwd=tmp_path).stdout.strip().splitlines()[-1] == "computed 0, cached 4"


# -- docs/cli.md is generated from these parsers ----------------------------------------------------
def test_cli_reference_is_up_to_date():
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", REPO / "docs" / "gen_cli_reference.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = (REPO / "docs" / "cli.md").read_text()
    stale = gen.stale_blocks(text, gen.blocks())
    assert stale == [], f"docs/cli.md is stale for {stale}: run python docs/gen_cli_reference.py"
    for name in COMMANDS:
        assert f"## {name}\n" in text
