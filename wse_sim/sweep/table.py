"""One CSV row per sweep point: its inputs, then its metrics flattened to columns."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wse_sim.result.io import atomic_write_text
from wse_sim.sweep.grid import Point

ERROR_COLUMN = "error"
"""Column holding the one-line error of a point that raised a WseSimError (empty otherwise)."""


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become ``outer.inner`` columns; lists become ``"; "``-joined text."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = "; ".join(str(v) for v in value)
        else:
            flat[name] = value
    return flat


def build_rows(
    points: Sequence[Point],
    metrics: Sequence[dict[str, Any] | None],
    errors: Sequence[str | None],
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the sweep table, in point order.

    Input columns come first (every parameter of any point), then metric columns in first-seen
    order; a metric whose name equals an input is dropped (the input is authoritative). The
    ``error`` column is added when any point failed.
    """
    inputs: list[str] = []
    for p in points:
        inputs += [k for k in p if k not in inputs]
    metric_cols: list[str] = []
    rows = []
    for point, m in zip(points, metrics):
        row: dict[str, Any] = dict(point)
        for k, v in flatten(m or {}).items():
            if k in inputs:
                continue
            if k not in metric_cols:
                metric_cols.append(k)
            row[k] = v
        rows.append(row)
    columns = inputs + metric_cols
    if any(errors):
        columns.append(ERROR_COLUMN)
        for row, err in zip(rows, errors):
            row[ERROR_COLUMN] = err or ""
    return columns, rows


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def write_csv(path: str | Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Write the table atomically; missing cells are empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write_text(path, buf.getvalue())
