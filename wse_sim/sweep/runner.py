"""Run a sweep: expand the grid, reuse cached points, evaluate the rest, write CSV and plot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wse_sim.errors import ConfigError
from wse_sim.report.progress import progress
from wse_sim.sweep.cache import PointCache, function_name
from wse_sim.sweep.executors import EXECUTORS, Outcome, PointFn, run_dask, run_local
from wse_sim.sweep.grid import Grid, Point, expand
from wse_sim.sweep.plot import choose_x, plot_sweep
from wse_sim.sweep.table import build_rows, write_csv


def default_jobs() -> int:
    """``min(2, cpu count)``: parallel by default without swamping a laptop."""
    return max(1, min(2, os.cpu_count() or 1))


@dataclass
class SweepSummary:
    """What a sweep did.

    Attributes:
        computed: points evaluated successfully in this call (now cached).
        cached: points read from the cache.
        failed: points whose function raised a WseSimError (not cached; retried next time).
        points: every point, in grid order.
        columns, rows: the CSV table.
        csv_path, png_path: files written (``png_path`` is ``None`` when no plot was asked for).
        errors: ``(point, one-line error)`` of each failed point.
    """

    computed: int
    cached: int
    failed: int
    points: list[Point]
    columns: list[str]
    rows: list[dict[str, Any]]
    csv_path: Path
    png_path: Path | None
    errors: list[tuple[Point, str]] = field(default_factory=list)

    def line(self) -> str:
        """The last line a sweep prints: ``computed N, cached M``."""
        return f"computed {self.computed}, cached {self.cached}"


def run_sweep(
    grid: Grid | Sequence[Point],
    point_fn: PointFn | None = None,
    cache_dir: str | Path = ".wse-sim-cache/sweep",
    out_csv: str | Path = "sweep.csv",
    executor: str = "local",
    scheduler: str | None = None,
    jobs: int | None = None,
    out_png: str | Path | None = None,
    plot_x: str | None = None,
    show_progress: bool | None = None,
    connect_timeout_s: float = 10.0,
) -> SweepSummary:
    """Evaluate every point of ``grid`` with ``point_fn`` (default: a model run) and tabulate.

    Points already in ``cache_dir`` (same inputs, package version and function) are not
    evaluated again; each new result is cached as soon as it arrives. ``executor`` is ``local``
    (``jobs`` processes, default :func:`default_jobs`) or ``dask`` (the cluster at ``scheduler``,
    or a LocalCluster on 127.0.0.1). ``point_fn`` must be a module-level function (it is pickled
    to the workers) that takes a point dict and returns a dict of metrics. Writes ``out_csv``
    and, when ``out_png`` is given, the plot. ``show_progress=None`` draws a bar only on a
    terminal. ``connect_timeout_s`` bounds the wait for a Dask scheduler (seconds).
    """
    if executor not in EXECUTORS:
        raise ConfigError("executor", executor, f"use one of {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise ConfigError("scheduler", scheduler, "only used with executor 'dask'")
    jobs = default_jobs() if jobs is None else jobs
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError("jobs", jobs, "must be a whole number >= 1")
    if point_fn is None:
        from wse_sim.sweep.points import run_point

        point_fn = run_point
    points = expand(grid)
    if not points:
        raise ConfigError("grid", points, "the sweep has no points")
    if out_png:
        choose_x(points, plot_x)  # a bad plot axis fails before any work is done
    cache = PointCache(cache_dir, function_name(point_fn))
    metrics: list[dict[str, Any] | None] = [cache.get(p) for p in points]
    errors: list[str | None] = [None] * len(points)
    todo = [(i, p) for i, p in enumerate(points) if metrics[i] is None]
    n_cached = len(points) - len(todo)
    counts = {"computed": 0, "failed": 0}

    with progress(len(todo), "sweep", enabled=show_progress) as bar:

        def on_done(i: int, outcome: Outcome) -> None:
            if outcome.metrics is not None:
                cache.put(points[i], outcome.metrics, outcome.wall_seconds)
                metrics[i] = outcome.metrics
                counts["computed"] += 1
            else:
                errors[i] = outcome.error
                counts["failed"] += 1
            bar.advance()

        if executor == "local":
            run_local(todo, point_fn, jobs, on_done)
        else:
            run_dask(todo, point_fn, jobs, on_done, scheduler, connect_timeout_s=connect_timeout_s)

    columns, rows = build_rows(points, metrics, errors)
    csv_path = write_csv(out_csv, columns, rows)
    png_path = plot_sweep(points, columns, rows, out_png, x=plot_x) if out_png else None
    return SweepSummary(
        computed=counts["computed"],
        cached=n_cached,
        failed=counts["failed"],
        points=points,
        columns=columns,
        rows=rows,
        csv_path=csv_path,
        png_path=png_path,
        errors=[(points[i], e) for i, e in enumerate(errors) if e],
    )
