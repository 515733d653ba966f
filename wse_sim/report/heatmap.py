"""Heatmaps of a run over the mesh: compute utilization, SRAM occupancy and link load per PE.

Drawn with matplotlib's Agg canvas (no display, no pyplot state). The file format follows the
path's suffix (``.png`` or ``.svg``) and every file is written atomically. Meshes larger than
``max_cells`` PEs on a side are reduced block by block (``max`` by default, or ``mean``) and the
plot says so under each panel; statistics in the panel titles are always over the full-resolution
array. Arrays are indexed ``[y, x]`` with row 0 at the north (top) edge.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wse_sim.engine.result import DIRECTIONS
from wse_sim.errors import ConfigError
from wse_sim.result.io import atomic_write
from wse_sim.result.metrics import compute_utilization

KINDS: tuple[str, ...] = ("compute", "sram", "links", "all")
"""What :func:`heatmap_from_result` can draw; ``all`` is the three panels in one figure."""

FORMATS: dict[str, str] = {".png": "png", ".svg": "svg"}

MAX_CELLS = 250
"""Default largest number of cells drawn along either side of a panel."""

METHODS: tuple[str, ...] = ("max", "mean")
"""Block reductions used to downsample large meshes."""

PANEL_WIDTH_IN = 6.0
"""Width of one panel in inches (the figure is ``n_panels x`` this wide)."""
PANEL_HEIGHT_IN = 5.5
"""Height of a row of panels in inches."""
DEFAULT_DPI = 100
"""Pixels per inch of PNG output: one panel is 600 x 550 pixels."""


@dataclass(frozen=True)
class PlotContext:
    """What the run was, for the figure title: model, mesh (``"WxH"``), placement, engine."""

    model: str = ""
    mesh: str = ""
    placement: str = ""
    engine: str = ""

    def title(self) -> str:
        parts = [self.model or "run"]
        if self.mesh:
            parts.append(f"mesh {self.mesh}")
        if self.placement:
            parts.append(f"placement {self.placement}")
        if self.engine:
            parts.append(f"engine {self.engine}")
        return " | ".join(parts)


@dataclass(frozen=True)
class Panel:
    """One heatmap: full-resolution ``values`` ``[y, x]``, a name and the colorbar's units."""

    values: np.ndarray
    name: str
    units: str
    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None


@dataclass(frozen=True)
class Downsampled:
    """A block-reduced array and how it was made: ``block`` is ``(rows, columns)`` of PEs."""

    values: np.ndarray
    block: tuple[int, int]
    method: str
    original_shape: tuple[int, int]

    @property
    def reduced(self) -> bool:
        return self.block != (1, 1)

    def note(self) -> str:
        """One line stating the reduction, or ``""`` when the array is drawn as is."""
        if not self.reduced:
            return ""
        (h, w), (rh, rw) = self.original_shape, self.values.shape
        by, bx = self.block
        return f"block {self.method} over {by}x{bx} PEs ({h}x{w} -> {rh}x{rw} cells)"


# -- array preparation ---------------------------------------------------------------------------
def downsample(values: np.ndarray, max_cells: int = MAX_CELLS, method: str = "max") -> Downsampled:
    """Reduce a 2D array by square blocks so neither side exceeds ``max_cells``.

    Edge blocks that run past the array are reduced over their real elements only. NaNs are
    ignored unless a whole block is NaN.
    """
    if method not in METHODS:
        raise ConfigError("method", method, f"use one of {', '.join(METHODS)}")
    if max_cells < 1:
        raise ConfigError("max_cells", max_cells, "must be at least 1")
    arr = np.asarray(values, dtype=float)
    h, w = arr.shape
    by = bx = max(1, math.ceil(h / max_cells), math.ceil(w / max_cells))  # square blocks
    if by == 1 and bx == 1:
        return Downsampled(arr, (1, 1), method, (h, w))
    rh, rw = math.ceil(h / by), math.ceil(w / bx)
    padded = np.full((rh * by, rw * bx), np.nan)
    padded[:h, :w] = arr
    blocks = padded.reshape(rh, by, rw, bx)
    valid = ~np.isnan(blocks)
    count = valid.sum(axis=(1, 3))
    if method == "max":
        out = np.where(valid, blocks, -np.inf).max(axis=(1, 3))
    else:
        out = np.where(valid, blocks, 0.0).sum(axis=(1, 3)) / np.maximum(count, 1)
    out = np.where(count > 0, out, np.nan)
    return Downsampled(out, (by, bx), method, (h, w))


def link_load(link_wavelets: np.ndarray) -> np.ndarray:
    """Per router ``[y, x]``: the load of its busiest outgoing link (max over E, W, N, S)."""
    arr = _check_links(link_wavelets)
    return arr.max(axis=0)


def _check_2d(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2 or arr.size == 0:
        raise ConfigError(name, f"shape {arr.shape}", "must be a non-empty 2D array [y, x]")
    return arr


def _check_links(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 3 or arr.shape[0] != len(DIRECTIONS) or arr.size == 0:
        raise ConfigError(
            "link_wavelets",
            f"shape {arr.shape}",
            "must have shape (4, H, W): east, west, north, south",
        )
    return arr


# -- panels from plain arrays --------------------------------------------------------------------
def compute_panel(utilization: np.ndarray) -> Panel:
    """Per-PE compute utilization (docs/metrics.md): executed FLOPs / (peak FLOPs per cycle x
    cycles), 0..1."""
    arr = _check_2d("compute utilization", utilization)
    return Panel(arr, "compute utilization", "executed FLOPs / peak FLOPs", "viridis", 0.0)


def busy_panel(busy_fraction: np.ndarray) -> Panel:
    """Per-PE fraction of the run's cycles the compute engine was occupied (computing, sending,
    receiving), 0..1: drawn when a result has no FLOP counts to derive utilization from."""
    arr = _check_2d("pe_compute_busy", busy_fraction)
    return Panel(arr, "busy fraction", "fraction of cycles occupied", "viridis", 0.0)


def flops_panel(pe_flops: np.ndarray) -> Panel:
    """Per-PE FLOPs (used when no busy fraction is known)."""
    return Panel(_check_2d("pe_flops", pe_flops), "FLOPs per PE", "FLOPs", "viridis", 0.0)


def sram_panel(peak_bytes: np.ndarray, capacity_bytes: float | None = None) -> Panel:
    """Per-PE peak SRAM in KiB; the colour scale tops at ``capacity_bytes`` when given."""
    arr = _check_2d("pe_sram_peak_bytes", peak_bytes) / 1024.0
    name = "SRAM peak"
    vmax = None
    if capacity_bytes:
        name += f" (capacity {capacity_bytes / 1024:g} KiB)"
        vmax = max(capacity_bytes / 1024.0, float(np.nanmax(arr)))
    return Panel(arr, name, "peak SRAM per PE (KiB)", "magma", 0.0, vmax)


def links_panel(link_wavelets: np.ndarray, cycles: float | None = None) -> Panel:
    """Busiest outgoing link of each router: wavelets per cycle when ``cycles`` is given,
    else wavelets."""
    load = link_load(link_wavelets)
    if cycles and cycles > 0:
        return Panel(
            load / cycles, "link load (busiest outgoing link)", "wavelets per cycle", "inferno", 0.0
        )
    return Panel(load, "link load (busiest outgoing link)", "wavelets", "inferno", 0.0)


def direction_panels(link_wavelets: np.ndarray, cycles: float | None = None) -> list[Panel]:
    """One panel per direction (east, west, north, south) of the links leaving each router."""
    arr = _check_links(link_wavelets)
    units = "wavelets per cycle" if cycles and cycles > 0 else "wavelets"
    scale = 1.0 / cycles if cycles and cycles > 0 else 1.0
    vmax = float(np.nanmax(arr) * scale) or None
    return [
        Panel(arr[i] * scale, f"links leaving towards {d}", units, "inferno", 0.0, vmax)
        for i, d in enumerate(DIRECTIONS)
    ]


# -- drawing -------------------------------------------------------------------------------------
def figure_pixels(
    n_panels: int, dpi: int = DEFAULT_DPI, columns: int | None = None
) -> tuple[int, int]:
    """``(height, width)`` in pixels of a PNG with ``n_panels`` laid out in ``columns``."""
    cols = n_panels if columns is None else columns
    rows = math.ceil(n_panels / cols)
    return round(rows * PANEL_HEIGHT_IN * dpi), round(cols * PANEL_WIDTH_IN * dpi)


def draw_panels(
    panels: Sequence[Panel],
    path: str | Path,
    context: PlotContext | None = None,
    max_cells: int = MAX_CELLS,
    method: str = "max",
    dpi: int = DEFAULT_DPI,
    columns: int | None = None,
) -> Path:
    """Draw ``panels`` side by side (``columns`` per row) and write ``path`` (.png or .svg).

    Returns the path written. Each panel has its own colorbar labelled with its units.
    """
    fmt = _format_of(path)
    if not panels:
        raise ConfigError("panels", 0, "give at least one panel to draw")
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = len(panels) if columns is None else max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / cols)
    ctx = context or PlotContext()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig = Figure(
            figsize=(cols * PANEL_WIDTH_IN, rows * PANEL_HEIGHT_IN), dpi=dpi, layout="constrained"
        )
        FigureCanvasAgg(fig)
        fig.suptitle(ctx.title())
        for i, panel in enumerate(panels):
            ax = fig.add_subplot(rows, cols, i + 1)
            _draw_one(fig, ax, panel, max_cells, method)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def _draw_one(fig: Any, ax: Any, panel: Panel, max_cells: int, method: str) -> None:
    import matplotlib

    full = panel.values
    h, w = full.shape
    small = downsample(full, max_cells, method)
    cmap = matplotlib.colormaps[panel.cmap].with_extremes(bad="lightgray")
    finite = full[np.isfinite(full)]
    vmin = panel.vmin
    vmax = panel.vmax
    if vmax is None and finite.size:
        vmax = float(finite.max())
    if vmin is not None and vmax is not None and vmax <= vmin:
        vmax = vmin + 1.0  # a constant map still gets a valid colour scale
    image = ax.imshow(
        np.ma.masked_invalid(small.values),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        origin="upper",
        interpolation="nearest",
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        aspect="equal",
    )
    stats = f"mean {finite.mean():.3g}, max {finite.max():.3g}" if finite.size else "no data"
    ax.set_title(f"{panel.name}\n{stats}", fontsize=10)
    xlabel = "x (PE column, west to east)"
    if small.reduced:
        xlabel += f"\n{small.note()}"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("y (PE row, north to south)", fontsize=9)
    fig.colorbar(image, ax=ax, label=panel.units, shrink=0.85)


def _format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError("output", str(path), "use a file name ending in .png or .svg")
    return FORMATS[suffix]


# -- one-call helpers on plain arrays ------------------------------------------------------------
def plot_compute(
    utilization: np.ndarray, path: str | Path, context: PlotContext | None = None, **kw: Any
) -> Path:
    """Heatmap of per-PE compute utilization (executed FLOPs / peak FLOPs, 0..1)."""
    return draw_panels([compute_panel(utilization)], path, context, **kw)


def plot_sram(
    peak_bytes: np.ndarray,
    path: str | Path,
    context: PlotContext | None = None,
    capacity_bytes: float | None = None,
    **kw: Any,
) -> Path:
    """Heatmap of per-PE peak SRAM (KiB)."""
    return draw_panels([sram_panel(peak_bytes, capacity_bytes)], path, context, **kw)


def plot_links(
    link_wavelets: np.ndarray,
    path: str | Path,
    context: PlotContext | None = None,
    cycles: float | None = None,
    per_direction: bool = False,
    **kw: Any,
) -> Path:
    """Heatmap of link load: the busiest outgoing link per router, or (``per_direction``) four
    panels, one per direction, on a shared colour scale."""
    if per_direction:
        kw.setdefault("columns", 2)
        return draw_panels(direction_panels(link_wavelets, cycles), path, context, **kw)
    return draw_panels([links_panel(link_wavelets, cycles)], path, context, **kw)


# -- from a result object ------------------------------------------------------------------------
def context_from_result(result: Any) -> PlotContext:
    """Title context from a RunResult or (duck-typed) KernelResult."""
    model = getattr(result, "model", None) or getattr(result, "kernel", None) or ""
    mesh = getattr(result, "mesh", None)
    if isinstance(mesh, dict) and "width" in mesh and "height" in mesh:
        mesh_text = f"{mesh['width']}x{mesh['height']}"
    elif isinstance(mesh, str):
        mesh_text = mesh
    else:
        arr = _first_array(result)
        mesh_text = f"{arr.shape[-1]}x{arr.shape[-2]}" if arr is not None else ""
    return PlotContext(
        model=str(model),
        mesh=mesh_text,
        placement=str(getattr(result, "placement", "") or ""),
        engine=str(getattr(result, "engine", "") or ""),
    )


def _first_array(result: Any) -> np.ndarray | None:
    for name in (
        "pe_compute_busy",
        "pe_busy_cycles",
        "pe_flops",
        "pe_sram_peak_bytes",
        "link_wavelets",
    ):
        arr = getattr(result, name, None)
        if arr is not None:
            return np.asarray(arr)
    return None


def result_panels(result: Any, kind: str = "all", spec: Any = None) -> list[Panel]:
    """The panels of ``kind`` for a result, from whichever arrays it carries.

    Compute: compute utilization from ``pe_flops`` when the hardware is known (``spec``, or the
    result's ``spec`` / ``inputs["spec"]``), else the busy fraction (``pe_compute_busy`` or
    ``pe_busy_cycles / cycles``), else raw ``pe_flops``.
    SRAM: ``pe_sram_peak_bytes``. Links: ``link_wavelets`` (per cycle when ``cycles`` > 0).
    ``all`` draws the panels whose arrays exist; a missing array for a single kind is an error.
    """
    if kind not in KINDS:
        raise ConfigError("kind", kind, f"use one of {', '.join(KINDS)}")
    cycles = float(getattr(result, "cycles", 0.0) or 0.0)
    makers = {
        "compute": lambda: _compute_from(result, cycles, spec),
        "sram": lambda: _sram_from(result, spec),
        "links": lambda: _links_from(result, cycles),
    }
    wanted = ("compute", "sram", "links") if kind == "all" else (kind,)
    panels = [p for p in (makers[k]() for k in wanted) if p is not None]
    if not panels:
        what = "pe_compute_busy/pe_busy_cycles/pe_flops, pe_sram_peak_bytes, link_wavelets"
        needed = {
            "compute": "pe_compute_busy, pe_busy_cycles or pe_flops",
            "sram": "pe_sram_peak_bytes",
            "links": "link_wavelets",
        }.get(kind, what)
        raise ConfigError("kind", kind, f"the result has no {needed} array to draw")
    return panels


def _pe_spec(result: Any, spec: Any = None) -> dict[str, Any] | None:
    """The ``pe`` section of the hardware a result was produced on (``spec``, else the result's
    own ``spec`` or ``inputs["spec"]``), as a dict, if known."""
    spec = spec if spec is not None else getattr(result, "spec", None)
    if spec is None:
        spec = (getattr(result, "inputs", None) or {}).get("spec")
    if spec is None:
        return None
    pe = spec.get("pe") if isinstance(spec, dict) else getattr(spec, "pe", None)
    if pe is None:
        return None
    return pe if isinstance(pe, dict) else vars(pe)


def _peak_flops_per_cycle(result: Any, spec: Any = None) -> float | None:
    """Peak FLOPs per cycle of one PE for the result's dtype (an FMAC is 2 FLOPs)."""
    pe = _pe_spec(result, spec)
    if pe is None:
        return None
    dtype = getattr(result, "dtype", "fp16")
    lanes = pe.get("simd_fp32_fmac") if dtype == "fp32" else pe.get("simd_fp16_fmac")
    return 2.0 * lanes if lanes else None


def _compute_from(result: Any, cycles: float, spec: Any = None) -> Panel | None:
    flops = getattr(result, "pe_flops", None)
    peak = _peak_flops_per_cycle(result, spec)
    if flops is not None and peak and cycles > 0:
        return compute_panel(compute_utilization(np.asarray(flops, dtype=float), peak, cycles))
    busy = getattr(result, "pe_compute_busy", None)
    if busy is not None:
        return busy_panel(busy)
    busy_cycles = getattr(result, "pe_busy_cycles", None)
    if busy_cycles is not None and cycles > 0:
        return busy_panel(np.asarray(busy_cycles, dtype=float) / cycles)
    if flops is not None:
        return flops_panel(flops)
    return None


def _sram_from(result: Any, spec: Any = None) -> Panel | None:
    peak = getattr(result, "pe_sram_peak_bytes", None)
    if peak is None:
        return None
    pe = _pe_spec(result, spec)
    capacity = None
    if pe is not None and pe.get("sram_bytes"):
        capacity = pe["sram_bytes"] - pe.get("reserved_sram_bytes", 0)  # SRAM for data
    return sram_panel(peak, capacity)


def _links_from(result: Any, cycles: float) -> Panel | None:
    links = getattr(result, "link_wavelets", None)
    if links is None:
        return None
    return links_panel(links, cycles if cycles > 0 else None)


def heatmap_from_result(
    result: Any,
    path: str | Path,
    kind: str = "all",
    max_cells: int = MAX_CELLS,
    method: str = "max",
    dpi: int = DEFAULT_DPI,
    per_direction: bool = False,
    spec: Any = None,
) -> Path:
    """Draw ``kind`` (compute, sram, links or all) of a RunResult / KernelResult to ``path``.

    ``spec`` (a WaferSpec) names the hardware when the result does not carry it (a
    KernelResult), so that the compute panel is utilization and the SRAM scale tops at capacity.

    With ``per_direction`` and ``kind="links"`` the links are drawn as four panels (east, west,
    north, south) on one colour scale instead of the busiest outgoing link per router.
    """
    _format_of(path)
    context = context_from_result(result)
    if per_direction:
        if kind != "links":
            raise ConfigError("per_direction", True, "only applies to kind 'links'")
        links = getattr(result, "link_wavelets", None)
        if links is None:
            raise ConfigError("kind", kind, "the result has no link_wavelets array to draw")
        cycles = float(getattr(result, "cycles", 0.0) or 0.0)
        panels = direction_panels(links, cycles if cycles > 0 else None)
        return draw_panels(panels, path, context, max_cells, method, dpi, columns=2)
    panels = result_panels(result, kind, spec)
    return draw_panels(panels, path, context, max_cells, method, dpi)
