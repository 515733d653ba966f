"""One-line errors for placements that do not fit the PEs' SRAM, with what would fit.

Bytes are bytes per PE unless the name says otherwise; the capacity is
``spec.pe.data_sram_bytes`` (SRAM minus what code and runtime keep).
"""

from __future__ import annotations

import math

from wse_sim.errors import PlanError
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Region


def mesh_for(spec: WaferSpec, pes: float) -> tuple[int, int]:
    """A mesh with the current aspect ratio and at least ``pes`` PEs: ``(width, height)``."""
    w, h = spec.mesh.width, spec.mesh.height
    scale = math.sqrt(max(pes, 1.0) / (w * h))
    return max(w, math.ceil(w * scale)), max(h, math.ceil(h * scale))


def suggestion(
    strategy: str,
    spec: WaferSpec,
    total_resident: float,
    working: float,
    mesh: tuple[int, int] | None = None,
) -> str:
    """What would fit: a bigger mesh (``mesh``, else sized so that ``total_resident`` bytes
    plus ``working`` bytes per PE fit), or the ``stream`` placement."""
    cap = spec.pe.data_sram_bytes
    room = cap - working
    if strategy == "stream":
        return "use a bigger --mesh or a smaller --batch / --seq (fewer bytes per op)"
    if room <= 0:
        return "no mesh size helps this op's working set; use --placement stream"
    w, h = mesh if mesh is not None else mesh_for(spec, total_resident / room)
    more = "give it more PEs (" if strategy not in ("whole", "sequential") else ""
    close = ")" if more else ""
    return f"{more}a mesh of at least {w}x{h} PEs (--mesh {w}x{h}){close}, or --placement stream"


def fit_error(
    strategy: str,
    op: str,
    region: Region,
    spec: WaferSpec,
    resident_per_pe: float,
    working_per_pe: float,
    total_resident: float,
    mesh: tuple[int, int] | None = None,
) -> PlanError:
    """The error for op ``op`` needing ``resident_per_pe + working_per_pe`` bytes per PE;
    ``mesh`` overrides the suggested mesh size, which otherwise scales the whole mesh until the
    resident bytes per PE leave room for the working set. ``total_resident`` (bytes over the
    whole placement) is kept for callers' messages."""
    cap = spec.pe.data_sram_bytes
    need = resident_per_pe + working_per_pe
    # resident bytes per PE shrink in proportion to the PEs: scale the whole mesh
    scaled = resident_per_pe * spec.num_pes
    hint = suggestion(strategy, spec, scaled, working_per_pe, mesh)
    return PlanError(
        f"placement {strategy}: op {op} needs {math.ceil(need)} bytes per PE "
        f"({math.ceil(resident_per_pe)} resident weights/state + {math.ceil(working_per_pe)} "
        f"working set) but a PE has {cap} bytes (pe.data_sram_bytes) on its "
        f"{region.width}x{region.height} region; {hint}"
    )


def check_resident(
    strategy: str,
    op: str,
    region: Region,
    spec: WaferSpec,
    resident_bytes: float,
    total_resident: float,
) -> None:
    """Raise :func:`fit_error` when the resident bytes alone exceed a PE's data SRAM."""
    per_pe = resident_bytes / region.num_pes
    if per_pe > spec.pe.data_sram_bytes:
        raise fit_error(strategy, op, region, spec, per_pe, 0.0, total_resident)
