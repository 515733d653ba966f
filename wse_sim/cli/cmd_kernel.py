"""``wse-sim kernel``: run one kernel of the library on the DES or on its closed form."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wse_sim.cli.common import add_hardware_arguments, positive_int, spec_from_args
from wse_sim.errors import ConfigError

NAME = "kernel"
HELP = "run one kernel (gemm, gemv, attention, ...) and print cycles, FLOP/s and utilization"

SIZES: tuple[tuple[str, str], ...] = (
    ("m", "rows of the output (gemm, gemv)"),
    ("n", "columns of the output (gemm)"),
    ("k", "reduction length (gemm, gemv)"),
    ("length", "vector length (collectives, elementwise)"),
    ("rows", "rows (softmax, layernorm, rmsnorm)"),
    ("cols", "columns (softmax, layernorm, rmsnorm)"),
    ("batch", "batch size (attention)"),
    ("heads", "query heads (attention)"),
    ("kv_heads", "key/value heads (attention)"),
    ("seq", "query tokens (attention)"),
    ("head_dim", "head dimension (attention)"),
    ("context", "tokens already in the KV cache (attention decode)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kernel", metavar="KERNEL", help="kernel name (wse-sim presets kernels)")
    parser.add_argument("--algorithm", default=None, help="algorithm (default: the kernel's first)")
    sizes = parser.add_argument_group("sizes (the kernel says which it needs)")
    for name, doc in SIZES:
        sizes.add_argument(f"--{name.replace('_', '-')}", dest=name, type=positive_int, help=doc)
    opts = parser.add_argument_group("kernel options")
    opts.add_argument("--op", default=None, help="elementwise operation (elementwise)")
    opts.add_argument(
        "--causal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="causal mask (attention)",
    )
    opts.add_argument("--phase", default=None, help="prefill or decode (attention)")
    opts.add_argument(
        "--k-ary", dest="k_ary", type=positive_int, default=None, help="tree arity (gemv tree)"
    )
    opts.add_argument(
        "--opt",
        dest="opts",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other kernel option, e.g. skew=false (gemm cannon/meshgemm); repeatable",
    )
    add_hardware_arguments(parser, default_preset="small")
    run = parser.add_argument_group("run")
    run.add_argument("--dtype", default="fp16", choices=("fp16", "fp32"), help="element type")
    run.add_argument(
        "--engine",
        default="des",
        choices=("des", "analytic"),
        help="des: discrete-event engine; analytic: the closed form (default des)",
    )
    run.add_argument(
        "--region",
        default=None,
        metavar="WxH[+X+Y]",
        help="rectangle of PEs to run on (default: the whole mesh)",
    )
    run.add_argument("--check", action="store_true", help="also run on real data and compare")
    run.add_argument("--seed", type=int, default=0, help="random seed of --check inputs")
    run.add_argument("--json", default=None, metavar="PATH", help="write the result (+ .npz)")
    run.add_argument(
        "--heatmap",
        default=None,
        metavar="PATH",
        help="draw compute utilization, SRAM and link load of the region (.png / .svg)",
    )
    run.add_argument(
        "--trace",
        default=None,
        metavar="PATH",
        help="write a Perfetto trace (.json) with per-PE compute/send/receive spans (des)",
    )


def parse_region(text: str) -> tuple[int, int, int, int]:
    """``WxH`` or ``WxH+X+Y`` into ``(x, y, width, height)``."""
    size, _, offset = text.partition("+")
    try:
        w, h = (int(v) for v in size.lower().split("x"))
        x, y = (int(v) for v in offset.split("+")) if offset else (0, 0)
    except ValueError:
        raise ConfigError("--region", text, "use WxH or WxH+X+Y, e.g. 8x8+4+4") from None
    if w < 1 or h < 1 or x < 0 or y < 0:
        raise ConfigError("--region", text, "sizes must be >= 1 and offsets >= 0")
    return x, y, w, h


def parse_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("op", "causal", "phase", "k_ary"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    for item in args.opts:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--opt", item, "use KEY=VALUE, e.g. skew=false")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _flops(value: float) -> str:
    for scale, unit in ((1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP/s"


def summary(result: Any) -> str:
    """The lines ``wse-sim kernel`` prints."""
    u = result.utilization
    sizes = " ".join(f"{k}={v}" for k, v in result.sizes.items())
    x, y, w, h = result.region
    where = f"{w}x{h} PEs" + (f" at ({x}, {y})" if (x, y) != (0, 0) else "")
    check = result.check
    if result.check_error is not None:
        check += f" (largest error {result.check_error:.2g} of max |reference|)"
    rows = [
        ("cycles", f"{result.cycles:,.0f}"),
        ("seconds", f"{result.seconds:.4g}"),
        ("achieved", _flops(result.achieved_flops_per_s)),
        ("fraction of peak", _pct(result.peak_fraction)),
        ("compute util", f"mean {_pct(u['compute_mean'])}, max {_pct(u['compute_max'])}"),
        ("link util", f"mean {_pct(u['link_mean'])}, max {_pct(u['link_max'])}"),
        ("SRAM peak", f"{_pct(u['sram_peak_fraction'])} of data SRAM per PE"),
        ("check", check),
    ]
    if result.engine == "des" and result.estimate_cycles:
        ratio = result.estimate_cycles / result.cycles if result.cycles else float("nan")
        rows.insert(1, ("closed form", f"{result.estimate_cycles:,.0f} ({ratio:.3f} x des)"))
    head = (
        f"{result.kernel}/{result.algorithm} {sizes} {result.dtype} on {where} of "
        f"{result.preset or 'the mesh'}, engine {result.engine}"
    )
    return "\n".join([head] + [f"  {k:<17} {v}" for k, v in rows])


def run(args: argparse.Namespace) -> int:
    from wse_sim.kernels.runner import run_kernel

    spec = spec_from_args(args)
    sizes = {name: getattr(args, name) for name, _ in SIZES if getattr(args, name) is not None}
    region = parse_region(args.region) if args.region else None
    result = run_kernel(
        args.kernel,
        spec,
        sizes,
        algorithm=args.algorithm,
        dtype=args.dtype,
        engine=args.engine,
        check=args.check,
        region=region,
        seed=args.seed,
        record_spans=bool(args.trace) and args.engine == "des",
        **parse_options(args),
    )
    print(summary(result))
    if args.json:
        path = result.save(args.json)
        print(f"wrote {path}", file=sys.stderr)
    if args.heatmap:
        from wse_sim.report.heatmap import heatmap_from_result

        path = heatmap_from_result(result, args.heatmap, spec=spec)
        print(f"wrote {path}", file=sys.stderr)
    if args.trace:
        from wse_sim.report.trace import write_trace

        path = write_trace(args.trace, result, result.spans, clock_hz=spec.pe.clock_hz)
        print(f"wrote {path}", file=sys.stderr)
    return 0 if result.check != "failed" else 1
