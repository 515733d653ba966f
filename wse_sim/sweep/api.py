"""``sweep(grid, out, ...)``: the Python form of ``wse-sim sweep``.

The grid is a dict from parameter to the values it takes, exactly the axes of the command
(``model``, ``preset``, ``mesh``, ``placement``, ``mode``, ``engine``, ``dtype``, ``batch``,
``seq``, ``context``, plus hardware fields as dotted keys such as ``fabric.hop_latency_cycles``).
Every value is checked before anything runs, with the same one-line :class:`ConfigError` messages
the command prints. Files are the command's: ``OUT/sweep.csv``, ``OUT/sweep.png`` and
``OUT/cache/``, so a sweep started from Python and the same sweep from the command line share
their cache (``computed 0`` the second time).

Example::

    from wse_sim.sweep.api import sweep

    res = sweep({"model": ["gpt2-small"], "mesh": ["32x32", "64x64"], "batch": [1, 4]},
                "results/mesh", engine="analytic")
    print(res.line())           # computed 4, cached 0
    res.rows[0]["tokens_per_s"]
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wse_sim.errors import ConfigError
from wse_sim.hardware.loader import build_spec, parse_mesh, parse_set
from wse_sim.sweep.executors import PointFn
from wse_sim.sweep.grid import Point, expand, parse_scalar
from wse_sim.sweep.runner import SweepSummary, run_sweep

RUN_AXES: tuple[str, ...] = (
    "model",
    "preset",
    "mesh",
    "placement",
    "mode",
    "engine",
    "dtype",
    "batch",
    "seq",
    "context",
)
"""Plain (undotted) grid keys understood by the default point function, as in ``wse-sim sweep``."""

_REGISTRIES: dict[str, tuple[str, str]] = {
    "model": ("wse_sim.spec.models", "MODEL_PRESETS"),
    "preset": ("wse_sim.hardware.presets", "PRESETS"),
    "placement": ("wse_sim.placement.registry", "PLACEMENTS"),
    "mode": ("wse_sim.graph.build", "MODES"),
    "engine": ("wse_sim.engine.registry", "ENGINES"),
    "dtype": ("wse_sim.spec.models", "MODEL_DTYPES"),
}
"""Where the allowed names of a text axis live: (module, attribute)."""

CSV_NAME = "sweep.csv"
PLOT_NAME = "sweep.png"
CACHE_NAME = "cache"


@dataclass
class SweepResult:
    """What :func:`sweep` produced.

    Attributes:
        rows: one dict per point, in grid order: the inputs, then the flattened metrics
            (``cycles`` in PE cycles, ``seconds``, ``tokens_per_s``, ``tflops``, ...) and, when
            a point failed, its one-line ``error``.
        columns: the CSV header (inputs first, then metrics, then ``error`` if any point failed).
        points: the input dict of every point, in grid order.
        csv_path: the CSV written (``OUT/sweep.csv``).
        plot_path: the plot written (``OUT/sweep.png``), or ``None`` with ``plot=False``.
        cache_dir: the folder of cached points (``OUT/cache``).
        computed: points evaluated by this call (now cached).
        cached: points read from the cache.
        failed: points whose run raised a wse-sim error (not cached; tried again next time).
        errors: ``(point, one-line message)`` of each failed point.
    """

    rows: list[dict[str, Any]]
    columns: list[str]
    points: list[Point]
    csv_path: Path
    plot_path: Path | None
    cache_dir: Path
    computed: int
    cached: int
    failed: int = 0
    errors: list[tuple[Point, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every point succeeded (the command would exit with 0)."""
        return self.failed == 0

    def line(self) -> str:
        """``computed N, cached M``: the last line ``wse-sim sweep`` prints."""
        return f"computed {self.computed}, cached {self.cached}"

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame with the CSV's column order (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_frame needs pandas: pip install 'wse-sim[pandas]'") from None
        return pd.DataFrame(self.rows, columns=self.columns)

    @classmethod
    def from_summary(cls, summary: SweepSummary, cache_dir: str | Path) -> SweepResult:
        """Wrap the runner's :class:`SweepSummary`."""
        return cls(
            rows=summary.rows,
            columns=summary.columns,
            points=summary.points,
            csv_path=summary.csv_path,
            plot_path=summary.png_path,
            cache_dir=Path(cache_dir),
            computed=summary.computed,
            cached=summary.cached,
            failed=summary.failed,
            errors=list(summary.errors),
        )


def sweep(
    grid: Mapping[str, Any],
    out: str | Path,
    *,
    engine: str | None = None,
    jobs: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    point_fn: PointFn | None = None,
    x: str | None = None,
    plot: bool = True,
    show_progress: bool | None = None,
    connect_timeout_s: float = 10.0,
) -> SweepResult:
    """Run every combination of ``grid`` (cached, in parallel) and write ``OUT/sweep.csv`` and
    ``OUT/sweep.png``; the Python form of ``wse-sim sweep``.

    Args:
        grid: parameter -> list of values (a single value is taken as a one-item list). The last
            key varies fastest. Keys are :data:`RUN_AXES` (and any other keyword of
            ``wse_sim.api.run``) or hardware fields ``section.field``.
        out: output folder (created); holds ``sweep.csv``, ``sweep.png`` and ``cache/``.
        engine: run every point on this engine (``analytic``, ``des``); the same as the grid
            entry ``"engine": [engine]``. ``None`` leaves it to the grid or the run's default.
        jobs: points evaluated at once (default ``min(2, CPU count)``).
        executor: ``local`` (processes on this machine) or ``dask``.
        scheduler: Dask scheduler address ``tcp://HOST:PORT`` (only with ``executor="dask"``;
            default: a small cluster started on 127.0.0.1).
        point_fn: evaluate each point with this module-level function (point dict -> metrics
            dict) instead of a model run; the grid keys are then free and only generic checks
            apply.
        x: the parameter on the plot's x axis (default: the first swept numeric one).
        plot: write ``sweep.png`` (default True).
        show_progress: draw a progress bar on stderr; ``None`` draws it only on a terminal.
        connect_timeout_s: how long to wait for the Dask scheduler (seconds).

    Returns:
        A :class:`SweepResult`. Points that raise a wse-sim error are rows with an ``error``
        (see ``failed``); they do not raise.

    Raises:
        ConfigError: a bad grid, value or option (one line naming it); nothing has run.
        SweepError: a point function crashed with a non-wse-sim exception.
    """
    checked = check_grid(grid, for_run=point_fn is None)
    if engine is not None:
        if "engine" in checked:
            raise ConfigError(
                "engine", engine, "the grid already has an 'engine' axis; give it in one place"
            )
        checked["engine"] = check_grid({"engine": engine}, for_run=point_fn is None)["engine"]
    if not checked:
        raise ConfigError("grid", dict(grid), "give at least one parameter, e.g. {'batch': [1, 4]}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError("out", str(folder), "is a file; give a folder")
    cache_dir = folder / CACHE_NAME
    summary = run_sweep(
        checked,
        point_fn,
        cache_dir=cache_dir,
        out_csv=folder / CSV_NAME,
        out_png=folder / PLOT_NAME if plot else None,
        executor=executor,
        scheduler=scheduler,
        jobs=jobs,
        plot_x=x,
        show_progress=show_progress,
        connect_timeout_s=connect_timeout_s,
    )
    return SweepResult.from_summary(summary, cache_dir)


# -- grid checks ---------------------------------------------------------------------------------
def check_grid(grid: Mapping[str, Any], for_run: bool = True) -> dict[str, list[Any]]:
    """The grid with every value checked and normalised; raises a one-line ConfigError.

    A single value becomes a one-item list; a value listed twice or an empty list is an error.
    With ``for_run`` (the default point function), keys must be :data:`RUN_AXES`, another
    keyword of ``wse_sim.api.run`` or a hardware field ``section.field``; meshes become
    ``"WxH"`` (a ``(width, height)`` pair is accepted), ``batch``/``seq`` must be whole numbers
    > 0, ``context`` >= 0, names must be in their registry, and each hardware value must build a
    valid spec.
    """
    if not isinstance(grid, Mapping):
        raise ConfigError("grid", grid, "give a dict of parameter -> list of values")
    allowed = _run_keywords() if for_run else None
    checked: dict[str, list[Any]] = {}
    for key, raw in grid.items():
        if not isinstance(key, str) or not key:
            raise ConfigError("grid", key, "parameter names must be non-empty strings")
        values = _as_list(key, raw)
        if for_run:
            values = [_check_run_value(key, v, allowed) for v in values]
        seen = set()
        for v in values:
            tag = repr(v)
            if tag in seen:
                raise ConfigError(key, values, f"lists {v!r} twice; give each value once")
            seen.add(tag)
        checked[key] = values
    expand(checked)  # generic value checks (str, int, float, bool)
    return checked


def _as_list(key: str, raw: Any) -> list[Any]:
    if key == "mesh" and isinstance(raw, tuple) and len(raw) == 2 and _is_int(raw[0]):
        return [raw]  # one (width, height) pair
    if isinstance(raw, (str, bytes, int, float, bool)):
        return [raw]
    if not isinstance(raw, Sequence):
        raise ConfigError(key, raw, "give a value or a list of values")
    if len(raw) == 0:
        raise ConfigError(key, list(raw), "give at least one value")
    return list(raw)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_run_value(key: str, value: Any, allowed: set[str]) -> Any:
    if "." in key:
        return _check_hardware(key, value)
    if key not in allowed:
        raise ConfigError(
            "grid",
            key,
            f"not a run parameter; use {', '.join(sorted(allowed))} "
            "or a hardware field such as fabric.hop_latency_cycles",
        )
    if key == "mesh":
        if isinstance(value, (tuple, list)) and len(value) == 2:
            value = f"{value[0]}x{value[1]}"
        if not isinstance(value, str):
            raise ConfigError("mesh", value, "give 'WxH', e.g. '64x64', or a (width, height) pair")
        width, height = parse_mesh(value)
        return f"{width}x{height}"
    if key in ("batch", "seq"):
        if not _is_int(value) or value < 1:
            raise ConfigError(key, value, "must be a whole number greater than 0")
        return value
    if key == "context":
        if not _is_int(value) or value < 0:
            raise ConfigError(key, value, "must be a whole number >= 0")
        return value
    if key in _REGISTRIES:
        if not isinstance(value, str):
            raise ConfigError(key, value, "give a name as a string")
        known = _registry_names(key)
        is_file = key == "model" and (value.endswith(".json") or Path(value).exists())
        if known is not None and value not in known and not is_file:
            raise ConfigError(key, value, f"unknown; use one of {', '.join(known)}")
    return value


def _check_hardware(key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(key, value, "give a number (or its text) for a hardware field")
    section, name, text = parse_set(f"{key}={value}")
    build_spec(sets=[f"{section}.{name}={text}"])  # unknown field or bad value: one line
    return parse_scalar(value) if isinstance(value, str) else value


def _registry_names(key: str) -> list[str] | None:
    module, attr = _REGISTRIES[key]
    try:
        return list(getattr(importlib.import_module(module), attr))
    except (ImportError, AttributeError):
        return None  # that stage is not installed yet: the run itself will check


def _run_keywords() -> set[str]:
    """:data:`RUN_AXES` plus the keyword parameters of ``wse_sim.api.run`` (when installed),
    less ``sets`` (hardware fields are dotted keys)."""
    names = set(RUN_AXES)
    try:
        from wse_sim.api import run
    except ImportError:
        return names
    try:
        params = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a builtin or C function
        return names
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names |= {p.name for p in params if p.kind in kinds}
    names.discard("sets")
    return names
