"""Hardware model: :class:`WaferSpec`, presets, loading, derived figures and cost primitives."""

from wse_sim.hardware.derived import Figure, derived_figures
from wse_sim.hardware.loader import build_spec, parse_mesh
from wse_sim.hardware.presets import PRESETS, get_preset
from wse_sim.hardware.spec import (
    DTYPE_BYTES,
    FabricSpec,
    FieldInfo,
    IOSpec,
    MeshSpec,
    PESpec,
    WaferSpec,
    field_info,
    iter_fields,
)
from wse_sim.hardware.toml_writer import spec_to_toml

__all__ = [
    "DTYPE_BYTES",
    "PRESETS",
    "FabricSpec",
    "FieldInfo",
    "Figure",
    "IOSpec",
    "MeshSpec",
    "PESpec",
    "WaferSpec",
    "build_spec",
    "derived_figures",
    "field_info",
    "get_preset",
    "iter_fields",
    "parse_mesh",
    "spec_to_toml",
]
