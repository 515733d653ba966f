"""The sweep picture: each headline metric against one swept parameter, a line per combination
of the other swept parameters. Written as PNG with the Agg canvas (no display)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wse_sim.errors import ConfigError
from wse_sim.result.io import atomic_write
from wse_sim.sweep.grid import Point, axes_of
from wse_sim.sweep.table import ERROR_COLUMN

HEADLINE_METRICS: tuple[str, ...] = ("tokens_per_s", "seconds", "tflops", "peak_fraction")
"""Metrics plotted when the rows have them (a RunResult's headline numbers)."""
MAX_FALLBACK_METRICS = 3
"""When none of the headline metrics exist, plot this many of the first numeric columns."""
MAX_LINES_IN_LEGEND = 16
PANEL_SIZE_IN = (5.0, 4.2)
DPI = 100


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def choose_x(points: Sequence[Point], x: str | None = None) -> str:
    """The parameter on the x axis: ``x`` if given, else the first swept (multi-valued) numeric
    parameter, else the first swept one, else the first parameter."""
    axes = axes_of(points)
    if not axes:
        raise ConfigError("grid", [], "a sweep needs at least one parameter")
    if x is not None:
        if x not in axes:
            raise ConfigError("x", x, f"not a swept parameter; use one of {', '.join(axes)}")
        return x
    varying = [n for n, vals in axes.items() if len(vals) > 1]
    for name in varying:
        if all(_is_number(v) for v in axes[name]):
            return name
    return varying[0] if varying else next(iter(axes))


def choose_metrics(
    columns: Sequence[str], rows: Sequence[dict[str, Any]], inputs: Sequence[str]
) -> list[str]:
    """Headline metrics present with at least one numeric value, else the first numeric columns."""

    def numeric(col: str) -> bool:
        return any(_is_number(r.get(col)) for r in rows)

    present = [m for m in HEADLINE_METRICS if m in columns and numeric(m)]
    if present:
        return present
    others = [c for c in columns if c not in inputs and c != ERROR_COLUMN and numeric(c)]
    return others[:MAX_FALLBACK_METRICS]


def plot_sweep(
    points: Sequence[Point],
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    path: str | Path,
    x: str | None = None,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Draw ``metrics`` (default :func:`choose_metrics`) against ``x`` and write ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    axes = axes_of(points)
    xname = choose_x(points, x)
    inputs = list(axes)
    chosen = list(metrics) if metrics is not None else choose_metrics(columns, rows, inputs)
    others = [n for n, vals in axes.items() if len(vals) > 1 and n != xname]
    xvals = axes[xname]
    numeric_x = all(_is_number(v) for v in xvals)
    position = {v: (float(v) if numeric_x else float(k)) for k, v in enumerate(xvals)}

    n = max(1, len(chosen))
    fig = Figure(figsize=(PANEL_SIZE_IN[0] * n, PANEL_SIZE_IN[1]), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"sweep of {len(points)} points against {xname}")
    if not chosen:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no numeric results to plot", ha="center", va="center")
        ax.set_axis_off()
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(o) for o in others), []).append(row)
    for k, metric in enumerate(chosen):
        ax = fig.add_subplot(1, n, k + 1)
        for gi, (key, group) in enumerate(groups.items()):
            pts = sorted(
                (position[r[xname]], float(r[metric]))
                for r in group
                if r.get(xname) in position and _is_number(r.get(metric))
            )
            if not pts:
                continue
            label = ", ".join(f"{o}={v}" for o, v in zip(others, key)) or None
            if gi >= MAX_LINES_IN_LEGEND:
                label = None
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        _scales(ax, rows, metric, xvals, numeric_x)
        ax.set_xlabel(xname)
        ax.set_ylabel(metric)
        ax.set_title(metric, fontsize=10)
        ax.grid(True, alpha=0.3)
        if others and k == n - 1:
            ax.legend(fontsize=7, title=", ".join(others), title_fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def _scales(
    ax: Any, rows: Sequence[dict[str, Any]], metric: str, xvals: list[Any], numeric_x: bool
) -> None:
    ys = [float(r[metric]) for r in rows if _is_number(r.get(metric))]
    if ys and min(ys) > 0 and max(ys) / min(ys) >= 100:
        ax.set_yscale("log")
    if numeric_x:
        xs = [float(v) for v in xvals]
        if min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(xs))
        ax.set_xticklabels([f"{v:g}" for v in sorted(xs)])
    else:
        ax.set_xticks(list(range(len(xvals))))
        ax.set_xticklabels([str(v) for v in xvals], rotation=30 if len(xvals) > 4 else 0)
