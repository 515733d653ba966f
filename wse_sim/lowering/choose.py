"""Kernel, algorithm and tiling for one op on its region: the candidate with the fewest
closed-form cycles among those that fit a PE's SRAM.

Candidates are every algorithm of every kernel that can run the op (:mod:`.calls`); the gemm
algorithms are narrowed by ``--gemm``. A candidate that does not fit is cut into chunks along
the sizes in :data:`.calls.SPLITS` (the fewest chunks that fit), run one after the other. A PE's
need is ``resident + working set``:

* ``resident``: the stage's resident bytes per PE (:attr:`Stage.resident_bytes_per_pe`) minus
  the share of the op's own weights and state that one chunk's plan already counts;
* ``working set``: the chunk plan's ``sram_bytes_per_pe``, plus, under weight streaming, a
  prefetch buffer as large as the chunk's weights (the next weights arrive while it computes).

All plans are made on a mesh the size of the region with the region at the origin, so that
identical layers share one plan and one simulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from wse_sim.errors import ConfigError, PlanError
from wse_sim.graph.ops import OpSpec
from wse_sim.hardware.spec import WaferSpec
from wse_sim.kernels.base import Estimate, Kernel, Plan
from wse_sim.lowering.calls import SPLITS, KernelCall, chunk_counts, kernel_calls, split
from wse_sim.placement.fit import fit_error
from wse_sim.program.ir import Region

WEIGHT_SPLITS: frozenset[tuple[str, str]] = frozenset(
    {
        ("gemm", "n"),
        ("gemv", "m"),
        ("attention", "heads"),
        ("attention", "batch"),
        ("elementwise", "length"),
    }
)
"""Cuts that divide the op's weights or state among the chunks (a gemm cut along ``m`` does not)."""

REGION_LIMITS: dict[str, tuple[str, str]] = {
    "layernorm": ("cols", "rows"),
    "rmsnorm": ("cols", "rows"),
    "softmax": ("cols", "rows"),
}
"""Kernels that need data on every PE of their region: at most ``sizes[first]`` PEs wide and
``sizes[second]`` PEs high (the rest of the placed region idles during the call)."""


def call_region(kernel: str, sizes: dict[str, int], width: int, height: int) -> Region:
    """The part of a ``width x height`` region (at the origin) a call of ``kernel`` uses."""
    limits = REGION_LIMITS.get(kernel)
    if limits is not None:
        width = min(width, sizes.get(limits[0], width))
        height = min(height, sizes.get(limits[1], height))
    return Region(0, 0, width, height)


def kernels() -> dict[str, Kernel]:
    """The kernel registry with every kernel module imported."""
    from wse_sim.kernels.registry import KERNELS

    return KERNELS


def gemm_choices() -> tuple[str, ...]:
    """Values of ``--gemm``: ``auto`` (best closed form, gemv included) or a gemm algorithm."""
    gemm = kernels().get("gemm")
    return ("auto", *(gemm.algorithms if gemm is not None else ()))


def check_gemm(gemm: str) -> str:
    choices = gemm_choices()
    if gemm not in choices:
        raise ConfigError("gemm", gemm, f"use one of {', '.join(choices)}")
    return gemm


@dataclass(frozen=True)
class Choice:
    """How one op runs on its region.

    Attributes:
        kernel, algorithm: registry names.
        sizes, options, dtype: of one kernel call (one chunk).
        chunks: calls the op is cut into along its sizes (run one after the other).
        repeat: calls per chunk (2 for attention / norm backward, rows for a gemv matmul).
        plan: the plan on the region (made at the origin of a region-sized mesh).
        placed: width and height of the placed region (the plan may use part of it).
        estimate: the plan's closed form (one call).
        resident_bytes: bytes per PE kept by the stage besides this call's own data.
        working_bytes: the call's bytes per PE on its busiest PE (plan footprint, plus the
            prefetch buffer under weight streaming).
    """

    kernel: str
    algorithm: str
    sizes: dict[str, int]
    options: dict[str, Any]
    dtype: str
    chunks: int
    repeat: float
    plan: Plan
    placed: tuple[int, int]
    estimate: Estimate
    resident_bytes: float
    working_bytes: float

    @property
    def need_bytes(self) -> float:
        """Bytes per PE on the busiest PE while the op runs."""
        return self.resident_bytes + self.working_bytes

    @property
    def runs(self) -> float:
        """Kernel calls the op costs: ``chunks * repeat``."""
        return self.chunks * self.repeat

    @property
    def cycles(self) -> float:
        """Closed-form cycles of the whole op."""
        return self.estimate.cycles * self.runs

    def key(self) -> tuple:
        """What identifies one kernel call (the memo key, without the spec)."""
        p = self.plan
        return (
            self.kernel,
            self.algorithm,
            tuple(sorted(self.sizes.items())),
            tuple(sorted((k, repr(v)) for k, v in self.options.items())),
            self.dtype,
            p.region.width,
            p.region.height,
            self.placed,
        )


class Lowerer:
    """Chooses kernels for ops; remembers local specs and choices, so identical layers cost one
    search."""

    def __init__(self, spec: WaferSpec, gemm: str = "auto") -> None:
        self.spec = spec
        self.gemm = check_gemm(gemm)
        self._specs: dict[tuple[int, int], WaferSpec] = {}
        self._cache: dict[tuple, Choice] = {}

    def local_spec(self, width: int, height: int) -> WaferSpec:
        """The spec with a ``width x height`` mesh (plans are made at its origin)."""
        key = (width, height)
        if key not in self._specs:
            same = (self.spec.mesh.width, self.spec.mesh.height) == key
            self._specs[key] = self.spec if same else self.spec.with_mesh(width, height)
        return self._specs[key]

    def algorithms(self, call: KernelCall, kernel: Kernel) -> tuple[str, ...]:
        if call.kernel == "gemm" and self.gemm != "auto":
            return (self.gemm,)
        if call.kernel == "gemv" and self.gemm != "auto":
            return ()
        return tuple(kernel.algorithms)

    def choose(
        self,
        graph: nx.DiGraph,
        op: OpSpec,
        region: Region,
        resident_per_pe: float,
        weights_resident: bool,
        strategy: str,
    ) -> Choice:
        """The fastest fitting way to run ``op`` on ``region`` (see the module docstring).

        Raises:
            PlanError: one line naming the op, the bytes per PE it needs, what a PE has and
                what would fit.
            ConfigError: the op's kernel is not installed.
        """
        calls = kernel_calls(graph, op)
        key = (
            tuple(
                (
                    c.kernel,
                    tuple(sorted(c.sizes.items())),
                    repr(sorted(c.options.items())),
                    c.repeat,
                )
                for c in calls
            ),
            op.dtype,
            region.width,
            region.height,
            round(resident_per_pe, 3),
            weights_resident,
            op.weight_bytes,
            op.state_bytes,
        )
        if key in self._cache:
            return self._cache[key]
        local = self.local_spec(region.width, region.height)
        origin = Region(0, 0, region.width, region.height)
        best: Choice | None = None
        smallest: tuple[float, float] | None = None  # (resident, working) of the closest miss
        errors: list[str] = []
        for call in calls:
            kernel = kernels().get(call.kernel)
            if kernel is None:
                raise ConfigError(
                    "kernel", call.kernel, f"op {op.name} needs it but it is not installed"
                )
            for algo in self.algorithms(call, kernel):
                found = self._fit(
                    op, call, kernel, algo, local, origin, resident_per_pe, weights_resident, errors
                )
                if isinstance(found, tuple):
                    if smallest is None or sum(found) < sum(smallest):
                        smallest = found
                    continue
                if found is not None and (best is None or found.cycles < best.cycles):
                    best = found
        if best is None:
            if smallest is not None:
                total = resident_per_pe * region.num_pes
                raise fit_error(strategy, op.name, region, self.spec, *smallest, total)
            detail = errors[0] if errors else "no algorithm can run it"
            raise PlanError(f"placement {strategy}: op {op.name}: {detail}")
        self._cache[key] = best
        return best

    def _fit(
        self,
        op: OpSpec,
        call: KernelCall,
        kernel: Kernel,
        algo: str,
        local: WaferSpec,
        origin: Region,
        resident_per_pe: float,
        weights_resident: bool,
        errors: list[str],
    ) -> Choice | tuple[float, float] | None:
        """The fewest chunks of ``call`` with ``algo`` that fit; else ``(resident, working)``
        of the smallest need seen, or ``None`` when the kernel refused every plan."""
        cap = local.pe.data_sram_bytes
        closest: tuple[float, float] | None = None
        tries: list[tuple[str | None, int, dict[str, int], int]] = [(None, 1, call.sizes, 1)]
        for name in SPLITS.get(call.kernel, ()):
            total = call.sizes.get(name, 0)
            for c in chunk_counts(total)[1:]:
                cut = split(call, name, c)
                if cut is not None:
                    tries.append((name, c, cut[0], cut[1]))
        for axis, _, sizes, chunks in tries:
            region = call_region(call.kernel, sizes, origin.width, origin.height)
            own = op.state_bytes + (op.weight_bytes if weights_resident else 0.0)
            divides = axis is None or (call.kernel, axis) in WEIGHT_SPLITS
            share = own / (chunks if divides else 1) / origin.num_pes
            resident = max(0.0, resident_per_pe - share)
            streamed = (
                min(op.weight_bytes, op.output_bytes) if op.kind == "embedding" else op.weight_bytes
            )
            prefetch = 0.0
            if not weights_resident and streamed:
                prefetch = streamed / (chunks if divides else 1) / origin.num_pes
            options = dict(call.options)
            if kernel.accepts_sram_budget:  # ask for a plan that fits beside what stays
                options.setdefault("sram_budget", max(1, int(cap - resident - prefetch)))
            try:
                plan = kernel.plan(local, region, sizes, op.dtype, algo, **options)
            except (PlanError, ConfigError) as exc:  # e.g. a region too small for the algorithm
                errors.append(str(exc))
                continue
            working = float(plan.sram_bytes_per_pe) + prefetch  # + the prefetch buffer
            if resident + working > cap:
                if closest is None or resident + working < sum(closest):
                    closest = (resident, working)
                continue
            est = kernel.estimate(plan, local)
            return Choice(
                kernel=call.kernel,
                algorithm=plan.algorithm,
                sizes=dict(sizes),
                options=dict(plan.options),
                dtype=op.dtype,
                chunks=chunks,
                repeat=call.repeat,
                plan=plan,
                placed=(origin.width, origin.height),
                estimate=est,
                resident_bytes=resident,
                working_bytes=working,
            )
        return closest
