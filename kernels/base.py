"""What every kernel provides, and the registry that names them.

A kernel is written once: a :class:`Plan` (tiling, layout, per-PE SRAM footprint), a program in
the engine-independent IR (:mod:`wse_sim.program`), a numpy reference and a closed-form cycle
estimate (the ``analytic`` engine). Any engine runs any kernel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Program, Region


@dataclass(frozen=True)
class Plan:
    """How a kernel instance maps onto a region.

    Attributes:
        kernel, algorithm: registry names.
        region: the PEs it runs on.
        dtype: element type (``fp16``, ``bf16`` or ``fp32``).
        sizes: problem sizes by name (for gemm ``m``, ``n``, ``k``; see each kernel).
        tiling: per-PE tile sizes and any other layout choice, by name.
        sram_bytes_per_pe: data footprint on the busiest PE (bytes).
        flops: FLOPs the kernel executes (the graph's count for the same op).
        options: algorithm options (e.g. ``{"op": "gelu"}``, ``{"causal": True}``).
    """

    kernel: str
    algorithm: str
    region: Region
    dtype: str
    sizes: dict[str, int]
    tiling: dict[str, Any]
    sram_bytes_per_pe: int
    flops: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Estimate:
    """A closed-form cost.

    Attributes:
        cycles: total cycles of the kernel on its region.
        breakdown: named parts of ``cycles`` (e.g. ``compute``, ``communication``, ``latency``).
        link_wavelets: wavelets carried over all links in total (for link utilization).
        pe_flops: FLOPs per PE, array shaped ``region.shape`` (for compute utilization).
    """

    cycles: float
    breakdown: dict[str, float]
    link_wavelets: float
    pe_flops: np.ndarray


class Kernel(ABC):
    """Base class of every kernel in the library."""

    name: str = ""
    description: str = ""
    algorithms: tuple[str, ...] = ("default",)
    size_names: tuple[str, ...] = ()
    """Names of the sizes this kernel takes (CLI flags ``--NAME``)."""
    accepts_sram_budget: bool = False
    """Whether :meth:`plan` takes an ``sram_budget`` option: the most data bytes per PE its plan
    may use, so that a caller with resident data (weights) can ask for a plan that fits beside
    it instead of the fastest plan."""

    @property
    def default_algorithm(self) -> str:
        return self.algorithms[0]

    @abstractmethod
    def plan(
        self,
        spec: WaferSpec,
        region: Region,
        sizes: dict[str, int],
        dtype: str = "fp16",
        algorithm: str | None = None,
        **options: Any,
    ) -> Plan:
        """Choose the tiling; raise :class:`wse_sim.errors.PlanError` when it cannot fit."""

    @abstractmethod
    def program(
        self, plan: Plan, spec: WaferSpec, inputs: dict[str, np.ndarray] | None = None
    ) -> Program:
        """The IR program. With ``inputs`` it is functional (moves real data)."""

    @abstractmethod
    def estimate(self, plan: Plan, spec: WaferSpec) -> Estimate:
        """Closed-form cycles; formula documented in docs/kernels.md."""

    @abstractmethod
    def reference(self, plan: Plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The numpy result the functional program must reproduce."""

    @abstractmethod
    def random_inputs(self, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random inputs of the right shapes for ``--check``."""


KERNELS: dict[str, Kernel] = {}


def register(kernel_cls: type[Kernel]) -> type[Kernel]:
    """Class decorator: add one instance to :data:`KERNELS` under its ``name``."""
    instance = kernel_cls()
    KERNELS[instance.name] = instance
    return kernel_cls
