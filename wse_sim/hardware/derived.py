"""Whole-machine figures derived from a :class:`WaferSpec` (peak FLOP/s, SRAM, bandwidths).

Each figure says its unit and the formula that produces it, so that the CLI and the docs can
show where a number comes from. Comparable vendor figures (WSE-2: 40 GB SRAM, 20 PB/s memory
bandwidth, 220 Pb/s fabric bandwidth) count all 850,000 PEs; these count the mesh only.
"""

from __future__ import annotations

from dataclasses import dataclass

from wse_sim.hardware.spec import WaferSpec

PORTS_PER_ROUTER = 4
"""Router ports to neighbouring PEs (north, south, east, west); the fifth is the ramp."""


@dataclass(frozen=True)
class Figure:
    """One derived figure: ``value`` in ``unit``, computed as ``formula`` says."""

    key: str
    label: str
    value: float
    unit: str
    formula: str


def mesh_links(spec: WaferSpec) -> int:
    """Physical links between neighbouring PEs of the mesh (each carries both directions)."""
    w, h = spec.mesh.width, spec.mesh.height
    return (w - 1) * h + w * (h - 1)


def derived_figures(spec: WaferSpec) -> list[Figure]:
    """The figures ``wse-sim hardware`` prints, in order."""
    pe, fab = spec.pe, spec.fabric
    n = spec.num_pes
    clock = pe.clock_hz
    link_bps = fab.link_bytes_per_cycle * 8 * clock
    return [
        Figure("pes", "PEs", n, "PEs", "mesh.width x mesh.height"),
        Figure(
            "peak_fp16_pflops",
            "peak FP16",
            spec.peak_flops_per_s("fp16") / 1e15,
            "PFLOP/s",
            "PEs x 2 x pe.simd_fp16_fmac x pe.clock_hz",
        ),
        Figure(
            "peak_fp32_pflops",
            "peak FP32",
            spec.peak_flops_per_s("fp32") / 1e15,
            "PFLOP/s",
            "PEs x 2 x pe.simd_fp32_fmac x pe.clock_hz",
        ),
        Figure("sram_total_gb", "SRAM total", n * pe.sram_bytes / 1e9, "GB", "PEs x pe.sram_bytes"),
        Figure(
            "sram_data_total_gb",
            "SRAM for data",
            n * pe.data_sram_bytes / 1e9,
            "GB",
            "PEs x (pe.sram_bytes - pe.reserved_sram_bytes)",
        ),
        Figure(
            "memory_bandwidth_pb_per_s",
            "SRAM bandwidth total",
            n * (pe.sram_read_bytes_per_cycle + pe.sram_write_bytes_per_cycle) * clock / 1e15,
            "PB/s",
            "PEs x (pe.sram_read_bytes_per_cycle + pe.sram_write_bytes_per_cycle) x pe.clock_hz",
        ),
        Figure(
            "fabric_bandwidth_pbit_per_s",
            "fabric bandwidth total",
            n * PORTS_PER_ROUTER * 2 * link_bps / 1e15,
            "Pb/s",
            "PEs x 4 ports x 2 directions x fabric.link_bytes_per_cycle x 8 x pe.clock_hz "
            "(the vendor's count: each link at both ends)",
        ),
        Figure(
            "mesh_link_bandwidth_pbit_per_s",
            "mesh link bandwidth",
            mesh_links(spec) * 2 * link_bps / 1e15,
            "Pb/s",
            "links x 2 directions x fabric.link_bytes_per_cycle x 8 x pe.clock_hz (each link once)",
        ),
        Figure(
            "bisection_bandwidth_tb_per_s",
            "bisection bandwidth",
            min(spec.mesh.width, spec.mesh.height) * 2 * fab.link_bytes_per_cycle * clock / 1e12,
            "TB/s",
            "min(width, height) links x 2 directions x fabric.link_bytes_per_cycle x pe.clock_hz",
        ),
    ]
