"""Hardware model: :class:`WaferSpec`, presets, loading and cost primitives."""

from wse_sim.hardware.loader import build_spec, parse_mesh
from wse_sim.hardware.presets import PRESETS, get_preset
from wse_sim.hardware.spec import DTYPE_BYTES, FabricSpec, IOSpec, MeshSpec, PESpec, WaferSpec

__all__ = [
    "DTYPE_BYTES",
    "PRESETS",
    "FabricSpec",
    "IOSpec",
    "MeshSpec",
    "PESpec",
    "WaferSpec",
    "build_spec",
    "get_preset",
    "parse_mesh",
]
