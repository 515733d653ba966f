"""Metric definitions, written once (docs/metrics.md states the same formulas).

* compute utilization of a PE = executed FLOPs / (peak FLOPs per cycle x cycles)
* link utilization of a directed link = wavelets carried / cycles
* SRAM occupancy of a PE = peak bytes allocated / SRAM capacity
* a region's or run's *mean* is the plain mean over its PEs (or links); *max* is the largest
  element. Whole-run figures use the run's total cycles as the denominator.
"""

from __future__ import annotations

import numpy as np


def compute_utilization(
    pe_flops: np.ndarray, peak_flops_per_cycle: float, cycles: float
) -> np.ndarray:
    """Per-PE fraction of peak: ``pe_flops / (peak_flops_per_cycle * cycles)`` (0 when idle)."""
    if cycles <= 0:
        return np.zeros_like(pe_flops, dtype=float)
    return np.asarray(pe_flops, dtype=float) / (peak_flops_per_cycle * cycles)


def link_utilization(link_wavelets: np.ndarray, cycles: float) -> np.ndarray:
    """Per-link fraction of cycles carrying a wavelet: ``wavelets / cycles``."""
    if cycles <= 0:
        return np.zeros_like(link_wavelets, dtype=float)
    return np.asarray(link_wavelets, dtype=float) / cycles


def existing_links_mask(height: int, width: int) -> np.ndarray:
    """Boolean ``(4, height, width)``: which outgoing links exist (directions E, W, N, S).

    Routers on the mesh edge have no link leaving the mesh, so means over links use this mask.
    """
    mask = np.ones((4, height, width), dtype=bool)
    mask[0, :, width - 1] = False  # east edge
    mask[1, :, 0] = False  # west edge
    mask[2, 0, :] = False  # north edge
    mask[3, height - 1, :] = False  # south edge
    return mask


def mean_link_utilization(link_wavelets: np.ndarray, cycles: float) -> float:
    """Mean over the mesh's existing directed links of ``wavelets / cycles``."""
    _, h, w = link_wavelets.shape
    mask = existing_links_mask(h, w)
    if not mask.any():
        return 0.0
    return float(link_utilization(link_wavelets, cycles)[mask].mean())


def sram_occupancy(peak_bytes: np.ndarray, capacity_bytes: float) -> np.ndarray:
    """Per-PE peak SRAM bytes / capacity."""
    return np.asarray(peak_bytes, dtype=float) / float(capacity_bytes)
