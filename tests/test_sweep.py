"""Sweeps: grid expansion, the on-disk cache, resuming after a failure or a kill, the Dask
executor, the CLI and its errors, and the progress bar."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import pytest

import wse_sim
from wse_sim.cli.main import main
from wse_sim.errors import ConfigError, PlanError
from wse_sim.report.progress import BAR_WIDTH, ProgressBar, progress
from wse_sim.sweep import SweepError, expand, run_sweep
from wse_sim.sweep.cache import PointCache, function_name, point_key
from wse_sim.sweep.plot import choose_x
from wse_sim.sweep.points import split_point

FAIL_ENV = "WSE_SIM_TEST_SWEEP_FAIL_AT"
TESTS_DIR = Path(__file__).resolve().parent


# -- point functions (module level, so worker processes can import them) ------------------------
def toy_point(point: dict) -> dict:
    """Closed form: cycles = 100 n k; raises RuntimeError at n == $WSE_SIM_TEST_SWEEP_FAIL_AT."""
    n, k = point["n"], point.get("k", 1)
    fail_at = os.environ.get(FAIL_ENV)
    if fail_at is not None and n == int(fail_at):
        raise RuntimeError(f"injected failure at n={n}")
    cycles = 100.0 * n * k
    return {
        "cycles": cycles,
        "seconds": cycles / 1e9,
        "tokens_per_s": 1e9 / cycles,
        "utilization": {"compute": 1.0 / n},
        "notes": ["a", "b"],
        "n": -1,  # collides with an input: the input wins
    }


def plan_error_point(point: dict) -> dict:
    if point["n"] == 2:
        raise PlanError("gemm needs 60000 bytes per PE, 43008 available; use a bigger region")
    return toy_point(point)


def slow_point(point: dict) -> dict:
    time.sleep(0.25)
    return toy_point(point)


def cli_point(point: dict) -> dict:
    hop = point["fabric.hop_latency_cycles"]
    cycles = float(point["batch"] * point["seq"] + 10 * hop)
    return {"cycles": cycles, "seconds": cycles / 1.1e9, "tokens_per_s": 1.1e9 / cycles}


def cli_plan_error_point(point: dict) -> dict:
    if point["batch"] == 4:
        raise PlanError("activations need 50000 bytes per PE, 43008 available; lower the batch")
    return {"cycles": 1.0, "seconds": 1e-9}


GRID = {"n": [1, 2, 3], "k": [1, 10]}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


# -- grid, keys, cache ---------------------------------------------------------------------------
def test_expand_is_the_cartesian_product_in_key_order() -> None:
    points = expand({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(points) == 6
    assert points[0] == {"a": 1, "b": "x"} and points[1] == {"a": 1, "b": "y"}
    assert points[-1] == {"a": 2, "b": "z"}
    assert expand([{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    "grid", [{"a": []}, {"a": "12"}, {"a": [1, [2]]}, {"a": [None]}, [{"a": object()}]]
)
def test_expand_rejects_bad_grids(grid) -> None:
    with pytest.raises(ConfigError):
        expand(grid)


def test_point_key_is_stable_and_covers_version_and_function() -> None:
    a = point_key({"x": 1, "y": "b"}, "m:f")
    assert a == point_key({"y": "b", "x": 1}, "m:f")  # key order does not matter
    assert len(a) == 64
    assert a != point_key({"x": 1, "y": "b"}, "m:g")
    assert a != point_key({"x": 1, "y": "b"}, "m:f", version="999")
    assert a != point_key({"x": 1.5, "y": "b"}, "m:f")
    assert point_key({"x": 1}, "m:f") == point_key({"x": 1}, "m:f", version=wse_sim.__version__)


def test_cache_round_trip_and_bad_files(tmp_path) -> None:
    cache = PointCache(tmp_path, "m:f")
    point = {"n": 3}
    assert cache.get(point) is None
    cache.put(point, {"cycles": 5.0})
    assert cache.get(point) == {"cycles": 5.0}
    assert len(cache) == 1
    cache.path(point).write_text("{truncated")  # unreadable: recomputed, not an error
    assert cache.get(point) is None
    cache.path(point).write_text(json.dumps({"point": {"n": 4}, "metrics": {"cycles": 1.0}}))
    assert cache.get(point) is None  # a file that holds another point is ignored


def test_split_point_turns_dotted_keys_into_sets() -> None:
    kwargs, sets = split_point({"model": "m", "batch": 2, "fabric.hop_latency_cycles": 4})
    assert kwargs == {"model": "m", "batch": 2}
    assert sets == ["fabric.hop_latency_cycles=4"]


# -- running -------------------------------------------------------------------------------------
def test_sweep_writes_csv_and_plot_then_reuses_the_cache(tmp_path) -> None:
    kw = dict(cache_dir=tmp_path / "cache", out_csv=tmp_path / "s.csv", jobs=2)
    first = run_sweep(GRID, toy_point, out_png=tmp_path / "s.png", **kw)
    assert first.line() == "computed 6, cached 0"
    rows = read_csv(tmp_path / "s.csv")
    assert list(rows[0]) == [
        "n",
        "k",
        "cycles",
        "seconds",
        "tokens_per_s",
        "utilization.compute",
        "notes",
    ]
    assert [(r["n"], r["k"]) for r in rows] == [
        (str(n), str(k)) for n in GRID["n"] for k in GRID["k"]
    ]
    for r in rows:
        n, k = int(r["n"]), int(r["k"])
        assert float(r["cycles"]) == 100.0 * n * k
        assert float(r["utilization.compute"]) == pytest.approx(1.0 / n)
        assert r["notes"] == "a; b"
    assert len(cache_files(tmp_path / "cache")) == 6
    img = mpimg.imread(str(tmp_path / "s.png"))
    # the headline metrics present (tokens_per_s, seconds), 5 x 4.2 inches each at 100 dpi
    assert img.shape[:2] == (420, 1000)
    assert img[..., :3].std() > 0.05
    csv_before = (tmp_path / "s.csv").read_bytes()

    second = run_sweep(GRID, toy_point, **kw)
    assert second.line() == "computed 0, cached 6"
    assert (tmp_path / "s.csv").read_bytes() == csv_before

    bigger = run_sweep({"n": [1, 2, 3, 4], "k": [1, 10]}, toy_point, **kw)
    assert (bigger.computed, bigger.cached) == (2, 6)
    assert len(read_csv(tmp_path / "s.csv")) == 8


def test_failing_point_function_stops_the_sweep_and_keeps_finished_points(
    tmp_path, monkeypatch
) -> None:
    grid = {"n": [1, 2, 3, 4, 5, 6]}
    kw = dict(cache_dir=tmp_path / "cache", out_csv=tmp_path / "s.csv", jobs=1)
    monkeypatch.setenv(FAIL_ENV, "4")
    with pytest.raises(SweepError) as info:
        run_sweep(grid, toy_point, **kw)
    assert len(str(info.value).splitlines()) == 1
    assert "injected failure at n=4" in str(info.value)
    assert not (tmp_path / "s.csv").exists()
    cache = PointCache(tmp_path / "cache", function_name(toy_point))
    done = [n for n in grid["n"] if cache.get({"n": n}) is not None]
    assert {1, 2, 3} <= set(done) and 4 not in done  # nothing finished before it was lost

    monkeypatch.delenv(FAIL_ENV)
    resumed = run_sweep(grid, toy_point, **kw)
    assert (resumed.computed, resumed.cached) == (6 - len(done), len(done))
    fresh = run_sweep(grid, toy_point, cache_dir=tmp_path / "c2", out_csv=tmp_path / "f.csv")
    assert fresh.computed == 6
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "f.csv").read_bytes()


def test_killed_sweep_resumes_without_losing_finished_points(tmp_path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR), str(TESTS_DIR.parent), env.get("PYTHONPATH", "")]
    )
    script = (
        "import sys; from wse_sim.sweep import run_sweep; "
        f"from {__name__} import slow_point; "
        f"run_sweep({{'n': list(range(1, 9))}}, slow_point, cache_dir={str(out / 'cache')!r}, "
        f"out_csv={str(out / 's.csv')!r}, jobs=1)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while len(cache_files(out / "cache")) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the sweep never cached a point"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes
        proc.wait()
    files = cache_files(out / "cache")
    assert 2 <= len(files) < 8
    for f in files:
        entry = json.loads(f.read_text())  # atomic writes: every file is complete
        n = entry["point"]["n"]
        assert entry["metrics"]["cycles"] == 100.0 * n
    assert not (out / "s.csv").exists()

    resumed = run_sweep(
        {"n": list(range(1, 9))}, slow_point, cache_dir=out / "cache", out_csv=out / "s.csv"
    )
    assert (resumed.computed, resumed.cached) == (8 - len(files), len(files))
    assert [float(r["cycles"]) for r in read_csv(out / "s.csv")] == [100.0 * n for n in range(1, 9)]


def test_wse_errors_become_error_rows_and_are_not_cached(tmp_path) -> None:
    kw = dict(cache_dir=tmp_path / "cache", out_csv=tmp_path / "s.csv", jobs=2)
    summary = run_sweep({"n": [1, 2, 3]}, plan_error_point, **kw)
    assert (summary.computed, summary.cached, summary.failed) == (2, 0, 1)
    rows = read_csv(tmp_path / "s.csv")
    assert rows[0]["error"] == "" and rows[1]["cycles"] == ""
    assert rows[1]["error"].startswith("PlanError: gemm needs 60000 bytes per PE")
    again = run_sweep({"n": [1, 2, 3]}, plan_error_point, **kw)
    assert (again.computed, again.cached, again.failed) == (0, 2, 1)  # retried, failed again


@pytest.mark.parametrize(
    "kwargs",
    [{"jobs": 0}, {"executor": "ray"}, {"scheduler": "tcp://127.0.0.1:8786"}],
)
def test_run_sweep_rejects_bad_execution_options(tmp_path, kwargs) -> None:
    with pytest.raises(ConfigError):
        run_sweep(GRID, toy_point, cache_dir=tmp_path, out_csv=tmp_path / "s.csv", **kwargs)


def test_local_executor_needs_a_picklable_point_function(tmp_path) -> None:
    with pytest.raises(ConfigError, match="module-level function"):
        run_sweep(GRID, lambda p: {"x": 1}, cache_dir=tmp_path, out_csv=tmp_path / "s.csv")
    assert not cache_files(tmp_path)


def test_plot_axis_choice() -> None:
    points = expand({"model": ["a", "b"], "mesh": ["8x8"], "batch": [1, 4]})
    assert choose_x(points) == "batch"  # the first swept numeric parameter
    assert choose_x(expand({"model": ["a", "b"], "mesh": ["8x8"]})) == "model"
    assert choose_x(points, "mesh") == "mesh"
    with pytest.raises(ConfigError, match="x="):
        choose_x(points, "seq")


def test_missing_dask_names_the_install_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'wse-sim\[dask\]'"):
        run_sweep(GRID, toy_point, cache_dir=tmp_path, out_csv=tmp_path / "s.csv", executor="dask")


def test_dask_local_cluster_gives_the_same_csv_as_local(tmp_path) -> None:
    pytest.importorskip("dask.distributed")
    local = run_sweep(GRID, toy_point, cache_dir=tmp_path / "a", out_csv=tmp_path / "a.csv")
    dask = run_sweep(
        GRID, toy_point, cache_dir=tmp_path / "b", out_csv=tmp_path / "b.csv", executor="dask"
    )
    assert local.computed == dask.computed == 6
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_dask_scheduler_address_and_failures(tmp_path, monkeypatch) -> None:
    dd = pytest.importorskip("dask.distributed")
    with dd.LocalCluster(
        host="127.0.0.1", protocol="tcp", n_workers=1, processes=False, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        kw = dict(cache_dir=tmp_path / "c", out_csv=tmp_path / "s.csv", executor="dask")
        monkeypatch.setenv(FAIL_ENV, "2")
        with pytest.raises(SweepError, match="injected failure at n=2"):
            run_sweep({"n": [1, 2, 3]}, toy_point, scheduler=address, jobs=1, **kw)
        monkeypatch.delenv(FAIL_ENV)
        kept = len(cache_files(tmp_path / "c"))
        assert kept <= 2  # n=2 failed, so at most n=1 and n=3 were cached
        summary = run_sweep({"n": [1, 2, 3]}, toy_point, scheduler=address, **kw)
        assert (summary.computed, summary.cached) == (3 - kept, kept)
    local = run_sweep(
        {"n": [1, 2, 3]}, toy_point, cache_dir=tmp_path / "l", out_csv=tmp_path / "l.csv"
    )
    assert local.computed == 3
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "l.csv").read_bytes()


# -- CLI -----------------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["sweep", *argv])
    except SystemExit as exc:
        rc = int(exc.code)
    out, err = capsys.readouterr()
    return rc, out, err


CLI_GRID = ("--batch", "1,4", "--seq", "128,512", "--set", "fabric.hop_latency_cycles=1,2")


def test_cli_sweep_runs_then_is_fully_cached(tmp_path, capsys) -> None:
    argv = (*CLI_GRID, "--point-fn", f"{__name__}:cli_point", "--out", str(tmp_path / "o"))
    rc, out, _ = run_cli(capsys, *argv, "--jobs", "2")
    assert rc == 0
    assert out.strip().splitlines()[-1] == "computed 8, cached 0"
    rows = read_csv(tmp_path / "o" / "sweep.csv")
    assert list(rows[0])[:3] == ["batch", "seq", "fabric.hop_latency_cycles"]
    for r in rows:
        expect = int(r["batch"]) * int(r["seq"]) + 10 * int(r["fabric.hop_latency_cycles"])
        assert float(r["cycles"]) == expect
    assert mpimg.imread(str(tmp_path / "o" / "sweep.png"))[..., :3].std() > 0.05
    assert len(cache_files(tmp_path / "o" / "cache")) == 8
    rc, out, _ = run_cli(capsys, *argv)
    assert rc == 0 and out.strip().splitlines()[-1] == "computed 0, cached 8"


def test_cli_point_function_crash_is_one_line(tmp_path, capsys) -> None:
    argv = ("--batch", "1", "--point-fn", f"{__name__}:toy_point", "--out", str(tmp_path / "o"))
    rc, out, err = run_cli(capsys, *argv)  # toy_point needs "n": a KeyError stops the sweep
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "KeyError" in err


def test_cli_failed_points_exit_1_after_writing_the_table(tmp_path, capsys) -> None:
    argv = ("--batch", "1,4", "--point-fn", f"{__name__}:cli_plan_error_point")
    rc, out, err = run_cli(capsys, *argv, "--out", str(tmp_path / "o"))
    assert rc == 1
    assert out.strip().splitlines()[-1] == "computed 1, cached 0"
    assert "1 points failed" in err and "PlanError" in err
    rows = read_csv(tmp_path / "o" / "sweep.csv")
    assert [r["error"] != "" for r in rows] == [False, True]


def _file(tmp_path: Path) -> str:
    p = tmp_path / "afile"
    p.write_text("x")
    return str(p)


CLI_ERRORS = {
    "bad_mesh": ["--mesh", "32y32"],
    "empty_item": ["--batch", "1,,4"],
    "zero_batch": ["--batch", "0"],
    "text_seq": ["--seq", "long"],
    "negative_context": ["--context", "-1"],
    "unknown_preset": ["--preset", "wse9"],
    "unknown_mode": ["--mode", "prefill,inference"],
    "unknown_model": ["--model", "gpt2-small,gpt7-huge"],
    "unknown_engine": ["--engine", "analytic,quantum"],
    "duplicate_value": ["--batch", "2,2"],
    "set_without_equals": ["--batch", "1", "--set", "fabric.hop_latency_cycles"],
    "set_unknown_field": ["--set", "fabric.warp_speed=1,2"],
    "set_unknown_section": ["--set", "laser.power=1"],
    "set_bad_value": ["--set", "fabric.hop_latency_cycles=1,fast"],
    "set_negative": ["--set", "fabric.hop_latency_cycles=-1"],
    "set_twice": ["--set", "fabric.colors=8", "--set", "fabric.colors=16"],
    "no_axes": [],
    "jobs_zero": ["--batch", "1", "--jobs", "0"],
    "scheduler_without_dask": ["--batch", "1", "--scheduler", "tcp://127.0.0.1:8786"],
    "scheduler_malformed": ["--batch", "1", "--executor", "dask", "--scheduler", "nowhere"],
    "unknown_executor": ["--batch", "1", "--executor", "ray"],
    "bad_point_fn": ["--batch", "1", "--point-fn", "no_such_module_xyz:f"],
    "point_fn_syntax": ["--batch", "1", "--point-fn", "justaname"],
    "bad_plot_axis": ["--batch", "1,2", "--x", "seq"],
    "bad_timeout": ["--batch", "1", "--connect-timeout", "0"],
}


@pytest.mark.parametrize("case", sorted(CLI_ERRORS))
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, case) -> None:
    out_dir = tmp_path / "o"
    rc, out, err = run_cli(capsys, *CLI_ERRORS[case], "--out", str(out_dir))
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert not out_dir.exists()  # nothing was run or written


def test_cli_out_must_be_a_folder(tmp_path, capsys) -> None:
    rc, out, err = run_cli(capsys, "--batch", "1", "--out", _file(tmp_path))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--out" in err


def test_cli_unreachable_scheduler_is_one_line(tmp_path, capsys) -> None:
    pytest.importorskip("dask.distributed")
    argv = ["--batch", "1", "--point-fn", f"{__name__}:cli_point", "--executor", "dask"]
    argv += ["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"]
    argv += ["--set", "fabric.hop_latency_cycles=1", "--seq", "1"]
    rc, out, err = run_cli(capsys, *argv, "--out", str(tmp_path / "o"))
    assert rc == 2 and "--scheduler" in err and "cannot connect" in err
    assert len(err.strip().splitlines()) == 1


# -- progress bar --------------------------------------------------------------------------------
class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_quiet_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with progress(3, "sweep", stream=stream) as bar:
        for _ in range(3):
            bar.advance()
    assert bar.done == 3 and not bar.enabled
    assert stream.getvalue() == ""


def test_progress_draws_on_a_terminal() -> None:
    stream = FakeTerminal()
    with progress(4, "sweep", stream=stream) as bar:
        for _ in range(4):
            bar.advance()
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("sweep [" + "#" * BAR_WIDTH + "] 4/4 100%")


def test_progress_render_is_proportional() -> None:
    bar = ProgressBar(4, "x", stream=io.StringIO())
    bar.done = 1
    text = bar.render(now=bar._start)
    filled = BAR_WIDTH // 4 + (1 if BAR_WIDTH % 4 >= 2 else 0)
    assert text.startswith("x [" + "#" * filled + "." * (BAR_WIDTH - filled) + "] 1/4  25%")
    empty = ProgressBar(0, stream=io.StringIO())
    assert "0/0 100%" in empty.render()
