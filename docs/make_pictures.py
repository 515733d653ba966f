"""Draw the pictures of README.md and docs/tutorial.md into docs/img/ (well under 2 minutes).

    python docs/make_pictures.py              # every picture
    python docs/make_pictures.py --only sweep # one of: heatmap, kernel, sweep

Every picture comes from a real run through the public API, drawn by the same functions the
commands use, so the pictures show exactly what a user gets:

* ``heatmap.png``: GPT-2 small, prefill of one 128-token sequence on the demo preset's PEs
  (128x128 mesh) with the pipeline placement, timed by the discrete-event engine; compute
  utilization, SRAM peak and link load per PE, exactly as ``wse-sim heatmap`` draws them.
  ``heatmap-small.png`` is the same three panels laid out to be read at page width (README).
  The pipeline's stages show as vertical strips.
* ``kernel-links.png``: the load on the links leaving each router, one panel per direction, of
  one SUMMA GEMM on the 16x16 ``small`` mesh (DES), what ``wse-sim heatmap --kind links
  --per-direction`` draws.
* ``sweep.png``: tokens/s and fraction of peak of GPT-2 small prefill over mesh sizes and
  placements, analytic engine (``wse_sim.sweep.api.sweep``; the sweep's own plot, two panels).

The sweep's cache lives in a temporary folder, so every picture is recomputed each time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

IMG = Path(__file__).resolve().parent / "img"

HEATMAP_RUN = {
    "model": "gpt2-small",
    "mode": "prefill",
    "batch": 1,
    "seq": 128,
    "preset": "demo",
    "mesh": "128x128",
    "placement": "pipeline",
    "engine": "des",
}
"""The run drawn in heatmap.png (keyword arguments of ``wse_sim.api.run``). GPT-2 small's
weights (124 M parameters, 248 MB in fp16) need at least 128x128 PEs of the demo preset's PE to
be pipelined (a 64x64 mesh only runs it with weight streaming)."""

KERNEL_RUN = {"kernel": "gemm", "sizes": {"m": 256, "n": 256, "k": 256}, "preset": "small"}
"""The kernel drawn in kernel-links.png: a 256^3 GEMM on the 16x16 ``small`` mesh (DES)."""

SWEEP_GRID = {
    "model": ["gpt2-small"],
    "mode": ["prefill"],
    "batch": [1],
    "seq": [128],
    "placement": ["whole", "pipeline", "stream"],
    "mesh": ["32x32", "48x48", "64x64", "96x96", "128x128", "192x192", "256x256"],
}
"""The grid of sweep.png: 3 placements x 7 mesh sizes, analytic engine. Points that do not fit
(``whole`` below 96x96, ``pipeline`` below 128x128) are rows with an error and no marker."""

SWEEP_METRICS = ("tokens_per_s", "peak_fraction")
"""The panels of sweep.png."""

COMPACT_PANEL_IN = (3.4, 3.3)
"""Size of one panel of the README heatmap (inches): small enough that its text stays readable
when the page shows the picture about 900 pixels wide."""
COMPACT_DPI = 150


def make_heatmap(out: Path) -> list[Path]:
    """heatmap.png (what ``wse-sim heatmap`` draws) and heatmap-small.png (the same panels
    laid out for a page) of :data:`HEATMAP_RUN`."""
    from wse_sim.api import run
    from wse_sim.report.heatmap import heatmap_from_result

    result = run(**HEATMAP_RUN)
    u = result.utilization
    print(
        f"  {result.model} {result.mode} on {result.mesh['width']}x{result.mesh['height']}, "
        f"{result.placement}, {result.engine}: {result.cycles:,.0f} cycles, "
        f"{result.tokens_per_s:,.0f} tokens/s, {100 * result.peak_fraction:.1f}% of peak, "
        f"compute {100 * u.get('compute_mean', 0.0):.1f}% mean, bottleneck {result.bottleneck}"
    )
    full = heatmap_from_result(result, out / "heatmap.png", kind="all")
    title = (
        f"GPT-2 small prefill, {result.seq} tokens: {result.placement} placement on "
        f"{result.mesh['width']}x{result.mesh['height']} PEs ({result.engine})"
    )
    return [full, draw_compact(result, out / "heatmap-small.png", title)]


def draw_compact(result: object, path: Path, title: str) -> Path:
    """The panels of ``wse-sim heatmap`` (same arrays, colour maps and scales) in a figure of
    :data:`COMPACT_PANEL_IN` per panel, for a README."""
    import io

    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from wse_sim.report.heatmap import downsample, result_panels
    from wse_sim.result.io import atomic_write

    panels = result_panels(result, "all")
    w_in, h_in = COMPACT_PANEL_IN
    fig = Figure(figsize=(w_in * len(panels), h_in), dpi=COMPACT_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=11.5)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        values = panel.values
        finite = values[np.isfinite(values)]
        vmax = panel.vmax if panel.vmax is not None else float(finite.max())
        vmin = panel.vmin if panel.vmin is not None else float(finite.min())
        h, w = values.shape
        image = ax.imshow(
            np.ma.masked_invalid(downsample(values).values),
            cmap=matplotlib.colormaps[panel.cmap],
            vmin=vmin,
            vmax=max(vmax, vmin + 1e-12),
            interpolation="nearest",
            extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        )
        name = panel.name.split(" (")[0]
        ax.set_title(f"{name}\nmean {finite.mean():.2g}, max {finite.max():.2g}", fontsize=10)
        ax.set_xlabel("x (PE column)", fontsize=9)
        ax.set_ylabel("y (PE row)", fontsize=9)
        ax.tick_params(labelsize=8)
        _mark_stages(ax, result, h)
        bar = fig.colorbar(image, ax=ax, shrink=0.9)
        bar.set_label(panel.units, fontsize=9)
        bar.ax.tick_params(labelsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=COMPACT_DPI)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def make_kernel(out: Path) -> list[Path]:
    """kernel-links.png: per-direction link load of :data:`KERNEL_RUN`."""
    from wse_sim.hardware.presets import get_preset
    from wse_sim.kernels.runner import run_kernel
    from wse_sim.report.heatmap import heatmap_from_result

    spec = get_preset(KERNEL_RUN["preset"])
    result = run_kernel(KERNEL_RUN["kernel"], spec, dict(KERNEL_RUN["sizes"]), engine="des")
    print(f"  {result.kernel}/{result.algorithm}: {result.cycles:,.0f} cycles")
    path = out / "kernel-links.png"
    return [heatmap_from_result(result, path, kind="links", per_direction=True)]


def make_sweep(out: Path) -> list[Path]:
    """sweep.png: :data:`SWEEP_METRICS` of :data:`SWEEP_GRID` against the mesh size."""
    from wse_sim.sweep.api import sweep
    from wse_sim.sweep.plot import plot_sweep

    with tempfile.TemporaryDirectory() as tmp:
        res = sweep(SWEEP_GRID, tmp, engine="analytic", plot=False)
    print(f"  {len(res.rows)} points, {res.failed} do not fit: {res.line()}")
    for row in res.rows:
        if not row.get("error"):
            print(
                f"    {row['placement']:>8} {row['mesh']:>7}: {row['tokens_per_s']:>9,.0f} "
                f"tokens/s, {100 * row['peak_fraction']:.1f}% of peak"
            )
    path = out / "sweep.png"
    return [plot_sweep(res.points, res.columns, res.rows, path, x="mesh", metrics=SWEEP_METRICS)]


def _mark_stages(ax: object, result: object, height: int) -> None:
    """Thin white lines at the west edge of each stage of a pipelined run (``result.stages``)."""
    for stage in getattr(result, "stages", None) or []:
        region = stage.get("region") if isinstance(stage, dict) else None
        if not region or len(region) != 4 or region[0] == 0:
            continue
        x = region[0] - 0.5
        ax.plot([x, x], [-0.5, height - 0.5], color="white", linewidth=0.6, alpha=0.8)


PICTURES: dict[str, Callable[[Path], list[Path]]] = {
    "heatmap": make_heatmap,
    "kernel": make_kernel,
    "sweep": make_sweep,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=IMG, help="folder to write (default docs/img)")
    ap.add_argument("--only", choices=list(PICTURES), action="append", help="draw only these")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name in args.only or list(PICTURES):
        t0 = time.perf_counter()
        print(f"{name}:")
        for path in PICTURES[name](args.out):
            print(f"  wrote {path} ({time.perf_counter() - t0:.1f} s)")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
