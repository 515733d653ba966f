"""On-disk cache of sweep points: one JSON file per point, named by a hash of its inputs.

The key is the SHA-256 of the stable JSON (sorted keys, no spaces) of the point, the package
version and the point function's qualified name, so results of another version or another
function are never reused. Files are written atomically: an interrupted sweep leaves finished
points complete and unfinished ones absent, never half-written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wse_sim
from wse_sim.result.io import _json_default, atomic_write_json
from wse_sim.sweep.grid import Point


def function_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a point function (part of every cache key)."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def stable_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: equal inputs give equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_default)


def point_key(point: Point, function: str, version: str | None = None) -> str:
    """Hex SHA-256 of the point, the package version and the function name."""
    payload = {
        "point": point,
        "version": wse_sim.__version__ if version is None else version,
        "function": function,
    }
    return hashlib.sha256(stable_json(payload).encode("utf-8")).hexdigest()


class PointCache:
    """A folder of ``<key>.json`` files, each ``{"point", "version", "function", "metrics",
    "wall_seconds"}``."""

    def __init__(self, folder: str | Path, function: str, version: str | None = None) -> None:
        self.folder = Path(folder)
        self.function = function
        self.version = wse_sim.__version__ if version is None else version

    def key(self, point: Point) -> str:
        return point_key(point, self.function, self.version)

    def path(self, point: Point) -> Path:
        return self.folder / f"{self.key(point)}.json"

    def get(self, point: Point) -> dict[str, Any] | None:
        """The cached metrics of ``point``, or ``None`` when absent, unreadable or not this point."""
        p = self.path(point)
        try:
            entry = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
            return None
        if stable_json(entry.get("point")) != stable_json(point):
            return None
        return entry["metrics"]

    def put(self, point: Point, metrics: dict[str, Any], wall_seconds: float = 0.0) -> Path:
        """Store ``metrics`` of ``point`` atomically; returns the file written."""
        entry = {
            "point": point,
            "version": self.version,
            "function": self.function,
            "metrics": metrics,
            "wall_seconds": wall_seconds,
        }
        return atomic_write_json(self.path(point), entry)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json")) if self.folder.is_dir() else 0
