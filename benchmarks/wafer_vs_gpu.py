"""Wafer vs GPU: four models, prefill / decode / training, on WSE-2, WSE-3, A100, H100 and H200.

For every (model, mode) one layer graph is built (:func:`wse_sim.baselines.compare.model_graph`)
and costed on

* each wafer (the full WSE-2 and WSE-3 meshes, analytic engine) with every named placement; the
  fastest one that fits is kept and named in the ``placement`` column;
* each GPU (a100-80gb, h100, h200) alone, and on 8 GPUs with tensor parallelism where the
  weights and state do not fit one GPU's HBM.

Writes ``benchmarks/results/wafer_vs_gpu.csv`` and ``wafer_vs_gpu.png`` and regenerates the
tables of ``docs/results.md`` (between its ``BEGIN generated`` / ``END generated`` markers) from
the CSV, so every number in the doc is one the CSV holds.

    python benchmarks/wafer_vs_gpu.py              # run everything (about a minute)
    python benchmarks/wafer_vs_gpu.py --from-csv   # only redraw the plot and the doc
    python benchmarks/wafer_vs_gpu.py --quick      # GPT-2 small only (a smoke run)
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from wse_sim.baselines.compare import (
    CompareRow,
    GpuOptions,
    WaferOptions,
    gpu_model_row,
    model_graph,
    wafer_model_row,
)
from wse_sim.errors import WseSimError
from wse_sim.result.io import atomic_write, atomic_write_text
from wse_sim.spec.models import get_model

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CSV_PATH = RESULTS / "wafer_vs_gpu.csv"
PNG_PATH = RESULTS / "wafer_vs_gpu.png"
DOC_PATH = ROOT / "docs" / "results.md"

MODELS: tuple[str, ...] = ("gpt2-small", "cerebras-gpt-1.3b", "cerebras-gpt-13b", "llama3-8b")
MODES: tuple[str, ...] = ("prefill", "decode", "train")
WAFERS: tuple[str, ...] = ("wse2", "wse3")
GPUS: tuple[str, ...] = ("a100-80gb", "h100", "h200")
MULTI_GPUS = 8
"""GPUs (one NVLink node, tensor parallel) used when a model does not fit one GPU."""
ENGINE = "analytic"

SEQ = 2048
"""Tokens per sequence (prefill, train) and KV-cache length (decode), capped at the model's
``max_seq`` (GPT-2 small: 1024)."""
BATCH: dict[str, int] = {"prefill": 8, "decode": 8, "train": 8}
"""Sequences per step, by mode."""

COLUMNS: tuple[str, ...] = (
    "model",
    "mode",
    "batch",
    "seq",
    "context",
    "dtype",
    "system",
    "kind",
    "devices",
    "placement",
    "engine",
    "fits",
    "seconds",
    "tokens",
    "tokens_per_s",
    "flops",
    "tflops",
    "peak_fraction",
    "power_w",
    "energy_j",
    "gpu_model_error",
    "calibration_groups",
    "calibration_gpus",
    "note",
)

BEGIN = "<!-- BEGIN generated: wafer_vs_gpu -->"
END = "<!-- END generated: wafer_vs_gpu -->"


# -- running -------------------------------------------------------------------------------------
def placements() -> list[str]:
    """Named placements to try on each wafer (``auto`` only repeats ``whole``/``stream``)."""
    try:
        from wse_sim.placement.registry import PLACEMENTS
    except ImportError:
        return []
    return [name for name in PLACEMENTS if name != "auto"]


def best_wafer_row(graph: Any, model: str, preset: str) -> tuple[CompareRow, list[str]]:
    """The fastest fitting placement's row on ``preset`` (full mesh) for the work of ``graph``
    (fastest: the least time of one step of the batch), and what each placement gave."""
    opts = WaferOptions(preset=preset, engine=ENGINE)
    spec = opts.spec()
    g = graph.graph
    decode = g["mode"] == "decode"
    seq, context = (None, g["context"]) if decode else (g["seq"], None)
    tried: list[str] = []
    best: CompareRow | None = None
    for name in placements() or [None]:
        row, built = wafer_model_row(
            model, g["mode"], g["batch"], seq, context, g["dtype"], opts, name, spec
        )
        if built.graph["flops"] != g["flops"]:
            row.notes.append("the wafer's graph differs from the GPUs' (FLOPs)")
        if row.seconds is None:
            tried.append(f"{name}: does not fit")
            if best is None:
                best = row
                best.config["placement"] = None
            continue
        tried.append(f"{name} {row.seconds * 1e3:.4g} ms")
        if best is None or best.seconds is None or row.seconds < best.seconds:
            best = row
    assert best is not None
    return best, tried


def gpu_rows(graph: Any, gpu: str) -> list[CompareRow]:
    """``gpu`` alone, plus 8 of them (TP) when one does not hold the weights and state."""
    one = gpu_model_row(graph, gpu, GpuOptions((gpu,), 1, "tp"))
    if one.fits:
        return [one]
    return [one, gpu_model_row(graph, gpu, GpuOptions((gpu,), MULTI_GPUS, "tp"))]


def record(row: CompareRow, graph: Any, note: str = "") -> dict[str, Any]:
    """One CSV record of ``row``."""
    g = graph.graph
    c = row.calibration
    notes = [note] if note else []
    if row.error:
        notes.append(row.error)
    if row.kind == "gpu" and not row.fits:
        notes.append("weights and state exceed HBM")
    return {
        "model": g["model"],
        "mode": g["mode"],
        "batch": g["batch"],
        "seq": g["seq"],
        "context": g["context"],
        "dtype": g["dtype"],
        "system": row.system,
        "kind": row.kind,
        "devices": row.devices,
        "placement": row.config.get("placement") or "",
        "engine": row.config.get("engine") or "",
        "fits": row.fits,
        "seconds": row.seconds,
        "tokens": row.tokens,
        "tokens_per_s": row.tokens_per_s,
        "flops": row.flops,
        "tflops": row.tflops,
        "peak_fraction": row.peak_fraction,
        "power_w": row.power_w,
        "energy_j": row.energy_j,
        "gpu_model_error": c.error if c else None,
        "calibration_groups": "+".join(c.groups) if c else "",
        "calibration_gpus": "+".join(c.gpus) if c else "",
        "note": "; ".join(notes),
    }


def run_all(models: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every (model, mode) on every system; prints one line per system as it goes."""
    records = []
    for model in models:
        seq = min(SEQ, get_model(model).max_seq)
        for mode in MODES:
            if mode == "decode":
                graph = model_graph(model, mode, BATCH[mode], context=seq)
            else:
                graph = model_graph(model, mode, BATCH[mode], seq=seq)
            for preset in WAFERS:
                start = time.perf_counter()
                row, tried = best_wafer_row(graph, model, preset)
                records.append(record(row, graph, "tried " + ", ".join(tried)))
                _progress(records[-1], time.perf_counter() - start)
            for gpu in GPUS:
                for row in gpu_rows(graph, gpu):
                    records.append(record(row, graph))
                    _progress(records[-1], 0.0)
    return records


def _progress(rec: dict[str, Any], wall: float) -> None:
    sec = rec["seconds"]
    what = f"{sec * 1e3:10.4g} ms" if sec else "  does not fit"
    print(
        f"{rec['model']:>18} {rec['mode']:>7} {rec['system']:>18} {what} "
        f"{rec['placement'] or '':>9} ({wall:.1f} s)",
        file=sys.stderr,
    )


# -- CSV -----------------------------------------------------------------------------------------
def write_csv(records: list[dict[str, Any]], path: Path = CSV_PATH) -> Path:
    """Write the records atomically; empty cells for ``None``."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in COLUMNS})
    return atomic_write_text(path, buf.getvalue())


def read_csv(path: Path = CSV_PATH) -> list[dict[str, Any]]:
    """The records back, numbers as floats (``None`` for empty cells)."""
    numeric = {
        "batch",
        "seq",
        "context",
        "devices",
        "seconds",
        "tokens",
        "tokens_per_s",
        "flops",
        "tflops",
        "peak_fraction",
        "power_w",
        "energy_j",
        "gpu_model_error",
    }
    out = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            rec: dict[str, Any] = {}
            for k, v in raw.items():
                if k in numeric:
                    rec[k] = float(v) if v != "" else None
                elif k == "fits":
                    rec[k] = v == "True"
                else:
                    rec[k] = v
            out.append(rec)
    return out


# -- plot ----------------------------------------------------------------------------------------
def _slot(rec: dict[str, Any]) -> str:
    """The bar a record belongs to: the wafer system, or the GPU model (1 or 8 GPUs)."""
    if rec["kind"] == "wafer":
        return rec["system"]
    return re.sub(r"^\d+x (\S+) \w+$", r"\1", rec["system"])


def plot(records: list[dict[str, Any]], path: Path = PNG_PATH) -> Path:
    """Tokens per second, one panel per mode, a bar per system, grouped by model (log scale).

    GPU bars show the system that holds the model (hatched: 8 GPUs, TP); a wafer with no
    placement that fits gets an "x" at the foot of its slot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    slots = list(dict.fromkeys(_slot(r) for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    fig, axes = plt.subplots(1, len(MODES), figsize=(5.2 * len(MODES), 4.6), squeeze=False)
    width = 0.8 / max(1, len(slots))
    cmap = plt.get_cmap("tab10")
    for ax, mode in zip(axes[0], MODES):
        for j, slot in enumerate(slots):
            for i, model in enumerate(models):
                hit = [
                    r
                    for r in records
                    if r["mode"] == mode and r["model"] == model and _slot(r) == slot
                ]
                x = i + (j - (len(slots) - 1) / 2) * width
                ok = [r for r in hit if r["fits"] and r["tokens_per_s"]]
                if ok:
                    r = ok[-1]
                    hatch = "//" if r["devices"] and r["devices"] > 1 else None
                    ax.bar(x, r["tokens_per_s"], width, color=cmap(j % 10), hatch=hatch)
                elif hit:
                    ax.annotate(
                        "x",
                        (x, 0),
                        xycoords=("data", "axes fraction"),
                        ha="center",
                        va="bottom",
                        color=cmap(j % 10),
                        fontsize=9,
                    )
        ax.set_yscale("log")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{mode}: tokens per second (higher is better)", fontsize=9)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles = [Patch(color=cmap(j % 10), label=slot) for j, slot in enumerate(slots)]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="8 GPUs, TP"))
    axes[0][0].legend(handles=handles, fontsize=7, ncol=2)
    fig.text(
        0.5,
        0.01,
        "x: no placement fits on the wafer; analytic wafer model (an estimate)",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


# -- markdown ------------------------------------------------------------------------------------
def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = value * scale
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def _system_cell(r: dict[str, Any]) -> str:
    if r["kind"] == "wafer" and r["placement"]:
        return f"{r['system']} ({r['placement']})"
    return r["system"]


def _phrase(rows: list[dict[str, Any]], key: str) -> str:
    """The most common value of ``key`` over ``rows``, with the models that differ in brackets,
    e.g. ``2048 (gpt2-small: 1024)``."""
    by_model = {r["model"]: int(r[key]) for r in rows}
    values = list(by_model.values())
    common = max(set(values), key=values.count)
    odd = [f"{m}: {v}" for m, v in by_model.items() if v != common]
    return f"{common}" + (f" ({', '.join(odd)})" if odd else "")


def render_tables(records: list[dict[str, Any]]) -> str:
    """The markdown tables (one per mode) of ``records``: the generated block of results.md."""
    lines = [
        f"Generated by `python benchmarks/wafer_vs_gpu.py` from "
        f"`benchmarks/results/{CSV_PATH.name}`; do not edit by hand.",
        "",
    ]
    for mode in MODES:
        rows = [r for r in records if r["mode"] == mode]
        if not rows:
            continue
        batch = _phrase(rows, "batch")
        if mode == "decode":
            title = f"### decode: one step, one new token for each of {batch} sequences, "
            title += f"KV cache of {_phrase(rows, 'context')} tokens"
            time_head = "ms/token"
        else:
            step = "prefill of" if mode == "prefill" else "training step on"
            title = f"### {mode}: one {step} {batch} sequences of {_phrase(rows, 'seq')} tokens"
            time_head = "ms/step"
        lines += [
            title,
            "",
            f"| model | system | {time_head} | tokens/s | TFLOP/s | % of peak | energy J/step "
            "| GPU model error | note |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            err = r["gpu_model_error"]
            if r["kind"] == "wafer":
                err_cell = "estimate"
            elif err is None:
                err_cell = "-"
            else:
                err_cell = f"{100 * err:+.1f}% ({r['calibration_groups']})"
            note = ""
            if not r["fits"]:
                note = "no placement fits" if r["kind"] == "wafer" else "exceeds HBM"
            lines.append(
                f"| {r['model']} | {_system_cell(r)} | {_fmt(r['seconds'], 1e3)} "
                f"| {_fmt(r['tokens_per_s'])} | {_fmt(r['tflops'])} "
                f"| {_fmt(r['peak_fraction'], 100.0)} | {_fmt(r['energy_j'])} | {err_cell} "
                f"| {note} |"
            )
        lines.append("")
    lines += speedup_lines(records)
    return "\n".join(lines).rstrip() + "\n"


def speedup_lines(records: list[dict[str, Any]]) -> list[str]:
    """A table of wafer-over-best-GPU-system speed-ups (time ratio), per model and mode."""
    lines = [
        "### Speed-up of each wafer over the fastest GPU system that holds the model",
        "",
        "Ratio of step times (GPU / wafer; above 1 the wafer is faster). GPU systems are one GPU,",
        "or 8 GPUs (TP) where one does not hold the weights and state.",
        "",
        "| model | mode | fastest GPU system | " + " | ".join(WAFERS) + " |",
        "|---|---|---|" + "---:|" * len(WAFERS),
    ]
    keys = list(dict.fromkeys((r["model"], r["mode"]) for r in records))
    ratios: dict[str, list[float]] = {p: [] for p in WAFERS}
    missing: dict[str, list[str]] = {p: [] for p in WAFERS}
    for model, mode in keys:
        rows = [r for r in records if r["model"] == model and r["mode"] == mode]
        gpus = [r for r in rows if r["kind"] == "gpu" and r["fits"] and r["seconds"]]
        if not gpus:
            continue
        best = min(gpus, key=lambda r: r["seconds"])
        cells = []
        for preset in WAFERS:
            w = [r for r in rows if r["kind"] == "wafer" and r["system"].startswith(preset)]
            if w and w[0]["seconds"]:
                ratio = best["seconds"] / w[0]["seconds"]
                ratios[preset].append(ratio)
                cells.append(f"{ratio:.3g}x")
            else:
                missing[preset].append(f"{model} {mode}")
                cells.append("-")
        lines.append(f"| {model} | {mode} | {best['system']} | " + " | ".join(cells) + " |")
    lines.append("")
    for preset in WAFERS:
        r = ratios[preset]
        if not r and not missing[preset]:
            continue
        faster = sum(x > 1 for x in r)
        text = f"- {preset}: faster than the fastest GPU system in {faster} of {len(r)} cases"
        if r:
            text += f" (ratios {min(r):.3g}x to {max(r):.3g}x)"
        if missing[preset]:
            text += f"; no placement fits: {', '.join(missing[preset])}"
        lines.append(text + ".")
    lines.append("")
    return lines


def update_doc(records: list[dict[str, Any]], path: Path = DOC_PATH) -> Path:
    """Replace the generated block of ``path`` with :func:`render_tables` of ``records``."""
    text = path.read_text() if path.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    block = f"{BEGIN}\n{render_tables(records)}{END}"
    return atomic_write_text(path, pattern.sub(lambda _: block, text, count=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from-csv", action="store_true", help="reuse the CSV; redraw only")
    parser.add_argument("--quick", action="store_true", help="GPT-2 small only")
    parser.add_argument("--csv", type=Path, default=CSV_PATH, help="CSV path")
    parser.add_argument("--png", type=Path, default=PNG_PATH, help="plot path")
    parser.add_argument("--doc", type=Path, default=DOC_PATH, help="markdown to update")
    parser.add_argument("--no-doc", action="store_true", help="do not touch the markdown")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if not args.from_csv:
            records = run_all(MODELS[:1] if args.quick else MODELS)
            write_csv(records, args.csv)
            print(f"wrote {args.csv}", file=sys.stderr)
        records = read_csv(args.csv)
        plot(records, args.png)
        print(f"wrote {args.png}", file=sys.stderr)
        if not args.no_doc:
            update_doc(records, args.doc)
            print(f"wrote {args.doc}", file=sys.stderr)
    except WseSimError as exc:
        print(f"wafer_vs_gpu: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
