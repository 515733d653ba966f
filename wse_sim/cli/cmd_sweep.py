"""``wse-sim sweep``: run a grid of model runs (comma lists), cached, in parallel; CSV + plot.

Example::

    wse-sim sweep --model gpt2-small,gpt2-medium --mesh 32x32,64x64 --placement whole,pipeline \\
        --mode prefill --batch 1,4 --seq 128,512 --set fabric.hop_latency_cycles=1,2,4 \\
        --engine analytic --out DIR --jobs 2

writes ``DIR/sweep.csv``, ``DIR/sweep.png`` and caches each point under ``DIR/cache/``; the last
line printed is ``computed N, cached M``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wse_sim.errors import ConfigError
from wse_sim.hardware.loader import build_spec, parse_mesh, parse_set
from wse_sim.hardware.presets import PRESETS
from wse_sim.sweep.executors import EXECUTORS, check_scheduler
from wse_sim.sweep.grid import parse_scalar, split_list

NAME = "sweep"
HELP = "run a grid of model runs (comma-separated values) with a cache; writes a CSV and a plot"

# (flag / point key, parser of one item, registry (module, attribute) to check names against)
Axis = tuple[str, Callable[[str, str], Any], tuple[str, str] | None]


def _text(field: str, item: str) -> str:
    return item


def _mesh(field: str, item: str) -> str:
    width, height = parse_mesh(item)
    return f"{width}x{height}"


def _positive_int(field: str, item: str) -> int:
    try:
        value = int(item)
    except ValueError:
        raise ConfigError(field, item, "must be a whole number greater than 0") from None
    if value < 1:
        raise ConfigError(field, item, "must be a whole number greater than 0")
    return value


def _non_negative_int(field: str, item: str) -> int:
    try:
        value = int(item)
    except ValueError:
        raise ConfigError(field, item, "must be a whole number >= 0") from None
    if value < 0:
        raise ConfigError(field, item, "must be a whole number >= 0")
    return value


AXES: tuple[Axis, ...] = (
    ("model", _text, ("wse_sim.spec.models", "MODEL_PRESETS")),
    ("preset", _text, ("wse_sim.hardware.presets", "PRESETS")),
    ("mesh", _mesh, None),
    ("placement", _text, ("wse_sim.placement.registry", "PLACEMENTS")),
    ("mode", _text, ("wse_sim.graph.build", "MODES")),
    ("engine", _text, ("wse_sim.engine.registry", "ENGINES")),
    ("dtype", _text, None),
    ("batch", _positive_int, None),
    ("seq", _positive_int, None),
    ("context", _non_negative_int, None),
)
"""Grid axes in the order they vary (the last varies fastest, before hardware fields)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("grid (comma-separated values; each flag is one axis)")
    g.add_argument(
        "--model", help="model presets or config.json paths, e.g. gpt2-small,gpt2-medium"
    )
    g.add_argument("--preset", help=f"hardware presets ({', '.join(PRESETS)})")
    g.add_argument("--mesh", help="mesh sizes WxH, e.g. 32x32,64x64")
    g.add_argument("--placement", help="placements, e.g. whole,pipeline")
    g.add_argument("--mode", help="modes, e.g. prefill,decode")
    g.add_argument("--engine", help="engines, e.g. analytic")
    g.add_argument("--dtype", help="element types, e.g. fp16,fp32")
    g.add_argument("--batch", help="batch sizes, e.g. 1,4")
    g.add_argument("--seq", help="sequence lengths, e.g. 128,512")
    g.add_argument("--context", help="decode context lengths, e.g. 512,2048")
    g.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.FIELD=V1,V2",
        help="sweep a hardware field, e.g. fabric.hop_latency_cycles=1,2,4 (repeatable)",
    )
    r = parser.add_argument_group("execution and output")
    r.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="writes DIR/sweep.csv, DIR/sweep.png, DIR/cache/",
    )
    r.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="parallel points (default min(2, CPUs))"
    )
    r.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local processes (default) or a Dask cluster",
    )
    r.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDR",
        help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (with --executor dask; default: a local cluster)",
    )
    r.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the Dask scheduler (default 10)",
    )
    r.add_argument(
        "--point-fn",
        default=None,
        metavar="MODULE:FUNCTION",
        help="evaluate each point with this function (point dict -> metrics dict) "
        "instead of a model run",
    )
    r.add_argument(
        "--x", dest="plot_x", default=None, metavar="PARAM", help="parameter on the plot's x axis"
    )


def _registry_names(where: tuple[str, str] | None) -> list[str] | None:
    if where is None:
        return None
    module, attr = where
    try:
        return list(getattr(importlib.import_module(module), attr))
    except (ImportError, AttributeError):
        return None  # that stage is not installed yet: leave the check to the run


def grid_from_args(args: argparse.Namespace) -> dict[str, list[Any]]:
    """The sweep grid named by the flags; every value is checked, errors are one line."""
    grid: dict[str, list[Any]] = {}
    for name, parse, registry in AXES:
        text = getattr(args, name, None)
        if text is None:
            continue
        field = f"--{name}"
        values = [parse(field, item) for item in split_list(field, text)]
        known = _registry_names(registry)
        if known is not None:
            for v in values:
                is_file = name == "model" and (str(v).endswith(".json") or Path(str(v)).exists())
                if v not in known and not is_file:
                    raise ConfigError(field, v, f"unknown; use one of {', '.join(known)}")
        grid[name] = _unique(field, values)
    for item in args.sets:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(
                "--set", item, "use section.field=v1,v2, e.g. fabric.hop_latency_cycles=1,2"
            )
        values = []
        for raw in split_list(f"--set {key.strip()}", text):
            section, field_name, value = parse_set(f"{key.strip()}={raw}")
            build_spec(sets=[f"{section}.{field_name}={value}"])  # validates field and value
            values.append(parse_scalar(value))
        name = f"{section}.{field_name}"
        if name in grid:
            raise ConfigError("--set", item, f"{name} is given twice; list all its values once")
        grid[name] = _unique(f"--set {name}", values)
    if not grid:
        raise ConfigError("sweep", "no axes", "give at least one of --model, --mesh, --batch, ...")
    return grid


def resolve_point_fn(text: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Import ``MODULE:FUNCTION`` (a module-level function, so workers can import it too)."""
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError("--point-fn", text, "use MODULE:FUNCTION, e.g. mypkg.points:evaluate")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("--point-fn", text, f"cannot import {module_name} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError("--point-fn", text, f"{module_name} has no function {attr}")
    return fn


def _unique(field: str, values: list[Any]) -> list[Any]:
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(field, ",".join(map(str, values)), "lists a value twice")
    return values


def run(args: argparse.Namespace) -> int:
    from wse_sim.sweep.plot import choose_x
    from wse_sim.sweep.runner import run_sweep

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("--jobs", args.jobs, "must be a whole number >= 1")
    if args.scheduler is not None:
        if args.executor != "dask":
            raise ConfigError("--scheduler", args.scheduler, "only used with --executor dask")
        check_scheduler(args.scheduler)
    if not args.connect_timeout > 0:
        raise ConfigError("--connect-timeout", args.connect_timeout, "must be seconds > 0")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", str(out), "is a file; give a folder")
    grid = grid_from_args(args)
    point_fn = resolve_point_fn(args.point_fn) if args.point_fn else None
    if args.plot_x is not None:
        choose_x([dict.fromkeys(grid, 0)], args.plot_x)
    summary = run_sweep(
        grid,
        point_fn,
        cache_dir=out / "cache",
        out_csv=out / "sweep.csv",
        out_png=out / "sweep.png",
        executor=args.executor,
        scheduler=args.scheduler,
        jobs=args.jobs,
        plot_x=args.plot_x,
        connect_timeout_s=args.connect_timeout,
    )
    print(f"wrote {summary.csv_path} ({len(summary.rows)} points) and {summary.png_path}")
    if summary.failed:
        point, err = summary.errors[0]
        print(
            f"{summary.failed} points failed (not cached; see the error column), first: {point}: {err}",
            file=sys.stderr,
        )
    print(summary.line())
    return 1 if summary.failed else 0
