"""``wse-sim heatmap RESULT.json``: redraw a saved run's heatmaps (PNG or SVG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wse_sim.report.heatmap import KINDS, MAX_CELLS, METHODS, heatmap_from_result
from wse_sim.report.loading import load_run_result

NAME = "heatmap"
HELP = "draw per-PE compute, SRAM and link-load heatmaps of a saved result (.png or .svg)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", metavar="RESULT.json", help="a result saved by `wse-sim run`")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="PATH",
        help="picture to write, .png or .svg (default: RESULT.heatmap.png, or RESULT.KIND.png)",
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="all",
        help="compute utilization, SRAM peak, link load, or all three panels (default)",
    )
    parser.add_argument(
        "--per-direction",
        action="store_true",
        help="with --kind links: one panel per direction (E, W, N, S) instead of the busiest",
    )
    parser.add_argument(
        "--max-cells",
        type=int,
        default=MAX_CELLS,
        metavar="N",
        help=f"downsample larger meshes to at most N cells per side (default {MAX_CELLS})",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="max",
        help="block reduction used when downsampling (default max)",
    )


def default_output(result_path: str | Path, kind: str) -> Path:
    """``run.json`` -> ``run.heatmap.png`` (kind all) or ``run.compute.png``."""
    p = Path(result_path)
    tag = "heatmap" if kind == "all" else kind
    return p.with_name(f"{p.stem}.{tag}.png")


def run(args: argparse.Namespace) -> int:
    from wse_sim.errors import ConfigError

    if args.max_cells < 1:
        raise ConfigError("--max-cells", args.max_cells, "must be at least 1")
    out = Path(args.output) if args.output else default_output(args.result, args.kind)
    if out.suffix.lower() not in (".png", ".svg"):
        raise ConfigError("--output", str(out), "use a file name ending in .png or .svg")
    if args.per_direction and args.kind != "links":
        raise ConfigError("--per-direction", True, "only applies to --kind links")
    result = load_run_result(args.result)
    try:
        written = heatmap_from_result(
            result,
            out,
            kind=args.kind,
            max_cells=args.max_cells,
            method=args.method,
            per_direction=args.per_direction,
        )
    except OSError as exc:
        raise ConfigError("--output", str(out), f"cannot be written ({exc.strerror})") from None
    print(f"wrote {written}")
    return 0
