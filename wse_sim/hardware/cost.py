"""Cost primitives shared by every engine and every closed-form estimate.

One place turns work into cycles, so that the discrete-event engine and the analytic estimates
cannot drift apart. All results are in PE clock cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wse_sim.errors import ConfigError
from wse_sim.hardware.spec import DTYPE_BYTES, WaferSpec


@dataclass(frozen=True)
class VectorOpKind:
    """How one element of a vector operation is costed."""

    name: str
    flops_per_element: int
    """FLOPs counted per element (an FMAC is 2; a GELU is costed as 8, a SiLU as 4)."""
    unit: str
    """Which rate applies: ``fmac``, ``alu`` (add/mul/max lanes) or ``transcendental``."""


VECTOR_OPS: dict[str, VectorOpKind] = {
    k.name: k
    for k in (
        VectorOpKind("fmac", 2, "fmac"),
        VectorOpKind("add", 1, "alu"),
        VectorOpKind("mul", 1, "alu"),
        VectorOpKind("max", 1, "alu"),
        VectorOpKind("copy", 0, "alu"),
        VectorOpKind("exp", 1, "transcendental"),
        VectorOpKind("rsqrt", 1, "transcendental"),
        VectorOpKind("gelu", 8, "transcendental"),
        VectorOpKind("silu", 4, "transcendental"),
    )
}


def vector_op(kind: str) -> VectorOpKind:
    try:
        return VECTOR_OPS[kind]
    except KeyError:
        raise ConfigError(
            "op", kind, f"unknown vector op; use one of {', '.join(VECTOR_OPS)}"
        ) from None


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ConfigError("dtype", dtype, "use fp16, bf16 or fp32") from None


def lanes(spec: WaferSpec, unit: str, dtype: str) -> int:
    """Elements per cycle of a vector unit for ``dtype``."""
    half = dtype in ("fp16", "bf16")
    if unit == "fmac":
        return spec.pe.simd_fp16_fmac if half else spec.pe.simd_fp32_fmac
    if unit == "alu":
        return spec.pe.simd_fp16_fmac if half else spec.pe.simd_fp32
    raise ConfigError("unit", unit, "use fmac or alu")


def cycles_per_element(spec: WaferSpec, kind: str, dtype: str) -> float:
    """Steady-state cycles per element of vector op ``kind`` (may be fractional)."""
    op = vector_op(kind)
    dtype_bytes(dtype)
    if op.unit == "transcendental":
        return float(spec.pe.transcendental_cycles_per_element)
    return 1.0 / lanes(spec, op.unit, dtype)


def vector_cycles(
    spec: WaferSpec,
    kind: str,
    dtype: str,
    elements: int,
    instructions: int = 1,
    sram_read_bytes: int = 0,
    sram_write_bytes: int = 0,
) -> int:
    """Cycles for ``instructions`` vector instructions doing ``elements`` element-ops in total.

    ``cycles = instructions * instruction_overhead + max(SIMD cycles, SRAM read cycles,
    SRAM write cycles)``, each term rounded up. Zero elements and zero instructions cost 0.
    """
    if elements <= 0 and instructions <= 0:
        return 0
    simd = math.ceil(elements * cycles_per_element(spec, kind, dtype) - 1e-9)
    reads = math.ceil(sram_read_bytes / spec.pe.sram_read_bytes_per_cycle)
    writes = math.ceil(sram_write_bytes / spec.pe.sram_write_bytes_per_cycle)
    return int(instructions * spec.pe.instruction_overhead_cycles + max(simd, reads, writes))


def flops(kind: str, elements: int) -> int:
    """FLOPs counted for ``elements`` element-ops of ``kind``."""
    return vector_op(kind).flops_per_element * int(elements)


def wavelets(spec: WaferSpec, nbytes: int) -> int:
    """Wavelets needed to carry ``nbytes`` bytes (rounded up)."""
    return max(0, math.ceil(nbytes / spec.fabric.link_bytes_per_cycle))


def elements_per_wavelet(spec: WaferSpec, dtype: str) -> int:
    """Elements of ``dtype`` that one wavelet carries (2 fp16 or 1 fp32 on a 32-bit link)."""
    return max(1, spec.fabric.link_bytes_per_cycle // dtype_bytes(dtype))


def message_cycles(spec: WaferSpec, hops: int, n_wavelets: int, interval: int = 1) -> int:
    """Cycles from the first wavelet leaving the sender's compute engine to the last wavelet
    reaching the receiver's compute engine, on an idle fabric:

    ``ramp + hops * hop_latency + (n - 1) * interval + ramp``.

    ``interval`` is the cycles between consecutive wavelets (1 on a free link; larger when the
    sender or the receiver is slower than the link).
    """
    f = spec.fabric
    if n_wavelets <= 0:
        return 0
    return (
        2 * f.ramp_latency_cycles
        + hops * f.hop_latency_cycles
        + (n_wavelets - 1) * max(1, interval)
    )
