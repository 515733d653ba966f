"""The hardware model: one frozen, validated value read by every stage.

Units are in the field names: ``*_cycles`` are PE clock cycles, ``*_bytes`` bytes,
``*_hz`` hertz, ``*_bytes_per_s`` bytes per second. A *wavelet* is one fabric word
(``fabric.link_bytes_per_cycle`` bytes, 4 on WSE-2/3) plus its color tag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wse_sim.errors import ConfigError

DTYPES: tuple[str, ...] = ("fp16", "fp32")
"""Data types the cost model knows; bf16 is costed as fp16 (same width and SIMD rate)."""

DTYPE_BYTES: dict[str, int] = {"fp16": 2, "bf16": 2, "fp32": 4}


def _positive(section: str, obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{section}.{name}", value, "must be a number greater than 0")


def _non_negative(section: str, obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{section}.{name}", value, "must be a number >= 0")


def _integral(section: str, obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, float) and value.is_integer():
            object.__setattr__(obj, name, int(value))
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{section}.{name}", value, "must be a whole number")


@dataclass(frozen=True)
class MeshSpec:
    """The rectangle of PEs available to programs."""

    width: int = 750
    """PEs along x (columns, west to east)."""
    height: int = 994
    """PEs along y (rows, north to south)."""

    def __post_init__(self) -> None:
        _integral("mesh", self, ("width", "height"))
        _positive("mesh", self, ("width", "height"))

    @property
    def num_pes(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class PESpec:
    """One processing element: clock, SRAM and the compute engine's SIMD rates."""

    clock_hz: float = 1.1e9
    """PE clock frequency (Hz)."""
    sram_bytes: int = 48 * 1024
    """Private SRAM per PE (bytes), code and data together."""
    sram_read_bytes_per_cycle: int = 16
    """SRAM read bandwidth (bytes/cycle): two 64-bit reads."""
    sram_write_bytes_per_cycle: int = 8
    """SRAM write bandwidth (bytes/cycle): one 64-bit write."""
    simd_fp16_fmac: int = 4
    """FP16 fused multiply-accumulates (also add, mul) per cycle."""
    simd_fp16_mixed_fmac: int = 2
    """FP16 multiply with FP32 accumulate per cycle."""
    simd_fp32: int = 2
    """FP32 add / mul / move per cycle."""
    simd_fp32_fmac: int = 1
    """FP32 fused multiply-accumulates per cycle."""
    transcendental_cycles_per_element: int = 8
    """Cycles per element for exp / tanh / rsqrt (software sequences; estimate)."""
    instruction_overhead_cycles: int = 2
    """Fixed cycles to issue one vector instruction (estimate)."""
    task_switch_cycles: int = 5
    """Fixed cycles to switch to another hardware task (estimate)."""
    reserved_sram_bytes: int = 6 * 1024
    """SRAM kept for code, stack and runtime (bytes); not available to data (estimate)."""

    def __post_init__(self) -> None:
        ints = (
            "sram_bytes",
            "sram_read_bytes_per_cycle",
            "sram_write_bytes_per_cycle",
            "simd_fp16_fmac",
            "simd_fp16_mixed_fmac",
            "simd_fp32",
            "simd_fp32_fmac",
            "transcendental_cycles_per_element",
            "instruction_overhead_cycles",
            "task_switch_cycles",
            "reserved_sram_bytes",
        )
        _integral("pe", self, ints)
        _positive(
            "pe",
            self,
            (
                "clock_hz",
                "sram_bytes",
                "sram_read_bytes_per_cycle",
                "sram_write_bytes_per_cycle",
                "simd_fp16_fmac",
                "simd_fp16_mixed_fmac",
                "simd_fp32",
                "simd_fp32_fmac",
                "transcendental_cycles_per_element",
            ),
        )
        _non_negative(
            "pe", self, ("instruction_overhead_cycles", "task_switch_cycles", "reserved_sram_bytes")
        )
        if self.reserved_sram_bytes >= self.sram_bytes:
            raise ConfigError(
                "pe.reserved_sram_bytes",
                self.reserved_sram_bytes,
                f"must be smaller than pe.sram_bytes ({self.sram_bytes})",
            )

    @property
    def data_sram_bytes(self) -> int:
        """SRAM a kernel may use for data on one PE (bytes)."""
        return self.sram_bytes - self.reserved_sram_bytes


@dataclass(frozen=True)
class FabricSpec:
    """The 2D mesh fabric: links, routers, colors."""

    link_bytes_per_cycle: int = 4
    """Bytes one link moves per cycle per direction: one 32-bit wavelet."""
    hop_latency_cycles: int = 1
    """Cycles for a wavelet to go from one router to the next."""
    ramp_latency_cycles: int = 2
    """Cycles between a compute engine and its own router, each way."""
    buffer_depth_wavelets: int = 8
    """Router input-buffer depth per port per color (wavelets; not published, estimate)."""
    colors: int = 24
    """Routable colors (virtual channels) per link."""

    def __post_init__(self) -> None:
        names = (
            "link_bytes_per_cycle",
            "hop_latency_cycles",
            "ramp_latency_cycles",
            "buffer_depth_wavelets",
            "colors",
        )
        _integral("fabric", self, names)
        _positive("fabric", self, ("link_bytes_per_cycle", "buffer_depth_wavelets", "colors"))
        _non_negative("fabric", self, ("hop_latency_cycles", "ramp_latency_cycles"))


@dataclass(frozen=True)
class IOSpec:
    """Off-wafer I/O and the external weight store used by weight streaming."""

    io_bytes_per_s: float = 150e9
    """Off-wafer I/O bandwidth per system (bytes/s): about 1.2 Tb/s over 100 GbE links."""
    external_memory_bytes: float = 12e12
    """Capacity of the external weight store (bytes; MemoryX ranges from 4 TB to 2.4 PB)."""
    wafer_interconnect_bytes_per_s: float = 150e9
    """Per-wafer bandwidth into the weight-broadcast / gradient-reduce interconnect (bytes/s)."""

    def __post_init__(self) -> None:
        _positive(
            "io",
            self,
            ("io_bytes_per_s", "external_memory_bytes", "wafer_interconnect_bytes_per_s"),
        )


SECTIONS: dict[str, type] = {"mesh": MeshSpec, "pe": PESpec, "fabric": FabricSpec, "io": IOSpec}


@dataclass(frozen=True)
class WaferSpec:
    """The whole machine. Frozen: derive a variant with :meth:`replace`."""

    name: str = "wse2"
    mesh: MeshSpec = field(default_factory=MeshSpec)
    pe: PESpec = field(default_factory=PESpec)
    fabric: FabricSpec = field(default_factory=FabricSpec)
    io: IOSpec = field(default_factory=IOSpec)

    def __post_init__(self) -> None:
        need = self.fabric.buffer_depth_wavelets * self.fabric.link_bytes_per_cycle
        if self.pe.sram_bytes < need:
            raise ConfigError(
                "pe.sram_bytes",
                self.pe.sram_bytes,
                f"must hold at least one router buffer ({need} bytes = "
                "fabric.buffer_depth_wavelets x fabric.link_bytes_per_cycle)",
            )

    # -- derived quantities -------------------------------------------------------------------
    @property
    def num_pes(self) -> int:
        return self.mesh.num_pes

    def peak_flops_per_cycle(self, dtype: str = "fp16") -> int:
        """Peak FLOPs per cycle of one PE for ``dtype`` (an FMAC counts as 2 FLOPs)."""
        if dtype in ("fp16", "bf16"):
            return 2 * self.pe.simd_fp16_fmac
        if dtype == "fp32":
            return 2 * self.pe.simd_fp32_fmac
        raise ConfigError("dtype", dtype, "use fp16, bf16 or fp32")

    def peak_flops_per_s(self, dtype: str = "fp16", pes: int | None = None) -> float:
        """Peak FLOP/s of ``pes`` PEs (default: the whole mesh)."""
        n = self.num_pes if pes is None else pes
        return self.peak_flops_per_cycle(dtype) * n * self.pe.clock_hz

    def seconds(self, cycles: float) -> float:
        """Convert PE clock cycles to seconds."""
        return cycles / self.pe.clock_hz

    # -- variants -----------------------------------------------------------------------------
    def replace(self, **sections: Any) -> WaferSpec:
        """A copy with whole sections or ``name`` replaced (validated again)."""
        return dataclasses.replace(self, **sections)

    def with_mesh(self, width: int, height: int) -> WaferSpec:
        return self.replace(mesh=MeshSpec(width=width, height=height))

    def with_field(self, section: str, name: str, value: Any) -> WaferSpec:
        """A copy with one field ``section.name`` set (validated)."""
        if section not in SECTIONS:
            raise ConfigError(section, value, f"unknown section; use one of {', '.join(SECTIONS)}")
        cls = SECTIONS[section]
        names = [f.name for f in dataclasses.fields(cls)]
        if name not in names:
            raise ConfigError(
                f"{section}.{name}", value, f"unknown field; {section} has {', '.join(names)}"
            )
        new_section = dataclasses.replace(getattr(self, section), **{name: value})
        return self.replace(**{section: new_section})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
