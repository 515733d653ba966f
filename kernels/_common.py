"""Helpers for kernel authors: tiles, the cost of a GEMM tile, padding, SRAM fit, ring shifts.

Everything that turns work into cycles still goes through :mod:`wse_sim.hardware.cost`; this
module only decides *how much* work a tile is (elements, instructions, SRAM traffic) so that the
program (DES) and the closed form (analytic) charge exactly the same numbers.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware.cost import dtype_bytes, wavelets
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Compute, ComputeFn, Dest, Memory, Op, Recv, Region, Send

from ._layout import check_dtype, check_region, check_sizes, compute_cycles
from .base import Kernel, Plan

TOLERANCES: dict[str, tuple[float, float]] = {
    "fp16": (2e-2, 2e-2),
    "bf16": (2e-2, 2e-2),
    "fp32": (1e-4, 1e-4),
}
"""``(rtol, atol)`` for functional checks; ``atol`` is relative to ``max(1, max |reference|)``."""


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive integers."""
    return -(-int(a) // int(b))


def subregion(region: Region, width: int, height: int) -> Region:
    """The ``width`` x ``height`` rectangle at the north-west corner of ``region``."""
    return Region(region.x, region.y, int(width), int(height))


def tensor_wavelets(spec: WaferSpec, dtype: str, elements: int) -> int:
    """Wavelets that carry ``elements`` values of ``dtype`` (rounded up to whole wavelets)."""
    return wavelets(spec, int(elements) * dtype_bytes(dtype))


def matmul_instructions(rows: int, cols: int, depth: int) -> int:
    """Vector instructions of ``C[rows, cols] += A[rows, depth] @ B[depth, cols]``.

    One FMAC instruction per (``depth`` index, shorter output side): the vector runs along the
    longer of ``rows`` and ``cols`` (a scalar of one operand times a row or column of the other).
    """
    if rows <= 0 or cols <= 0 or depth <= 0:
        return 0
    return int(depth) * min(int(rows), int(cols))


def matmul_compute(
    dtype: str,
    rows: int,
    cols: int,
    depth: int,
    mask: np.ndarray | None = None,
    fn: ComputeFn | None = None,
) -> Compute:
    """The :class:`Compute` op of one GEMM tile update (see :func:`matmul_instructions`).

    SRAM traffic per FMAC element: read the accumulator and one operand, write the accumulator.
    """
    b = dtype_bytes(dtype)
    e = int(rows) * int(cols) * int(depth)
    return Compute(
        kind="fmac",
        elements=e,
        dtype=dtype,
        instructions=matmul_instructions(rows, cols, depth),
        sram_read_bytes=2 * b * e,
        sram_write_bytes=b * e,
        mask=mask,
        fn=fn,
    )


def matmul_cycles(spec: WaferSpec, dtype: str, rows: int, cols: int, depth: int) -> int:
    """Cycles of :func:`matmul_compute` (via :func:`wse_sim.hardware.cost.vector_cycles`)."""
    return compute_cycles(spec, matmul_compute(dtype, rows, cols, depth))


def bookkeeping(fn: ComputeFn, mask: np.ndarray | None = None) -> Compute:
    """A zero-cycle :class:`Compute` that only runs ``fn`` in functional mode (pointer swaps)."""
    return Compute(kind="copy", elements=0, instructions=0, mask=mask, fn=fn)


def tolerance(dtype: str) -> tuple[float, float]:
    """``(rtol, atol)`` used by functional checks for ``dtype``."""
    dtype_bytes(dtype)
    return TOLERANCES.get(dtype, TOLERANCES["fp32"])


def allclose(out: np.ndarray, ref: np.ndarray, dtype: str) -> bool:
    """Whether ``out`` matches ``ref`` within the tolerances of ``dtype``."""
    rtol, atol = tolerance(dtype)
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if out.shape != ref.shape:
        return False
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    return bool(np.allclose(out, ref, rtol=rtol, atol=atol * scale))


def pad2(a: np.ndarray, rows: int, cols: int, dtype: Any) -> np.ndarray:
    """``a`` zero-padded to ``rows`` x ``cols`` and cast to ``dtype``."""
    out = np.zeros((rows, cols), dtype=dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


# -- SRAM fit ---------------------------------------------------------------------------------
def smallest_fit(
    bytes_for: Callable[[int, int], int], capacity: int, aspect: float = 1.0, limit: int = 1 << 14
) -> tuple[int, int] | None:
    """Smallest ``(width, height)`` with ``height ~= aspect * width`` whose per-PE bytes fit.

    ``bytes_for(width, height)`` is the per-PE footprint on a region of that size; it must not
    grow with the region. Searches widths up to ``limit``; ``None`` when none fits.
    """

    def size(w: int) -> tuple[int, int]:
        return w, max(1, round(w * aspect))

    if bytes_for(*size(limit)) > capacity:
        return None
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        if bytes_for(*size(mid)) <= capacity:
            hi = mid
        else:
            lo = mid + 1
    return size(lo)


def require_fit(
    what: str,
    spec: WaferSpec,
    region: Region,
    need: int,
    bytes_for: Callable[[int, int], int],
    square: bool = False,
) -> None:
    """Raise a one-line :class:`PlanError` when ``need`` bytes per PE exceed the data SRAM.

    The message names the kernel, the bytes needed and available, and the smallest region of
    the same shape (square when ``square``) for which ``bytes_for`` fits.
    """
    cap = spec.pe.data_sram_bytes
    if need <= cap:
        return
    aspect = 1.0 if square else region.height / region.width
    fit = smallest_fit(bytes_for, cap, aspect)
    if fit is None:
        hint = "no region up to 16384 PEs wide fits; use smaller sizes"
    else:
        w, h = fit
        where = "" if w <= spec.mesh.width and h <= spec.mesh.height else " (larger than the mesh)"
        hint = f"smallest region that fits: {w}x{h} PEs{where}"
    raise PlanError(
        f"{what}: needs {need} bytes per PE but a PE has {cap} bytes for data "
        f"(pe.data_sram_bytes) on a {region.width}x{region.height} region; {hint}"
    )


# -- ring exchanges ---------------------------------------------------------------------------
def ring_layout(p: int, interleaved: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(ring, pos)`` for ``p`` PEs on a line: ``ring[i]`` is the offset of ring position ``i``
    and ``pos[x]`` the ring position of offset ``x``.

    Plain: ``0, 1, ..., p-1`` (the wrap-around link spans ``p - 1`` hops). Interleaved (MeshGEMM):
    ``0, 2, 4, ..., then the odd offsets downwards ..., 3, 1``, so neighbours on the ring are at
    most 2 hops apart, the wrap-around included.
    """
    if interleaved:
        ring = np.concatenate((np.arange(0, p, 2), np.arange(p - 1 - (p % 2 == 1), 0, -2)))
    else:
        ring = np.arange(p)
    pos = np.empty(p, dtype=np.int64)
    pos[ring] = np.arange(p)
    return ring.astype(np.int64), pos


def ring_hops(ring: np.ndarray) -> np.ndarray:
    """Hops of each ring transfer: position ``i`` to position ``i - 1`` (cyclic)."""
    return np.abs(ring - np.roll(ring, 1))


def _ring_fields(
    axis: str, shape: tuple[int, int], ring: np.ndarray, pos: np.ndarray
) -> tuple[Dest, tuple[Any, Any]]:
    """Destination (previous ring position) and source (next position) of a one-position
    shift back along ``axis``, as per-PE broadcast views (O(p) memory however large the grid)."""
    h, w = shape
    p = len(ring)
    idx = np.arange(p)
    to = ring[(idx - 1) % p] - ring  # offset of the receiver, per ring position
    frm = ring[(idx + 1) % p] - ring  # offset of the sender
    line = (1, w) if axis == "x" else (h, 1)
    dto = to[pos].reshape(line)
    dfrom = frm[pos].reshape(line)
    if axis == "x":
        return Dest.to(dto, 0), (dfrom, 0)
    return Dest.to(0, dto), (0, dfrom)


def _participants(participate: np.ndarray | None) -> np.ndarray | None:
    """The mask of the PEs that take part in a ring shift (``None``: all of them)."""
    return None if participate is None else np.asarray(participate, bool)


def ring_send(
    axis: str,
    shape: tuple[int, int],
    ring: np.ndarray,
    pos: np.ndarray,
    n: int,
    color: int,
    buffer: str,
    participate: np.ndarray | None = None,
) -> Send:
    """The send half of a one-position ring shift: a *background* send of ``buffer`` (``n``
    wavelets) to the previous ring position along ``axis``. It costs the compute engine one
    instruction issue (``O`` cycles); the wavelets leave through the output ramp while the
    engine goes on (a computation on ``buffer``, which it only reads, or the receive)."""
    dest, _ = _ring_fields(axis, shape, ring, pos)
    mask = _participants(participate)
    return Send(color=color, wavelets=n, dest=dest, mask=mask, buffer=buffer, background=True)


def ring_recv(
    axis: str,
    shape: tuple[int, int],
    ring: np.ndarray,
    pos: np.ndarray,
    n: int,
    color: int,
    buffer: str,
    participate: np.ndarray | None = None,
) -> list[Op]:
    """The receive half of a one-position ring shift: take the next position's tile into the
    receive buffer ``buffer + "_in"``, then a zero-cycle bookkeeping op makes it the new
    ``buffer`` (a pointer swap: the two buffers alternate)."""
    _, src = _ring_fields(axis, shape, ring, pos)
    mask = _participants(participate)
    incoming = buffer + "_in"

    def swap(mem: Memory, x: int, y: int) -> None:
        mem[buffer] = mem.pop(incoming)

    return [
        Recv(color=color, wavelets=n, src=src, mask=mask, buffer=incoming),
        bookkeeping(swap, mask=mask),
    ]


def ring_exchange(
    axis: str,
    shape: tuple[int, int],
    ring: np.ndarray,
    pos: np.ndarray,
    n: int,
    color: int,
    buffer: str,
    participate: np.ndarray | None = None,
) -> list[Op]:
    """Ops that shift every PE's ``buffer`` one ring position back along ``axis`` (cyclic).

    The PE at ring position ``i`` sends ``n`` wavelets to position ``i - 1`` in the background
    (:func:`ring_send`) and receives from ``i + 1`` (:func:`ring_recv`) while its own tile
    leaves: every PE sends first and nothing deadlocks, since a background send does not hold
    the compute engine. Each PE spends ``O`` cycles issuing and about ``n`` receiving.
    """
    return [ring_send(axis, shape, ring, pos, n, color, buffer, participate)] + ring_recv(
        axis, shape, ring, pos, n, color, buffer, participate
    )


def lap_hops(ring: np.ndarray) -> float:
    """Mean hops of a ring transfer, ``sum(ring hops) / p``: a chain of shifts advances one ring
    position per shift, so over a lap it pays each link once (docs/kernels.md)."""
    p = len(ring)
    return float(ring_hops(ring).sum()) / p if p > 1 else 0.0


def exchange_cycles(spec: WaferSpec, n: int, ring: np.ndarray) -> float:
    """Closed form of one :func:`ring_exchange` of ``n`` wavelets within a sequence of
    exchanges (docs/kernels.md, "ring shift"):

        n - 1 + max(O, 2R + H * sum(ring hops) / p)

    The receive starts ``O`` cycles after the exchange (the send's issue) or when the
    neighbour's head arrives, ``2R + h H`` after the neighbour started, and ends ``n - 1``
    later. The neighbour's start depends on its own receive, so the chain of dependencies walks
    the ring backwards one position per exchange: in a sequence it pays the mean hop count, a
    long wrap-around link once per lap.
    """
    return shift_pair_cycles(spec, n, 0, 0.0, lap_hops(ring)) if n > 0 and len(ring) > 1 else 0.0


def shift_pair_cycles(spec: WaferSpec, na: int, nb: int, busy: float, hops: float) -> float:
    """Cycles of one step of background ring shifts around a computation, every PE in step:
    send A and B in the background (``2 O``; the ramp sends B after A), compute ``busy``
    cycles, receive A (``na`` wavelets) then B (``nb``; 0 for a single shift):

        A ends at   max(2O + busy, 2R + h H) + na - 1
        B ends at   max(A end, max(O, na) + 2R + h H) + nb - 1

    ``h`` is the hops of the incoming transfer; in a sequence of steps pass the lap mean
    (:func:`lap_hops`). With one shift (``nb = 0``) the sends issue once: ``O`` instead of
    ``2 O``. When ``2O + busy`` covers the latency the step is ``2O + busy + na + nb - 2``.
    """
    f = spec.fabric
    o = spec.pe.instruction_overhead_cycles
    lat = 2 * f.ramp_latency_cycles + hops * f.hop_latency_cycles
    issue = o if nb <= 0 else 2 * o
    a_end = max(issue + busy, lat) + na - 1
    if nb <= 0:
        return float(a_end)
    return float(max(a_end, max(o, na) + lat) + nb - 1)


def skew_cycles(spec: WaferSpec, na: int, nb: int, ring: np.ndarray) -> float:
    """Closed form of the ``p - 1`` skew rounds of one-position shifts of A (``na`` wavelets)
    and B (``nb``), where round ``r`` moves only the lines with index ``>= r``: the busiest PE
    shifts both in every round, each round a :func:`shift_pair_cycles` with nothing to
    compute in between (the latency is exposed, at the lap mean of the ring's hops)."""
    p = len(ring)
    if p <= 1:
        return 0.0
    return float((p - 1) * shift_pair_cycles(spec, na, nb, 0.0, lap_hops(ring)))


def bool_option(name: str, value: Any) -> bool:
    """Parse a boolean option (``True``/``False``, ``1``/``0``, ``yes``/``no``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, value, "use true or false")


def log_ceil(p: int, k: int) -> int:
    """Levels of a ``k``-ary tree over ``p`` leaves: smallest ``L`` with ``k**L >= p``."""
    levels, span = 0, 1
    while span < p:
        span *= k
        levels += 1
    return levels


# -- kernel plans -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanRequest:
    """The arguments of :meth:`Kernel.plan` once checked (see :class:`CheckedKernel`).

    Attributes:
        spec: the hardware.
        region: the PEs asked for (inside the mesh).
        sizes: problem sizes by name, whole numbers >= 1 (the kernel's ``size_names``).
        dtype: element type; ``dtype_bytes`` is its size (bytes).
        algorithm: the registry name of the algorithm chosen.
        options: the options as :meth:`CheckedKernel.check_choice` returned them.
    """

    spec: WaferSpec
    region: Region
    sizes: dict[str, int]
    dtype: str
    dtype_bytes: int
    algorithm: str
    options: dict[str, Any]


class CheckedKernel(Kernel):
    """A kernel whose :meth:`plan` checks its arguments in one order, the same for every kernel:
    algorithm and options (:meth:`check_choice`, in the kernel's own order), then sizes, dtype
    and region; :meth:`make_plan` then tiles the checked request."""

    def plan(
        self,
        spec: WaferSpec,
        region: Region,
        sizes: dict[str, int],
        dtype: str = "fp16",
        algorithm: str | None = None,
        **options: Any,
    ) -> Plan:
        algo, opts = self.check_choice(algorithm, options)
        checked = check_sizes(self.name, sizes, self.size_names)
        nbytes = check_dtype(dtype)
        check_region(spec, region)
        return self.make_plan(PlanRequest(spec, region, checked, dtype, nbytes, algo, opts))

    def plan_of(
        self,
        req: PlanRequest,
        tiling: dict[str, Any],
        sram_bytes_per_pe: int,
        flops: float,
        options: dict[str, Any],
    ) -> Plan:
        """The :class:`Plan` of ``req`` (kernel, algorithm, region, dtype and sizes as checked)
        with its ``tiling``, busiest PE's footprint (bytes), ``flops`` (FLOPs) and options."""
        return Plan(
            kernel=self.name,
            algorithm=req.algorithm,
            region=req.region,
            dtype=req.dtype,
            sizes=dict(req.sizes),
            tiling=tiling,
            sram_bytes_per_pe=sram_bytes_per_pe,
            flops=flops,
            options=options,
        )

    @abstractmethod
    def check_choice(
        self, algorithm: str | None, options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """``(algorithm, options)`` checked: the registry name and the options to plan with."""

    @abstractmethod
    def make_plan(self, req: PlanRequest) -> Plan:
        """The plan of a checked request; raise :class:`PlanError` when it cannot fit."""


__all__ = [
    "allclose",
    "bookkeeping",
    "ceil_div",
    "CheckedKernel",
    "exchange_cycles",
    "lap_hops",
    "log_ceil",
    "bool_option",
    "matmul_compute",
    "matmul_cycles",
    "matmul_instructions",
    "skew_cycles",
    "pad2",
    "PlanRequest",
    "require_fit",
    "ring_exchange",
    "ring_recv",
    "ring_send",
    "shift_pair_cycles",
    "ring_hops",
    "ring_layout",
    "smallest_fit",
    "subregion",
    "tensor_wavelets",
    "tolerance",
]
