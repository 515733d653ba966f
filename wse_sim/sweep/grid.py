"""Sweep grids: named axes of values, expanded to points (plain dicts) in a stable order."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from wse_sim.errors import ConfigError

Point = dict[str, Any]
"""One evaluation of a sweep: parameter name -> JSON-able value (str, int, float, bool)."""

Grid = Mapping[str, Sequence[Any]]
"""Parameter name -> the values it takes; the sweep is the cartesian product."""


def expand(grid: Grid | Sequence[Point]) -> list[Point]:
    """All points of ``grid``: the last axis varies fastest (like nested for-loops in key order).

    A sequence of dicts is taken as already-expanded points and copied. Every axis must have at
    least one value and every value must be a str, int, float or bool.
    """
    if isinstance(grid, Mapping):
        names = list(grid)
        axes = []
        for name in names:
            values = grid[name]
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise ConfigError(name, values, "give a list of values for each swept parameter")
            if len(values) == 0:
                raise ConfigError(name, list(values), "give at least one value")
            for v in values:
                _check_value(name, v)
            axes.append(list(values))
        return [dict(zip(names, combo)) for combo in itertools.product(*axes)]
    points = []
    for point in grid:
        if not isinstance(point, Mapping):
            raise ConfigError("grid", point, "give a mapping of name -> values, or a list of dicts")
        for name, v in point.items():
            _check_value(name, v)
        points.append(dict(point))
    return points


def axes_of(points: Sequence[Point]) -> dict[str, list[Any]]:
    """Parameter name -> its distinct values in first-seen order, over ``points``."""
    axes: dict[str, list[Any]] = {}
    for p in points:
        for name, v in p.items():
            seen = axes.setdefault(name, [])
            if v not in seen:
                seen.append(v)
    return axes


def _check_value(name: str, value: Any) -> None:
    if not isinstance(value, (str, int, float, bool)):
        raise ConfigError(name, value, "sweep values must be str, int, float or bool")


def parse_scalar(text: str) -> str | int | float:
    """``"4"`` -> 4, ``"0.5"`` / ``"1e9"`` -> float, anything else stays a string."""
    t = text.strip()
    try:
        return int(t.replace("_", ""))
    except ValueError:
        pass
    try:
        return float(t.replace("_", ""))
    except ValueError:
        return t


def split_list(field: str, text: str) -> list[str]:
    """``"a,b,c"`` -> ``["a", "b", "c"]``; empty items are an error naming ``field``."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ConfigError(
            field, text, "give a comma-separated list without empty items, e.g. 1,2,4"
        )
    return items
