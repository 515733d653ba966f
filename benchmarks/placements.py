"""Compare the three placements (whole, pipeline, stream) over models and mesh sizes.

Every point is one ``wse_sim.run`` on the ``analytic`` engine: a prefill of ``PREFILL_SEQ``
tokens and a decode step at ``DECODE_CONTEXT`` keys of context, batch 1, for each model, mesh and
placement. A placement that does not fit is recorded with its one-line reason. Writes
``benchmarks/results/placements.csv`` and ``placements.png`` (tokens per second, log scale).

    python benchmarks/placements.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

import wse_sim
from wse_sim.errors import WseSimError
from wse_sim.hardware import get_preset
from wse_sim.spec import get_model

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = (
    "gpt2-small",
    "gpt2-xl",
    "cerebras-gpt-1.3b",
    "cerebras-gpt-6.7b",
    "llama3-8b",
    "cerebras-gpt-13b",
)
MESHES = (("demo", None), ("wse2", "256x256"), ("wse2", None))
PLACEMENTS = ("whole", "pipeline", "stream")
PREFILL_SEQ = 512
DECODE_CONTEXT = 2048
FIELDS = (
    "model", "mode", "mesh", "placement", "status", "cycles", "seconds", "tokens_per_s",
    "tflops", "peak_fraction", "latency_cycles", "micro_batches", "bottleneck", "reason",
    "wall_seconds",
)  # fmt: skip


def point(model: str, mode: str, preset: str, mesh: str | None, placement: str) -> dict:
    """One run; ``status`` is ``ok`` or ``does not fit`` (``reason`` the one-line error)."""
    max_seq = get_model(model).max_seq
    if mode == "prefill":
        kw = {"seq": min(PREFILL_SEQ, max_seq)}
    else:
        kw = {"context": min(DECODE_CONTEXT, max_seq)}
    t = time.perf_counter()
    row = {"model": model, "mode": mode, "placement": placement}
    try:
        r = wse_sim.run(model=model, mode=mode, preset=preset, mesh=mesh, placement=placement, **kw)
    except WseSimError as exc:
        spec_mesh = mesh or {"demo": "64x64", "wse2": "750x994"}[preset]
        row.update(mesh=spec_mesh, status="does not fit", reason=str(exc))
    else:
        row.update(
            mesh=f"{r.mesh['width']}x{r.mesh['height']}",
            status="ok",
            cycles=r.cycles,
            seconds=r.seconds,
            tokens_per_s=r.tokens_per_s,
            tflops=r.tflops,
            peak_fraction=r.peak_fraction,
            latency_cycles=r.latency_cycles,
            micro_batches=r.micro_batches,
            bottleneck=r.bottleneck or "",
        )
    row["wall_seconds"] = round(time.perf_counter() - t, 3)
    return row


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    modes = ("prefill", "decode")
    fig = Figure(figsize=(14, 9))
    FigureCanvasAgg(fig)
    colors = {"whole": "#1f77b4", "pipeline": "#ff7f0e", "stream": "#2ca02c"}
    for i, mode in enumerate(modes):
        ax = fig.add_subplot(len(modes), 1, i + 1)
        cases = []
        for row in rows:
            key = (row["model"], row["mesh"])
            if row["mode"] == mode and key not in cases:
                cases.append(key)
        x = np.arange(len(cases))
        width = 0.27
        for j, pl in enumerate(PLACEMENTS):
            vals = []
            for case in cases:
                hit = [r for r in rows if r["mode"] == mode and (r["model"], r["mesh"]) == case
                       and r["placement"] == pl and r["status"] == "ok"]  # fmt: skip
                vals.append(hit[0]["tokens_per_s"] if hit else np.nan)
            ax.bar(x + (j - 1) * width, vals, width, label=pl, color=colors[pl])
        ax.set_yscale("log")
        ax.set_xticks(x)
        labels = [f"{m.replace('cerebras-gpt', 'c-gpt')}\n{mesh}" for m, mesh in cases]
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        what = (
            f"prefill seq {PREFILL_SEQ}"
            if mode == "prefill"
            else f"decode context {DECODE_CONTEXT}"
        )
        ax.set_title(f"{what}, batch 1: tokens/s (missing bar: does not fit)")
        ax.set_ylabel("tokens / s")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two models, two meshes")
    parser.add_argument(
        "--from-csv", action="store_true", help="only rewrite the docs table from the saved CSV"
    )
    args = parser.parse_args(argv)
    if args.from_csv:
        with open(RESULTS / "placements.csv", newline="") as fh:
            saved = [
                {k: (float(v) if k in ("tokens_per_s", "latency_cycles") and v else v)
                 for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]  # fmt: skip
        update_doc(saved, DOC)
        return 0
    models = MODELS[:2] if args.quick else MODELS
    meshes = MESHES[:2] if args.quick else MESHES
    rows = []
    for model in models:
        for preset, mesh in meshes:
            for mode in ("prefill", "decode"):
                for pl in PLACEMENTS:
                    row = point(model, mode, preset, mesh, pl)
                    rows.append(row)
                    tps = row.get("tokens_per_s")
                    shown = f"{tps:12.1f} tok/s" if tps else row["status"]
                    print(f"{model:18s} {row['mesh']:>8s} {mode:8s} {pl:9s} {shown}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "placements.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})
    plot(rows, RESULTS / "placements.png")
    print(f"wrote {RESULTS / 'placements.csv'} and {RESULTS / 'placements.png'}", file=sys.stderr)
    if not args.quick:
        update_doc(rows, DOC)
        print(f"updated the table in {DOC}", file=sys.stderr)
    return 0


DOC = Path(__file__).resolve().parent.parent / "docs" / "placement.md"
BEGIN, END = "<!-- BEGIN placements table -->", "<!-- END placements table -->"


def table(rows: list[dict]) -> str:
    """Markdown: tokens/s per placement for every (model, mesh, mode) where one fits."""
    clock = {preset: get_preset(preset).pe.clock_hz for preset in {"demo", "wse2"}}
    cases: dict[tuple[str, str, str], dict[str, dict]] = {}
    for row in rows:
        cases.setdefault((row["model"], row["mesh"], row["mode"]), {})[row["placement"]] = row
    lines = [
        "| model | mesh | mode | whole | pipeline | pipeline latency | stream |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, mesh, mode), by in cases.items():
        if not any(r.get("tokens_per_s") for r in by.values()):
            continue

        def tps(name: str, by: dict[str, dict] = by) -> str:
            r = by.get(name, {})
            return f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "no fit"

        pipe = by.get("pipeline", {})
        latency = "-"
        if pipe.get("latency_cycles"):
            hz = clock["wse2"] if mesh == "750x994" else clock["demo"]
            latency = f"{pipe['latency_cycles'] / hz * 1e3:.3g} ms"
        lines.append(
            f"| {model} | {mesh} | {mode} | {tps('whole')} | {tps('pipeline')} | {latency} | "
            f"{tps('stream')} |"
        )
    return "\n".join(lines)


def update_doc(rows: list[dict], doc: Path) -> None:
    """Replace the table between the markers of docs/placement.md with this run's numbers."""
    text = doc.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    doc.write_text(text[:start] + "\n" + table(rows) + "\n" + text[end:])


if __name__ == "__main__":
    sys.exit(main())
