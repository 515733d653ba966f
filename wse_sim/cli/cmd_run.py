"""``wse-sim run``: simulate a model (prefill, a decode step or a training step) on a wafer."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wse_sim.cli.common import add_hardware_arguments, spec_from_args
from wse_sim.errors import ConfigError

NAME = "run"
HELP = "simulate a Transformer model on a wafer: cycles, tokens/s, utilization, per-op table"

DEFAULT_MODEL = "gpt2-small"
DEFAULT_PRESET = "demo"
DEFAULT_SEQ = 128


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a whole number >= 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wse_sim.engine.registry import ENGINES
    from wse_sim.placement.base import ACTIVATION_POLICIES
    from wse_sim.placement.registry import DEFAULT_PLACEMENT, PLACEMENTS

    w = parser.add_argument_group("workload")
    w.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model preset (wse-sim presets models) or a config.json (default {DEFAULT_MODEL})",
    )
    w.add_argument("--mode", default="prefill", choices=("prefill", "decode", "train"))
    w.add_argument("--batch", type=_positive, default=1, help="sequences per step (default 1)")
    w.add_argument(
        "--seq",
        type=_positive,
        default=None,
        help=f"tokens per sequence (default {DEFAULT_SEQ}; decode: the default --context)",
    )
    w.add_argument(
        "--context", type=_positive, default=None, help="decode: keys each new token attends to"
    )
    w.add_argument(
        "--dtype", default=None, choices=("fp16", "bf16", "fp32"), help="default: the model's"
    )
    add_hardware_arguments(parser, default_preset=DEFAULT_PRESET)
    c = parser.add_argument_group("compiler")
    c.add_argument(
        "--placement",
        default=DEFAULT_PLACEMENT,
        metavar="NAME|FILE",
        help=f"{', '.join(PLACEMENTS)} or a .toml / .json placement file (default "
        f"{DEFAULT_PLACEMENT}: whole if the weights fit, else stream; pipeline only on request)",
    )
    c.add_argument(
        "--activations",
        default="auto",
        choices=("auto", *ACTIVATION_POLICIES),
        help="training with weight streaming: keep the saved activations on the wafer, "
        "recompute each layer's forward before its backward, or auto (default: the faster "
        "that fits)",
    )
    c.add_argument(
        "--gemm",
        default="auto",
        help="gemm algorithm: auto (fewest closed-form cycles), summa, cannon, meshgemm, "
        "systolic-os",
    )
    c.add_argument(
        "--engine",
        default="analytic",
        choices=tuple(ENGINES),
        help="analytic: closed forms (any size, instant); des: discrete-event (small meshes)",
    )
    c.add_argument(
        "--wafers", type=_positive, default=1, help="data-parallel wafers (stream placement)"
    )
    o = parser.add_argument_group("output")
    o.add_argument("--ops", action="store_true", help="also print the per-op table")
    o.add_argument("--json", default=None, metavar="PATH", help="save the result (JSON + .npz)")
    o.add_argument("--heatmap", default=None, metavar="PATH", help="draw heatmaps (.png / .svg)")
    o.add_argument("--trace", default=None, metavar="PATH", help="write a Perfetto trace (.json)")


def _fmt(value: float, unit: str = "") -> str:
    if value == 0:
        return f"0{unit}"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def summary_lines(r: Any) -> list[str]:
    """The summary table of a RunResult, one ``label  value`` line each."""
    u = r.utilization
    mesh = f"{r.mesh['width']}x{r.mesh['height']}"
    place = r.placement
    if r.inputs.get("placement") == "auto":
        place += " (chosen by auto)"
    used = r.inputs.get("activations_used")
    if r.mode == "train" and r.placement == "stream" and used:
        place += f", activations {'kept' if used == 'keep' else 'recomputed'}"
    rows = [
        ("model", f"{r.model} {r.mode} batch {r.batch} seq {r.seq} context {r.context} {r.dtype}"),
        ("hardware", f"{r.preset} mesh {mesh}" + (f" x {r.wafers} wafers" if r.wafers > 1 else "")),
        ("placement / engine", f"{place} / {r.engine}"),
        (
            "cycles",
            f"{r.cycles:,.0f}" + (" per batch (steady state)" if r.placement == "pipeline" else ""),
        ),
        ("time", f"{r.seconds * 1e3:.4g} ms"),
        ("tokens/s", f"{r.tokens_per_s:,.1f}"),
        ("FLOPs", _fmt(r.flops)),
        ("achieved", f"{r.tflops:.4g} TFLOP/s ({r.peak_fraction * 100:.2f} % of peak)"),
        (
            "compute util.",
            f"mean {u['compute_mean'] * 100:.2f} %, max {u['compute_max'] * 100:.2f} %",
        ),
        ("link util.", f"mean {u['link_mean'] * 100:.2f} %, max {u['link_max'] * 100:.2f} %"),
        ("SRAM peak", f"{u['sram_peak_fraction'] * 100:.1f} % of a PE's data SRAM"),
    ]
    if r.latency_cycles and abs(r.latency_cycles - r.cycles) > 0.5:
        rows.append(("latency", f"{r.latency_cycles:,.0f} cycles for one batch"))
    if r.micro_batches > 1:
        rows.append(("micro-batches", str(r.micro_batches)))
    if r.bottleneck:
        rows.append(("bottleneck", r.bottleneck))
    width = max(len(k) for k, _ in rows)
    out = [f"{k:<{width}}  {v}" for k, v in rows]
    out += [f"note: {n}" for n in r.notes]
    return out


def op_lines(r: Any) -> list[str]:
    """The per-op table."""
    head = f"{'op':32s} {'kernel':11s} {'algorithm':11s} {'region':>19s} {'cycles':>12s} {'start':>12s} {'FLOPs':>10s} calls"
    out = [head, "-" * len(head)]
    for op in r.per_op:
        x, y, w, h = op.region
        reg = f"{w}x{h}+{x}+{y}"
        out.append(
            f"{op.name[:32]:32s} {op.kernel[:11]:11s} {op.algorithm[:11]:11s} {reg:>19s} "
            f"{op.cycles:12,.0f} {op.start_cycle:12,.0f} {_fmt(op.flops):>10s} {op.calls:g}"
        )
    return out


def run(args: argparse.Namespace) -> int:
    from wse_sim.api import simulate_model

    spec = spec_from_args(args)
    seq = args.seq
    if seq is None and not (args.mode == "decode" and args.context is not None):
        seq = DEFAULT_SEQ
    record = bool(args.trace) and args.engine == "des"
    out = simulate_model(
        model=args.model,
        mode=args.mode,
        batch=args.batch,
        seq=seq,
        context=args.context,
        placement=args.placement,
        engine=args.engine,
        gemm=args.gemm,
        wafers=args.wafers,
        dtype=args.dtype,
        activations=args.activations,
        progress=args.engine == "des",
        record_spans=record,
        spec=spec,
    )
    result = out.result
    result.inputs.update(
        preset=args.preset, mesh=args.mesh, hw=args.hw, sets=list(args.sets), seq=seq
    )
    print("\n".join(summary_lines(result)))
    if args.ops:
        print()
        print("\n".join(op_lines(result)))
    if args.json:
        path = result.save(args.json)
        print(f"wrote {path}", file=sys.stderr)
        if out.spans:
            from wse_sim.report.trace import save_spans, spans_path_for

            print(f"wrote {save_spans(spans_path_for(path), out.spans)}", file=sys.stderr)
    if args.heatmap:
        from wse_sim.report.heatmap import heatmap_from_result

        print(f"wrote {heatmap_from_result(result, args.heatmap)}", file=sys.stderr)
    if args.trace:
        from wse_sim.report.trace import write_trace

        path = write_trace(args.trace, result, out.spans, spec.pe.clock_hz)
        print(f"wrote {path}", file=sys.stderr)
    return 0


__all__ = ["NAME", "HELP", "add_arguments", "run", "ConfigError"]
