"""``wse-sim trace RESULT.json -o trace.json``: a Perfetto / Chrome timeline of a saved run."""

from __future__ import annotations

import argparse
from pathlib import Path

from wse_sim.errors import ConfigError
from wse_sim.report.loading import load_run_result
from wse_sim.report.trace import (
    DEFAULT_MAX_PE_TRACKS,
    load_spans,
    spans_path_for,
    write_trace,
)

NAME = "trace"
HELP = "write a Perfetto/Chrome trace (JSON) of a saved result's ops and, if saved, PE spans"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", metavar="RESULT.json", help="a result saved by `wse-sim run`")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="PATH",
        help="trace file to write (default: RESULT.trace.json); open in ui.perfetto.dev",
    )
    parser.add_argument(
        "--spans",
        default=None,
        metavar="FILE",
        help="per-PE spans of a DES run (default: RESULT.spans.json when it exists)",
    )
    parser.add_argument(
        "--clock-hz",
        type=float,
        default=None,
        metavar="HZ",
        help="PE clock for cycles -> microseconds (default: the result's cycles / seconds)",
    )
    parser.add_argument(
        "--max-pe-tracks",
        type=int,
        default=DEFAULT_MAX_PE_TRACKS,
        metavar="N",
        help=f"keep spans of at most N PEs (default {DEFAULT_MAX_PE_TRACKS})",
    )


def run(args: argparse.Namespace) -> int:
    if args.max_pe_tracks < 0:
        raise ConfigError("--max-pe-tracks", args.max_pe_tracks, "must be 0 or more")
    result_path = Path(args.result)
    out = (
        Path(args.output)
        if args.output
        else result_path.with_name(f"{result_path.stem}.trace.json")
    )
    if out.suffix.lower() != ".json":
        raise ConfigError("--output", str(out), "use a file name ending in .json")
    result = load_run_result(result_path)
    spans = None
    if args.spans is not None:
        spans = load_spans(args.spans)
    elif spans_path_for(result_path).is_file():
        spans = load_spans(spans_path_for(result_path))
    if not result.per_op and not spans:
        raise ConfigError(
            "RESULT", str(result_path), "has no per_op entries and no spans file; nothing to trace"
        )
    try:
        write_trace(out, result, spans, clock_hz=args.clock_hz, max_pe_tracks=args.max_pe_tracks)
    except OSError as exc:
        raise ConfigError("--output", str(out), f"cannot be written ({exc.strerror})") from None
    n_ops = len(result.per_op)
    n_spans = len(spans) if spans else 0
    print(f"wrote {out} ({n_ops} ops, {n_spans} spans)")
    return 0
