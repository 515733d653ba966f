"""The result of one kernel run (``wse-sim kernel``): plain data plus per-PE / per-link arrays.

Arrays cover the kernel's region (not the whole mesh), indexed ``[y, x]`` relative to its
north-west corner: ``pe_flops`` (FLOPs executed per PE), ``pe_busy_cycles`` (cycles each PE's
compute engine was busy: computing, injecting, draining), ``pe_sram_peak_bytes`` (peak bytes
allocated per PE) and ``link_wavelets`` ``(4, H, W)`` (wavelets carried on the link leaving each
router east, west, north, south). The ``analytic`` engine has no per-link or busy-cycle arrays;
they are ``None`` there. docs/metrics.md defines every figure.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from wse_sim.result.bundle import load_bundle, save_bundle

ARRAY_FIELDS = ("pe_flops", "pe_busy_cycles", "pe_sram_peak_bytes", "link_wavelets")
NOT_SAVED = ARRAY_FIELDS + ("spans",)


@dataclass
class KernelResult:
    """Headline numbers of one kernel run.

    Attributes:
        kernel, algorithm: registry names.
        mesh: ``{"width", "height"}`` of the whole mesh (PEs).
        region: ``[x, y, width, height]`` of the PEs the kernel was given.
        engine: ``des`` or ``analytic``.
        dtype: element type.
        sizes: problem sizes by name.
        cycles: PE clock cycles from start to the last PE finishing.
        seconds: ``cycles / clock``.
        flops: useful FLOPs of the problem (e.g. ``2 m n k``; padding not counted).
        achieved_flops_per_s: ``flops / seconds``.
        peak_fraction: ``flops / (region PEs x peak FLOPs per cycle x cycles)``.
        utilization: ``compute_mean``, ``compute_max``, ``link_mean``, ``link_max`` (``None``
            when the engine cannot tell), ``sram_peak_fraction``.
        check: ``passed``, ``failed`` or ``skipped``.
        breakdown: named parts of the cycles (analytic closed form; for ``des`` the closed
            form's parts too, for comparison).
        estimate_cycles: the closed form's cycles (both engines), to compare with ``cycles``.
        check_error: largest ``|out - ref| / max(1, max |ref|)`` when checked.
    """

    kernel: str
    algorithm: str
    mesh: dict[str, int]
    region: list[int]
    engine: str
    dtype: str
    sizes: dict[str, int]
    cycles: float
    seconds: float
    flops: float
    achieved_flops_per_s: float
    peak_fraction: float
    utilization: dict[str, float | None]
    check: str = "skipped"
    breakdown: dict[str, float] = field(default_factory=dict)
    estimate_cycles: float | None = None
    check_error: float | None = None
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    tiling: dict[str, Any] = field(default_factory=dict)
    sram_bytes_per_pe: int = 0
    wall_seconds: float = 0.0
    pe_flops: np.ndarray | None = None
    pe_busy_cycles: np.ndarray | None = None
    pe_sram_peak_bytes: np.ndarray | None = None
    link_wavelets: np.ndarray | None = None
    spans: list[Any] | None = None
    """Per-PE busy intervals when the run recorded them (not saved)."""

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without the arrays (they go to the .npz beside the JSON)."""
        return {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in fields(self)
            if f.name not in NOT_SAVED
        }

    def to_json(self) -> str:
        from wse_sim.result.io import _json_default

        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ARRAY_FIELDS if getattr(self, k) is not None}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (JSON) and ``path`` with suffix ``.npz`` (arrays), each atomically."""
        return save_bundle(path, self.to_dict(), self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> KernelResult:
        data, arrays = load_bundle(path)
        return cls(**data, **arrays)
