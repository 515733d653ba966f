"""Validation, data splits and numpy dtypes shared by the collective and row-wise kernels.

Everything here is plain arithmetic on sizes: no IR, no timing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wse_sim.errors import ConfigError
from wse_sim.hardware.cost import dtype_bytes, vector_cycles
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Compute, Region

NUMPY_DTYPES: dict[str, type] = {"fp16": np.float16, "bf16": np.float32, "fp32": np.float32}
"""numpy type used for functional runs; numpy has no bfloat16, so bf16 data is held in float32
(bf16 is costed as fp16 everywhere else)."""


def np_dtype(dtype: str) -> type:
    """The numpy type for ``dtype`` (validates it)."""
    dtype_bytes(dtype)
    return NUMPY_DTYPES[dtype]


def check_dtype(dtype: str) -> int:
    """Validate ``dtype`` and return its size in bytes."""
    return dtype_bytes(dtype)


def check_sizes(kernel: str, sizes: dict[str, int], names: tuple[str, ...]) -> dict[str, int]:
    """Return ``{name: int}`` for each required size; each must be a whole number >= 1."""
    out: dict[str, int] = {}
    for name in names:
        if name not in sizes:
            raise ConfigError(name, None, f"{kernel} needs sizes {', '.join(names)}")
        value = sizes[name]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ConfigError(name, sizes[name], "must be a whole number >= 1")
        out[name] = int(value)
    return out


def check_region(spec: WaferSpec, region: Region) -> None:
    """The region must lie inside the mesh."""
    if region.x + region.width > spec.mesh.width or region.y + region.height > spec.mesh.height:
        raise ConfigError(
            "region",
            f"{region.width}x{region.height}+{region.x}+{region.y}",
            f"must lie inside the {spec.mesh.width}x{spec.mesh.height} mesh",
        )


def check_algorithm(kernel: str, algorithm: str | None, algorithms: tuple[str, ...]) -> str:
    """``algorithm`` or the default (the first); a ConfigError lists the valid names."""
    if algorithm is None:
        return algorithms[0]
    if algorithm not in algorithms:
        raise ConfigError("algorithm", algorithm, f"{kernel} has {', '.join(algorithms)}")
    return algorithm


def check_options(kernel: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Reject option names the kernel does not know."""
    for name in options:
        if name not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise ConfigError(name, options[name], f"unknown {kernel} option; known: {known}")


def split(total: int, parts: int) -> np.ndarray:
    """Counts of an even split of ``total`` items over ``parts`` (the first ones get one more)."""
    base, rem = divmod(int(total), int(parts))
    counts = np.full(parts, base, dtype=np.int64)
    counts[:rem] += 1
    return counts


def offsets(counts: np.ndarray) -> np.ndarray:
    """Start index of each part for ``counts`` (exclusive prefix sum), length ``len(counts)+1``."""
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def compute_cycles(spec: WaferSpec, c: Compute) -> int:
    """Cycles of a :class:`Compute` whose fields are scalars (the busiest PE's op in a closed
    form), through :func:`wse_sim.hardware.cost.vector_cycles` as the engines cost it."""
    return vector_cycles(
        spec,
        c.kind,
        c.dtype,
        int(c.elements),
        int(c.instructions),
        int(c.sram_read_bytes),
        int(c.sram_write_bytes),
    )
