"""The Python sweep API (``wse_sim.sweep.api.sweep``): closed-form rows, the files it writes,
the cache it shares with ``wse-sim sweep``, grid checks that mirror the command's, and
``SweepResult.to_frame``."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from wse_sim.cli.main import main
from wse_sim.errors import ConfigError, PlanError
from wse_sim.sweep.api import SweepResult, check_grid, sweep
from wse_sim.sweep.plot import DPI, PANEL_SIZE_IN


# -- point functions (module level: worker processes import them by name) -----------------------
def closed_form(point: dict) -> dict:
    """cycles = 100 * n * k at 1 GHz; tokens_per_s = n / seconds."""
    n, k = point["n"], point.get("k", 1)
    cycles = 100.0 * n * k
    seconds = cycles / 1e9
    return {"cycles": cycles, "seconds": seconds, "tokens_per_s": n / seconds, "k": -1}


def plan_error_at_two(point: dict) -> dict:
    if point["n"] == 2:
        raise PlanError("gemm needs 60000 bytes per PE, 43008 available; use a bigger region")
    return closed_form(point)


def echo_point(point: dict) -> dict:
    """Returns its inputs as metrics (prefixed), to see exactly what a point received."""
    return {f"got.{k}": v for k, v in point.items()} | {"cycles": 1.0}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- rows, files, cache ---------------------------------------------------------------------------
def test_rows_match_closed_form_in_grid_order(tmp_path):
    res = sweep({"n": [1, 2, 3], "k": [1, 10]}, tmp_path / "o", point_fn=closed_form, jobs=2)
    assert isinstance(res, SweepResult)
    assert [(r["n"], r["k"]) for r in res.rows] == [(n, k) for n in (1, 2, 3) for k in (1, 10)]
    for row in res.rows:
        assert row["cycles"] == 100.0 * row["n"] * row["k"]  # input k wins over metric k=-1
        assert row["tokens_per_s"] == pytest.approx(row["n"] / (row["cycles"] / 1e9))
    assert (res.computed, res.cached, res.failed, res.ok) == (6, 0, 0, True)
    assert res.line() == "computed 6, cached 0"
    assert res.columns[:2] == ["n", "k"] and "error" not in res.columns
    assert res.csv_path == tmp_path / "o" / "sweep.csv"
    assert res.cache_dir == tmp_path / "o" / "cache"
    assert len(list(res.cache_dir.glob("*.json"))) == 6
    on_disk = read_csv(res.csv_path)
    assert [float(r["cycles"]) for r in on_disk] == [r["cycles"] for r in res.rows]
    assert list(on_disk[0]) == res.columns


def test_plot_is_written_with_one_panel_per_headline_metric(tmp_path):
    res = sweep({"n": [1, 2, 4], "k": [1, 10]}, tmp_path / "o", point_fn=closed_form, jobs=1)
    assert res.plot_path == tmp_path / "o" / "sweep.png"
    img = mpimg.imread(res.plot_path)
    # tokens_per_s and seconds are the headline metrics present: two panels side by side
    assert img.shape[:2] == (round(PANEL_SIZE_IN[1] * DPI), round(2 * PANEL_SIZE_IN[0] * DPI))
    assert img[..., :3].std() > 0.05  # not a blank canvas
    no_plot = sweep({"n": [1, 2]}, tmp_path / "p", point_fn=closed_form, jobs=1, plot=False)
    assert no_plot.plot_path is None and not (tmp_path / "p" / "sweep.png").exists()


def test_second_identical_sweep_computes_nothing_and_growing_computes_only_new(tmp_path):
    grid = {"n": [1, 2], "k": [1, 10]}
    first = sweep(grid, tmp_path / "o", point_fn=closed_form, jobs=1)
    again = sweep(grid, tmp_path / "o", point_fn=closed_form, jobs=1)
    assert (first.computed, first.cached) == (4, 0)
    assert (again.computed, again.cached) == (0, 4)
    assert again.rows == first.rows
    grown = sweep({"n": [1, 2, 3], "k": [1, 10]}, tmp_path / "o", point_fn=closed_form, jobs=1)
    assert (grown.computed, grown.cached) == (2, 4)


def test_cache_is_shared_with_the_command_line(tmp_path):
    out = tmp_path / "o"
    res = sweep({"batch": [1, 4]}, out, point_fn=echo_point, jobs=1)
    assert res.computed == 2
    code = main(
        ["sweep", "--batch", "1,4", "--point-fn", f"{__name__}:echo_point"]
        + [
            "--out",
            str(out),
            "--jobs",
            "1",
        ]
    )
    assert code == 0
    assert read_csv(out / "sweep.csv")[1]["got.batch"] == "4"
    assert len(list((out / "cache").glob("*.json"))) == 2  # nothing new was cached


def test_point_errors_are_rows_not_exceptions_and_are_not_cached(tmp_path):
    res = sweep({"n": [1, 2, 3]}, tmp_path / "o", point_fn=plan_error_at_two, jobs=1)
    assert (res.computed, res.failed, res.ok) == (2, 1, False)
    assert res.columns[-1] == "error"
    assert res.rows[1]["error"].startswith("PlanError: gemm needs 60000 bytes")
    assert res.rows[0]["error"] == "" and "cycles" not in res.rows[1]
    assert res.errors == [({"n": 2}, res.rows[1]["error"])]
    again = sweep({"n": [1, 2, 3]}, tmp_path / "o", point_fn=plan_error_at_two, jobs=1)
    assert (again.computed, again.cached, again.failed) == (0, 2, 1)  # the failure is retried


def test_engine_keyword_is_one_more_axis(tmp_path):
    res = sweep({"n": [1, 2]}, tmp_path / "o", point_fn=echo_point, engine="analytic", jobs=1)
    assert res.points == [{"n": 1, "engine": "analytic"}, {"n": 2, "engine": "analytic"}]
    assert all(r["got.engine"] == "analytic" for r in res.rows)
    with pytest.raises(ConfigError, match="already has an 'engine' axis"):
        sweep({"engine": ["des"]}, tmp_path / "p", point_fn=echo_point, engine="analytic")


def test_scalars_become_one_item_lists_and_free_keys_with_a_point_function(tmp_path):
    res = sweep({"n": 3, "label": "x"}, tmp_path / "o", point_fn=echo_point, jobs=1)
    assert res.points == [{"n": 3, "label": "x"}]


# -- grid checks (the default point function: a model run) ----------------------------------------
def test_run_grid_is_normalised():
    grid = check_grid(
        {
            "mesh": [(32, 32), "64X48"],
            "batch": 4,
            "fabric.hop_latency_cycles": ["2", 3],
            "model": ["gpt2-small"],
            "dtype": "fp32",
        }
    )
    assert grid == {
        "mesh": ["32x32", "64x48"],
        "batch": [4],
        "fabric.hop_latency_cycles": [2, 3],
        "model": ["gpt2-small"],
        "dtype": ["fp32"],
    }
    assert check_grid({"mesh": (16, 8)}) == {"mesh": ["16x8"]}


@pytest.mark.parametrize(
    "grid, field",
    [
        ({"batsh": [1]}, "grid"),
        ({"batch": [0]}, "batch"),
        ({"batch": [True]}, "batch"),
        ({"seq": [1.5]}, "seq"),
        ({"context": [-1]}, "context"),
        ({"mesh": ["32y32"]}, "mesh"),
        ({"model": ["gpt9-huge"]}, "model"),
        ({"preset": ["wse9"]}, "preset"),
        ({"engine": ["quantum"]}, "engine"),
        ({"mode": ["inference"]}, "mode"),
        ({"dtype": ["int4"]}, "dtype"),
        ({"batch": [1, 1]}, "batch"),
        ({"batch": []}, "batch"),
        ({"batch": {1: 2}}, "batch"),
        ({"fabric.hop_latency_cycles": [-1]}, "fabric.hop_latency_cycles"),
        ({"fabric.warp_drive": [1]}, "fabric.warp_drive"),
        ({"sets": ["fabric.hop_latency_cycles=2"]}, "grid"),
    ],
)
def test_bad_grid_is_one_line_error_before_anything_runs(tmp_path, grid, field):
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as info:
        sweep(grid, out, jobs=1)
    message = str(info.value)
    assert "\n" not in message
    assert field in message
    assert not out.exists()


def test_bad_options_are_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="give a folder"):
        sweep({"n": [1]}, tmp_path / "file", point_fn=closed_form)
    with pytest.raises(ConfigError, match="jobs"):
        sweep({"n": [1]}, tmp_path / "o", point_fn=closed_form, jobs=0)
    with pytest.raises(ConfigError, match="executor"):
        sweep({"n": [1]}, tmp_path / "o", point_fn=closed_form, executor="slurm")
    with pytest.raises(ConfigError, match="scheduler"):
        sweep({"n": [1]}, tmp_path / "o", point_fn=closed_form, scheduler="tcp://h:1")
    with pytest.raises(ConfigError, match="not a swept parameter"):
        sweep({"n": [1, 2]}, tmp_path / "o", point_fn=closed_form, x="k")
    with pytest.raises(ConfigError, match="grid"):
        sweep({}, tmp_path / "o", point_fn=closed_form)
    with pytest.raises(ConfigError, match="grid"):
        sweep([{"n": 1}], tmp_path / "o", point_fn=closed_form)  # type: ignore[arg-type]


# -- tables ---------------------------------------------------------------------------------------
def test_to_frame_without_pandas_says_how_to_install(tmp_path, monkeypatch):
    res = sweep({"n": [1]}, tmp_path / "o", point_fn=closed_form, jobs=1, plot=False)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'wse-sim\[pandas\]'"):
        res.to_frame()


def test_to_frame_has_the_csv_columns(tmp_path):
    pd = pytest.importorskip("pandas")
    res = sweep({"n": [1, 2], "k": [1, 10]}, tmp_path / "o", point_fn=closed_form, jobs=1)
    frame = res.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == res.columns
    assert frame["cycles"].tolist() == [100.0, 1000.0, 200.0, 2000.0]


# -- the default point function: model runs through wse_sim.api.run ------------------------------
TINY_GPT2 = {
    "model_type": "gpt2",
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 4,
    "vocab_size": 512,
    "n_positions": 128,
}


def test_model_sweep_rows_equal_single_runs(tmp_path):
    api = pytest.importorskip("wse_sim.api")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_GPT2))
    grid = {"model": str(config), "preset": "small", "placement": "whole", "seq": [16, 32]}
    res = sweep(grid | {"gemm": ["summa"]}, tmp_path / "o", engine="analytic", jobs=1)
    assert res.ok and res.computed == 2
    for row in res.rows:
        single = api.run(
            model=str(config),
            preset="small",
            placement="whole",
            seq=row["seq"],
            gemm="summa",
            engine="analytic",
        )
        assert row["cycles"] == pytest.approx(single.cycles)
        assert row["tokens"] == row["seq"]  # batch 1
        assert row["tokens_per_s"] == pytest.approx(row["tokens"] / row["seconds"])
        assert "per_op" not in row


def test_hardware_fields_reach_the_run(tmp_path):
    pytest.importorskip("wse_sim.api")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_GPT2))
    grid = {"model": str(config), "preset": "small", "seq": 16, "pe.clock_hz": [1.0e9, 2.0e9]}
    res = sweep(grid, tmp_path / "o", engine="analytic", jobs=1, plot=False)
    slow, fast = res.rows
    assert slow["cycles"] == pytest.approx(fast["cycles"])  # the clock changes time, not cycles
    assert slow["seconds"] == pytest.approx(2 * fast["seconds"])


def test_the_documentation_pictures_use_valid_grids_and_run_arguments():
    """docs/make_pictures.py's sweep grid and run keywords pass the same checks as a user's."""
    import importlib.util
    import inspect

    api = pytest.importorskip("wse_sim.api")
    path = Path(__file__).resolve().parents[1] / "docs" / "make_pictures.py"
    spec = importlib.util.spec_from_file_location("make_pictures", path)
    pictures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pictures)
    grid = check_grid(pictures.SWEEP_GRID)
    assert len(grid["mesh"]) * len(grid["placement"]) == 21
    assert set(pictures.HEATMAP_RUN) <= set(inspect.signature(api.run).parameters)
    assert check_grid({k: [v] for k, v in pictures.HEATMAP_RUN.items()})


def test_package_is_callable_as_the_sweep_api(tmp_path):
    import wse_sim

    via_package = wse_sim.sweep({"n": [1, 2]}, tmp_path / "a", point_fn=closed_form, jobs=1)
    direct = sweep({"n": [1, 2]}, tmp_path / "b", point_fn=closed_form, jobs=1)
    assert via_package.rows == direct.rows
    assert via_package.computed == 2 and wse_sim.sweep.run_sweep is not None
