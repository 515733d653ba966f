"""``wse-sim compare``: one model step or one kernel on the wafer and on GPUs, side by side.

The logic lives in :mod:`wse_sim.baselines.compare` (plain rows); this module parses flags and
formats the rows as a table (and, with ``--json``, writes them as a JSON list).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wse_sim.cli.common import add_hardware_arguments, positive_int
from wse_sim.errors import ConfigError

NAME = "compare"
HELP = "cost one model step or one kernel on the wafer and on GPUs (A100, H100, H200) side by side"

KERNEL_SIZES: tuple[tuple[str, str], ...] = (
    ("m", "rows of the output (gemm, gemv)"),
    ("n", "columns of the output (gemm)"),
    ("k", "reduction length (gemm, gemv)"),
    ("heads", "query heads (attention)"),
    ("kv_heads", "key/value heads (attention; default heads)"),
    ("head_dim", "head dimension (attention)"),
    ("rows", "rows (layernorm, rmsnorm, softmax)"),
    ("cols", "columns (layernorm, rmsnorm, softmax)"),
    ("length", "vector length (elementwise)"),
)
"""Size flags only kernels take; ``--batch``, ``--seq`` and ``--context`` serve both."""

SHARED_SIZES = ("batch", "seq", "context")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to compare (one of)")
    pick = what.add_mutually_exclusive_group(required=True)
    pick.add_argument("--model", default=None, help="model preset name or config.json path")
    pick.add_argument(
        "--kernel", default=None, help="one kernel: gemm, gemv, attention (also norms, softmax)"
    )
    work = parser.add_argument_group("model step")
    work.add_argument(
        "--mode",
        default="prefill",
        choices=("prefill", "decode", "train"),
        help="prefill of the batch, one decode step, or one training step (default prefill)",
    )
    work.add_argument("--batch", type=positive_int, default=None, help="sequences (default 1)")
    work.add_argument("--seq", type=positive_int, default=None, help="tokens per sequence")
    work.add_argument(
        "--context", type=positive_int, default=None, help="tokens in the KV cache (decode)"
    )
    work.add_argument(
        "--dtype",
        default=None,
        choices=("fp16", "bf16", "fp32"),
        help="element type (default: the model's; kernels fp16)",
    )
    sizes = parser.add_argument_group("kernel sizes (with --kernel; also --batch --seq --context)")
    for name, doc in KERNEL_SIZES:
        sizes.add_argument(f"--{name.replace('_', '-')}", dest=name, type=positive_int, help=doc)
    opts = parser.add_argument_group("kernel options")
    opts.add_argument("--phase", default=None, help="prefill or decode (attention)")
    opts.add_argument(
        "--causal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="causal mask (attention; default: on for prefill)",
    )
    opts.add_argument("--op", default=None, help="elementwise operation (elementwise)")
    opts.add_argument(
        "--algorithm", default=None, help="wafer kernel algorithm (default: the kernel's choice)"
    )
    gpu = parser.add_argument_group("GPUs")
    gpu.add_argument(
        "--gpu",
        default="a100-80gb,h100,h200",
        metavar="NAMES",
        help="comma-separated GPU models (wse-sim presets gpus; default a100-80gb,h100,h200)",
    )
    gpu.add_argument(
        "--gpus", type=positive_int, default=1, metavar="N", help="GPUs per system, 1-8 (default 1)"
    )
    gpu.add_argument(
        "--parallel", default="tp", choices=("tp", "dp"), help="split over GPUs (default tp)"
    )
    gpu.add_argument(
        "--eager", action="store_true", help="eager launches (default: CUDA-graph launches)"
    )
    add_hardware_arguments(parser, default_preset="wse2")
    wafer = parser.add_argument_group("wafer run")
    wafer.add_argument(
        "--placement",
        default=None,
        help="placement name or file (default: auto on one wafer, stream on several)",
    )
    wafer.add_argument(
        "--engine",
        default="analytic",
        choices=("analytic", "des"),
        help="analytic: closed forms (default); des: discrete-event engine (small meshes)",
    )
    wafer.add_argument(
        "--wafers", type=positive_int, default=1, help="wafers (model step; default 1)"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="write the rows (JSON list)")


# -- building the rows ------------------------------------------------------------------------
def _wafer_options(args: argparse.Namespace) -> Any:
    from wse_sim.baselines.compare import WaferOptions

    return WaferOptions(
        preset=args.preset,
        mesh=args.mesh,
        hw=args.hw,
        sets=tuple(args.sets),
        placement=args.placement,
        engine=args.engine,
        wafers=args.wafers,
        algorithm=args.algorithm,
    )


def _gpu_options(args: argparse.Namespace) -> Any:
    from wse_sim.baselines.compare import GpuOptions, parse_gpus

    return GpuOptions(parse_gpus(args.gpu), args.gpus, args.parallel, args.eager)


def _kernel_rows(args: argparse.Namespace) -> list[Any]:
    from wse_sim.baselines.compare import compare_kernel

    names = [n for n, _ in KERNEL_SIZES] + list(SHARED_SIZES)
    sizes = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    options = {
        n: getattr(args, n) for n in ("phase", "causal", "op") if getattr(args, n) is not None
    }
    if args.placement is not None:
        raise ConfigError("--placement", args.placement, "only a --model step takes a placement")
    return compare_kernel(
        args.kernel,
        sizes,
        options,
        args.dtype or "fp16",
        _wafer_options(args),
        _gpu_options(args),
    )


def _model_rows(args: argparse.Namespace) -> list[Any]:
    from wse_sim.baselines.compare import compare_model

    for name, _ in KERNEL_SIZES:
        if getattr(args, name) is not None:
            flag = f"--{name.replace('_', '-')}"
            raise ConfigError(flag, getattr(args, name), "only a --kernel takes this size")
    for name in ("phase", "causal", "op", "algorithm"):
        if getattr(args, name) is not None:
            flag = f"--{name}"
            raise ConfigError(flag, getattr(args, name), "only a --kernel takes this option")
    return compare_model(
        args.model,
        args.mode,
        args.batch or 1,
        args.seq,
        args.context,
        args.dtype,
        _wafer_options(args),
        _gpu_options(args),
    )


# -- formatting -------------------------------------------------------------------------------
def _num(value: float | None, scale: float = 1.0, digits: int = 4) -> str:
    if value is None:
        return "-"
    v = value * scale
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.{digits}g}"


def _calib(row: Any) -> str:
    c = row.calibration
    if c is None:
        return "-" if row.kind == "gpu" else "(estimate)"
    return f"{100 * c.error:+.1f}%"


def headline(rows: list[Any]) -> str:
    """One line saying what was compared."""
    w = rows[0].config.get("workload", {}) if rows else {}
    if "kernel" in w:
        sizes = " ".join(f"{k}={v}" for k, v in w["sizes"].items())
        opts = " ".join(f"{k}={v}" for k, v in w.get("options", {}).items())
        return f"kernel {w['kernel']} {sizes} {opts} {w['dtype']}".replace("  ", " ")
    mode = w.get("mode")
    size = f"batch {w.get('batch')}"
    size += f", context {w.get('context')}" if mode == "decode" else f", seq {w.get('seq')}"
    step = {
        "prefill": "one prefill of the whole batch",
        "decode": "one decode step: one new token per sequence",
        "train": "one training step",
    }.get(str(mode), "one step")
    return f"{w.get('model')} {mode}, {size}, {w.get('dtype')} ({step})"


def table(rows: list[Any]) -> str:
    """The rows as an aligned text table, one line per system, then notes."""
    decode = bool(rows) and rows[0].work == "decode"
    kernel = bool(rows) and rows[0].work.startswith("kernel:")
    time_head = "ms/token" if decode else "ms/step"
    head = [
        "system",
        time_head,
        "tokens/s",
        "TFLOP/s",
        "% peak",
        "power kW",
        "energy J",
        "GPU model err",
    ]
    if kernel:
        head.remove("tokens/s")
    lines = [head]
    for r in rows:
        cells = [
            r.system,
            _num(r.seconds, 1e3),
            _num(r.tokens_per_s, digits=5),
            _num(r.tflops),
            _num(r.peak_fraction, 100.0, 3),
            _num(r.power_w, 1e-3, 3),
            _num(r.energy_j),
            _calib(r),
        ]
        if kernel:
            del cells[2]
        lines.append(cells)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = [headline(rows)]
    for line in lines:
        out.append(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(line, widths))
            ).rstrip()
        )
    notes = _notes(rows)
    if notes:
        out.append("notes:")
        out += [f"  {n}" for n in notes]
    return "\n".join(out)


def _notes(rows: list[Any]) -> list[str]:
    out = []
    for r in rows:
        if r.kind == "wafer":
            c = r.config
            where = f"placement {c.get('placement')}, " if c.get("placement") else ""
            algo = f"algorithm {c.get('algorithm')}, " if c.get("algorithm") else ""
            out.append(f"{r.system}: {where}{algo}engine {c.get('engine')} (a model estimate)")
        if not r.fits:
            out.append(f"{r.system}: does not fit: {r.error or 'memory'}")
        if r.calibration is not None:
            c = r.calibration
            out.append(
                f"{r.system}: GPU model error is the worst of {c.points} calibration points "
                f"({', '.join(c.groups)}; {', '.join(c.gpus)})"
            )
        out += [f"{r.system}: {n}" for n in r.notes]
    return out


def run(args: argparse.Namespace) -> int:
    rows = _kernel_rows(args) if args.kernel else _model_rows(args)
    print(table(rows))
    if args.json:
        from wse_sim.result.io import atomic_write_text

        text = json.dumps([r.to_dict() for r in rows], indent=2, default=_json_default)
        atomic_write_text(args.json, text + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _json_default(obj: Any) -> Any:
    from wse_sim.result.io import _json_default as default

    return default(obj)
