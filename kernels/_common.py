"""Helpers for kernel authors: tiles, the cost of a GEMM tile, padding, SRAM fit, ring exchanges.

Everything that turns work into cycles still goes through :mod:`wse_sim.hardware.cost`; this
module only decides *how much* work a tile is (elements, instructions, SRAM traffic) so that the
program (DES) and the closed form (analytic) charge exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wse_sim.errors import ConfigError, PlanError
from wse_sim.hardware.cost import dtype_bytes, vector_cycles, wavelets
from wse_sim.hardware.spec import WaferSpec
from wse_sim.program.ir import Compute, ComputeFn, Dest, Memory, Op, Recv, Region, Send

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
    c = matmul_compute(dtype, rows, cols, depth)
    return vector_cycles(
        spec,
        c.kind,
        dtype,
        int(c.elements),
        int(c.instructions),
        int(c.sram_read_bytes),
        int(c.sram_write_bytes),
    )


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

    The PE at ring position ``i`` sends ``n`` wavelets to position ``i - 1`` and receives from
    ``i + 1``. A compute engine runs one op at a time and a message longer than the buffers on
    its path waits for its receiver, so a ring in which everybody sends first would deadlock.
    Positions alternate roles: even positions send then receive, odd ones receive then send (on
    an odd ring the last position is a second sender). Each PE spends about ``2n`` cycles.

    Functional mode: the incoming tile lands in ``buffer + "_in"`` and a zero-cycle bookkeeping
    op makes it the new ``buffer``.
    """
    h, w = shape
    p = len(ring)
    idx = np.arange(p)
    to = ring[(idx - 1) % p] - ring  # offset of the receiver, per ring position
    frm = ring[(idx + 1) % p] - ring  # offset of the sender
    first = idx % 2 == 0
    line = (1, w) if axis == "x" else (h, 1)
    dto = to[pos].reshape(line)
    dfrom = frm[pos].reshape(line)
    if axis == "x":
        dest = Dest.to(dto, 0)
        src: tuple[Any, Any] = (dfrom, 0)
    else:
        dest = Dest.to(0, dto)
        src = (0, dfrom)
    # Broadcast views keep the masks O(p) in memory however large the grid.
    s_mask = np.broadcast_to(first[pos].reshape(line), shape)
    r_mask = np.broadcast_to(~first[pos].reshape(line), shape)
    part = None
    if participate is not None:
        part = np.asarray(participate, bool)
        s_mask = part & s_mask
        r_mask = part & r_mask
    incoming = buffer + "_in"

    def swap(mem: Memory, x: int, y: int) -> None:
        mem[buffer] = mem.pop(incoming)

    return [
        Send(color=color, wavelets=n, dest=dest, mask=s_mask, buffer=buffer),
        Recv(color=color, wavelets=n, src=src, mask=r_mask, buffer=incoming),
        Send(color=color, wavelets=n, dest=dest, mask=r_mask, buffer=buffer),
        Recv(color=color, wavelets=n, src=src, mask=s_mask, buffer=incoming),
        bookkeeping(swap, mask=part),
    ]


def exchange_cycles(spec: WaferSpec, n: int, ring: np.ndarray) -> float:
    """Closed form of one :func:`ring_exchange` of ``n`` wavelets within a sequence of
    exchanges (docs/kernels.md, "ring exchange"):

        2n + 4R - 2 + H * 2 * sum(ring hops) / p

    Each PE sends ``n`` and receives ``n`` wavelets, one op at a time. The critical chain is
    sender -> receiver -> sender (a receiver injects right after its own receive ends), two
    transfers long; along a sequence of exchanges it advances two ring positions each time, so
    on average it crosses ``2 * sum(hops) / p`` hops: a long wrap-around link is paid once per
    lap, not once per exchange. (A single exchange on an odd ring costs up to ``3n``: two
    senders are neighbours; in a sequence the delay is absorbed.)
    """
    p = len(ring)
    if p <= 1 or n <= 0:
        return 0.0
    f = spec.fabric
    hops = ring_hops(ring)
    latency = 4 * f.ramp_latency_cycles - 2 + f.hop_latency_cycles * 2.0 * float(hops.sum()) / p
    return float(2 * n + latency)


def skew_cycles(spec: WaferSpec, n: int, ring: np.ndarray) -> float:
    """Closed form of the ``p - 1`` skew rounds of one-position shifts of ``n`` wavelets, where
    round ``r`` moves only the lines with index ``>= r``.

    PEs that sit a round out run ahead, so the busiest PE (it shifts in every round) finds its
    partners' data waiting: it pays its own compute-engine time per round (``2n``) and no
    chain latency (docs/kernels.md). ``spec`` is unused; kept for symmetry with
    :func:`exchange_cycles`.
    """
    p = len(ring)
    if p <= 1 or n <= 0:
        return 0.0
    return float((p - 1) * 2 * n)


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


__all__ = [
    "allclose",
    "bookkeeping",
    "ceil_div",
    "exchange_cycles",
    "log_ceil",
    "bool_option",
    "matmul_compute",
    "matmul_cycles",
    "matmul_instructions",
    "skew_cycles",
    "pad2",
    "require_fit",
    "ring_exchange",
    "ring_hops",
    "ring_layout",
    "smallest_fit",
    "subregion",
    "tensor_wavelets",
    "tolerance",
]
