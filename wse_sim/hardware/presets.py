"""Hardware presets: a registry from name to a :class:`WaferSpec` and one line of description."""

from __future__ import annotations

from dataclasses import dataclass

from wse_sim.errors import ConfigError
from wse_sim.hardware.spec import FabricSpec, IOSpec, MeshSpec, PESpec, WaferSpec


@dataclass(frozen=True)
class Preset:
    """One named machine: ``spec.name`` equals ``name``; ``description`` is one line."""

    name: str
    description: str
    spec: WaferSpec


def _wse2(width: int = 750, height: int = 994, name: str = "wse2") -> WaferSpec:
    """WSE-2: every field at its default (see the sources in ``docs/hardware.md``)."""
    return WaferSpec(
        name=name, mesh=MeshSpec(width, height), pe=PESpec(), fabric=FabricSpec(), io=IOSpec()
    )


def _wse3(width: int = 755, height: int = 1170, name: str = "wse3") -> WaferSpec:
    """WSE-3: twice the WSE-2 SIMD widths (SDK docs); the 1.0 GHz clock, FP32 FMAC rate 2 and
    the 30% faster I/O are estimates (not published)."""
    return WaferSpec(
        name=name,
        mesh=MeshSpec(width, height),
        pe=PESpec(
            clock_hz=1.0e9,
            simd_fp16_fmac=8,
            simd_fp16_mixed_fmac=4,
            simd_fp32=4,
            simd_fp32_fmac=2,
        ),
        fabric=FabricSpec(),
        io=IOSpec(io_bytes_per_s=195e9, wafer_interconnect_bytes_per_s=195e9),
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("wse2", "Cerebras WSE-2 (CS-2): 750x994 user PEs, 48 KB SRAM, 1.1 GHz", _wse2()),
        Preset("wse3", "Cerebras WSE-3 (CS-3): 755x1170 user PEs, SIMD-8 FP16, ~1.0 GHz", _wse3()),
        Preset("tiny", "WSE-2 PEs on a 4x4 mesh: unit tests", _wse2(4, 4, "tiny")),
        Preset("small", "WSE-2 PEs on a 16x16 mesh: functional checks", _wse2(16, 16, "small")),
        Preset("demo", "WSE-2 PEs on a 64x64 mesh: demos and DES runs", _wse2(64, 64, "demo")),
    )
}

DEFAULT_PRESET = "wse2"


def get_preset(name: str) -> WaferSpec:
    """The spec of preset ``name``; a :class:`ConfigError` lists the valid names otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError("preset", name, f"unknown preset; use one of {', '.join(PRESETS)}")
    return PRESETS[name].spec
