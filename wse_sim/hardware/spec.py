"""The hardware model: one frozen, validated value read by every stage.

Units are in the field names: ``*_cycles`` are PE clock cycles, ``*_bytes`` bytes,
``*_hz`` hertz, ``*_bytes_per_s`` bytes per second. A *wavelet* is one fabric word
(``fabric.link_bytes_per_cycle`` bytes, 4 on WSE-2/3) plus its color tag.

Every field carries metadata (see :func:`field_info`): its unit, a one-line description, the
public source of its preset values and whether the value is an estimate. The CLI
(``wse-sim hardware``) and ``docs/hardware.md`` are generated from it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from wse_sim.errors import ConfigError

DTYPES: tuple[str, ...] = ("fp16", "fp32")
"""Data types the cost model knows; bf16 is costed as fp16 (same width and SIMD rate)."""

DTYPE_BYTES: dict[str, int] = {"fp16": 2, "bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class FieldInfo:
    """What one hardware field means.

    Attributes:
        section, name: where it lives (``section.name`` is the ``--set`` / TOML key).
        unit: its unit, e.g. ``cycles``, ``bytes``, ``Hz``.
        kind: ``int`` or ``float``.
        doc: one line saying what it is.
        source: the public source of the preset values, or how they were estimated.
        estimate: True when no public source gives the value (it is our estimate).
    """

    section: str
    name: str
    unit: str
    kind: type
    doc: str
    source: str
    estimate: bool

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def _f(default: Any, unit: str, doc: str, source: str, estimate: bool = False) -> Any:
    """A dataclass field with its unit, description and source as metadata."""
    meta = {"unit": unit, "doc": doc, "source": source, "estimate": estimate}
    return field(default=default, metadata=meta)


def _bad_number(value: Any) -> bool:
    """True when ``value`` is not a finite int or float (bool does not count as a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return isinstance(value, float) and not math.isfinite(value)


def _positive(section: str, obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if _bad_number(value) or value <= 0:
            raise ConfigError(f"{section}.{name}", value, "must be a finite number greater than 0")


def _non_negative(section: str, obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if _bad_number(value) or value < 0:
            raise ConfigError(f"{section}.{name}", value, "must be a finite number >= 0")


def _integral(section: str, obj: Any, names: tuple[str, ...]) -> None:
    """Turn whole floats (``2.0``) into ints; reject anything else that is not an int."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, float) and value.is_integer():
            object.__setattr__(obj, name, int(value))
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{section}.{name}", value, "must be a whole number")


def _real(section: str, obj: Any, names: tuple[str, ...]) -> None:
    """Store ints given for float fields as floats (so equal specs serialise the same)."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(obj, name, float(value))


def _validate_section(section: str, obj: Any, non_negative: tuple[str, ...] = ()) -> None:
    """Type-check every field of a section: whole numbers for ``int`` fields, finite numbers
    for ``float`` fields; every field must be > 0 except those in ``non_negative`` (>= 0)."""
    fields = dataclasses.fields(obj)
    ints = tuple(f.name for f in fields if f.type in ("int", int))
    floats = tuple(f.name for f in fields if f.type in ("float", float))
    _integral(section, obj, ints)
    _positive(section, obj, tuple(f.name for f in fields if f.name not in non_negative))
    _non_negative(section, obj, non_negative)
    _real(section, obj, floats)


_SDK_RECT = "Cerebras SDK: largest user kernel rectangle, WSE-2 750x994, WSE-3 755x1170"


@dataclass(frozen=True)
class MeshSpec:
    """The rectangle of PEs available to programs."""

    width: int = _f(750, "PEs", "PEs along x (columns, west to east)", _SDK_RECT)
    height: int = _f(994, "PEs", "PEs along y (rows, north to south)", _SDK_RECT)

    def __post_init__(self) -> None:
        _validate_section("mesh", self)

    @property
    def num_pes(self) -> int:
        return self.width * self.height


_HC34 = "Hot Chips 34 (WSE-2)"


@dataclass(frozen=True)
class PESpec:
    """One processing element: clock, SRAM and the compute engine's SIMD rates."""

    clock_hz: float = _f(
        1.1e9,
        "Hz",
        "PE clock frequency",
        "WSE-2: 1.1 GHz, Hot Chips 34 and WaferLLM (OSDI 2025; 850 MHz also reported). "
        "WSE-3: not published, 1.0 GHz is an estimate from its bandwidth figures",
    )
    sram_bytes: int = _f(
        48 * 1024,
        "bytes",
        "private SRAM per PE, code and data together",
        "Hot Chips 34 and Cerebras SDK docs: 48 KB in 8 banks of 6 KB (WSE-2 and WSE-3)",
    )
    sram_read_bytes_per_cycle: int = _f(
        16,
        "bytes/cycle",
        "SRAM read bandwidth: two 64-bit reads",
        "Hot Chips 34 (the SDK appendix says two 32-bit reads: set 8 to try it)",
    )
    sram_write_bytes_per_cycle: int = _f(
        8,
        "bytes/cycle",
        "SRAM write bandwidth: one 64-bit write",
        "Hot Chips 34 (the SDK appendix says one 32-bit write: set 4 to try it)",
    )
    simd_fp16_fmac: int = _f(
        4,
        "elements/cycle",
        "FP16 fused multiply-accumulates (also add, mul) per cycle",
        "Cerebras SDK docs: SIMD-4 on WSE-2, SIMD-8 on WSE-3",
    )
    simd_fp16_mixed_fmac: int = _f(
        2,
        "elements/cycle",
        "FP16 multiply with FP32 accumulate per cycle",
        "Cerebras SDK docs: 2 on WSE-2, 4 on WSE-3",
    )
    simd_fp32: int = _f(
        2,
        "elements/cycle",
        "FP32 add / mul / move per cycle",
        "Cerebras SDK docs: 2 on WSE-2, 4 on WSE-3",
    )
    simd_fp32_fmac: int = _f(
        1,
        "elements/cycle",
        "FP32 fused multiply-accumulates per cycle",
        "WSE-2: 1, inferred from the SDK docs; WSE-3: not published, 2 is an estimate",
    )
    transcendental_cycles_per_element: int = _f(
        8,
        "cycles/element",
        "cycles per element for exp / tanh / rsqrt (software sequences)",
        "estimate: no hardware transcendental unit is documented; a short polynomial "
        "sequence of FMACs per element",
        estimate=True,
    )
    instruction_overhead_cycles: int = _f(
        2,
        "cycles",
        "fixed cycles to issue one vector instruction",
        "estimate: not published; a few cycles to set up data structure descriptors",
        estimate=True,
    )
    task_switch_cycles: int = _f(
        5,
        "cycles",
        "fixed cycles to switch to another hardware task",
        "estimate: not published; the hardware task picker needs a few cycles",
        estimate=True,
    )
    reserved_sram_bytes: int = _f(
        6 * 1024,
        "bytes",
        "SRAM kept for code, stack and runtime; not available to data",
        "estimate: one 6 KB bank of the 48 KB for code and runtime (SDK programs vary)",
        estimate=True,
    )

    def __post_init__(self) -> None:
        _validate_section(
            "pe",
            self,
            non_negative=(
                "instruction_overhead_cycles",
                "task_switch_cycles",
                "reserved_sram_bytes",
            ),
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

    link_bytes_per_cycle: int = _f(
        4,
        "bytes/cycle",
        "bytes one link moves per cycle per direction: one 32-bit wavelet",
        "Hot Chips 34, Cerebras SDK docs: 32-bit wavelet plus 5-bit color, one per cycle",
    )
    hop_latency_cycles: int = _f(
        1,
        "cycles",
        "cycles for a wavelet to go from one router to the next",
        "Cerebras SDK docs, WaferLLM (OSDI 2025): about 1 cycle per hop",
    )
    ramp_latency_cycles: int = _f(
        2,
        "cycles",
        "cycles between a compute engine and its own router, each way",
        "secondary source: about 2 cycles on WSE-2 (older literature said 7)",
    )
    buffer_depth_wavelets: int = _f(
        8,
        "wavelets",
        "router input-buffer depth per port per color",
        "estimate: not published; the vendor's trace viewer shows backpressure, so buffers "
        "are finite",
        estimate=True,
    )
    colors: int = _f(
        24,
        "colors",
        "routable colors (virtual channels) per link",
        "Cerebras SDK docs: 24 routable colors",
    )

    def __post_init__(self) -> None:
        _validate_section(
            "fabric", self, non_negative=("hop_latency_cycles", "ramp_latency_cycles")
        )


@dataclass(frozen=True)
class IOSpec:
    """Off-wafer I/O and the external weight store used by weight streaming."""

    io_bytes_per_s: float = _f(
        150e9,
        "bytes/s",
        "off-wafer I/O bandwidth per system",
        "vendor / SC24 tutorial: about 1.2 Tb/s over 100 GbE links on CS-2; CS-3 about 30% "
        "more (195e9 is that estimate)",
    )
    external_memory_bytes: float = _f(
        12e12,
        "bytes",
        "capacity of the external weight store (MemoryX)",
        "vendor: MemoryX ranges from 4 TB to 2.4 PB; 12 TB is one mid-range choice",
    )
    wafer_interconnect_bytes_per_s: float = _f(
        150e9,
        "bytes/s",
        "per-wafer bandwidth into the weight-broadcast / gradient-reduce interconnect (SwarmX)",
        "estimate: not published separately; taken equal to the off-wafer I/O bandwidth",
        estimate=True,
    )

    def __post_init__(self) -> None:
        _validate_section("io", self)


SECTIONS: dict[str, type] = {"mesh": MeshSpec, "pe": PESpec, "fabric": FabricSpec, "io": IOSpec}
"""The sections of a :class:`WaferSpec`, in order: TOML tables and ``--set`` prefixes."""


def section_field_names(section: str) -> list[str]:
    """Field names of ``section``; :class:`ConfigError` for an unknown section."""
    if section not in SECTIONS:
        raise ConfigError(section, section, f"unknown section; use one of {', '.join(SECTIONS)}")
    return [f.name for f in dataclasses.fields(SECTIONS[section])]


def field_info(section: str, name: str, value: Any = None) -> FieldInfo:
    """The :class:`FieldInfo` of ``section.name``. ``value`` (what the user gave) only goes into
    the :class:`ConfigError` raised for an unknown section or field."""
    if section not in SECTIONS:
        raise ConfigError(section, value, f"unknown section; use one of {', '.join(SECTIONS)}")
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name == name:
            kind = int if f.type in ("int", int) else float
            m = f.metadata
            return FieldInfo(
                section, name, m["unit"], kind, m["doc"], m["source"], bool(m["estimate"])
            )
    names = ", ".join(section_field_names(section))
    raise ConfigError(f"{section}.{name}", value, f"unknown field; {section} has {names}")


def iter_fields() -> Iterator[FieldInfo]:
    """Every field of every section, in declaration order."""
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield field_info(section, f.name)


@dataclass(frozen=True)
class WaferSpec:
    """The whole machine. Frozen: derive a variant with :meth:`replace`."""

    name: str = "wse2"
    mesh: MeshSpec = field(default_factory=MeshSpec)
    pe: PESpec = field(default_factory=PESpec)
    fabric: FabricSpec = field(default_factory=FabricSpec)
    io: IOSpec = field(default_factory=IOSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("name", self.name, "must be a non-empty string")
        need = self.router_buffer_bytes
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

    @property
    def router_buffer_bytes(self) -> int:
        """Bytes one router input buffer holds (``buffer_depth_wavelets x link_bytes``)."""
        return self.fabric.buffer_depth_wavelets * self.fabric.link_bytes_per_cycle

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
        field_info(section, name, value)
        new_section = dataclasses.replace(getattr(self, section), **{name: value})
        return self.replace(**{section: new_section})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
