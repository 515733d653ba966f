"""Closed-form cycles of the collective building blocks in :mod:`._collective_ops`.

Written against the DES timing contract (docs/engine.md) on an idle fabric with every PE ready at
the block's start. Notation: ``R`` ramp latency, ``H`` hop latency, ``O`` instruction overhead
(all cycles), ``n`` wavelets per message, ``L`` PEs on a line, ``p`` cycles per wavelet of a
streaming step (1 unless its vector instruction is slower than the link).
docs/kernels-collectives.md derives each formula.
"""

from __future__ import annotations

import numpy as np

from wse_sim.hardware.cost import message_cycles, vector_cycles
from wse_sim.hardware.spec import WaferSpec

from ._collective_ops import combine_bytes, ring_link_hops, tree_schedule
from ._common import ring_hops, ring_layout


def combine_cycles(spec: WaferSpec, kind: str, elements: int, dtype: str, store: bool) -> int:
    """Cycles of the one vector instruction a streaming step runs (as the ops module builds it)."""
    reads, writes = combine_bytes(elements, dtype, store)
    return vector_cycles(spec, kind, dtype, elements, 1, reads, writes)


def stream_interval(spec: WaferSpec, kind: str, elements: int, dtype: str, n: int) -> float:
    """``p``: cycles per wavelet of a stream whose instruction does ``elements`` ops on ``n``
    wavelets: the link rate (1) unless the vector unit is slower."""
    cyc = combine_cycles(spec, kind, elements, dtype, store=True)
    return max(1.0, (cyc - spec.pe.instruction_overhead_cycles) / max(n, 1))


def hop_cost(spec: WaferSpec) -> int:
    """``c = 2R + H + O``: what each PE of a streaming chain adds to the latency (cycles)."""
    f = spec.fabric
    return 2 * f.ramp_latency_cycles + f.hop_latency_cycles + spec.pe.instruction_overhead_cycles


def chain_cycles(spec: WaferSpec, length: int, n: int, p: float = 1.0) -> float:
    """Pipelined chain reduce over ``length`` PEs: ``(L - 1) * c + (n - 1) * p + 1``."""
    if length <= 1 or n <= 0:
        return 0.0
    return (length - 1) * hop_cost(spec) + (n - 1) * p + 1


def relay_cycles(spec: WaferSpec, length: int, n: int, p: float = 1.0) -> float:
    """Software relay from position 0 over ``length`` PEs (the last one only receives):
    ``(L - 1) * (2R + H) + (L - 2) * O + (n - 1) * p``."""
    if length <= 1 or n <= 0:
        return 0.0
    f = spec.fabric
    return (
        (length - 1) * (2 * f.ramp_latency_cycles + f.hop_latency_cycles)
        + (length - 2) * spec.pe.instruction_overhead_cycles
        + (n - 1) * p
    )


def tree_cycles(spec: WaferSpec, length: int, n: int, p: float = 1.0) -> float:
    """Binary-tree reduce over ``length`` PEs (:func:`tree_schedule`, ``ceil(log2 L)`` levels).

    A receiver streams a message whose sender is ``h`` hops away and became ready at ``t_s``:
    ``head = t_s + 2R + h H``, and it ends at ``max(head + n - 1, max(t_r, head) + O + (n - 1) p)
    + 1``. The result is the root's ready time (a recurrence over the levels; for a power of two
    every level costs ``2R + 2^k H + O + (n - 1) p + 1``)."""
    if length <= 1 or n <= 0:
        return 0.0
    f = spec.fabric
    o = spec.pe.instruction_overhead_cycles
    ready = np.zeros(length)
    for recv, send in tree_schedule(length):
        head = ready[send] + 2 * f.ramp_latency_cycles + (send - recv) * f.hop_latency_cycles
        start = np.maximum(ready[recv], head)
        ready[recv] = np.maximum(head + (n - 1), start + o + (n - 1) * p) + 1
    return float(ready[0])


def tree_receptions(length: int) -> np.ndarray:
    """Messages each position of a tree-reduced line receives (combines it performs)."""
    count = np.zeros(length, dtype=np.int64)
    for recv, _ in tree_schedule(length):
        count[recv] += 1
    return count


def tree_hops(length: int) -> int:
    """Links crossed by all messages of a tree reduce over one line (sum of hop counts)."""
    return int(sum(int((send - recv).sum()) for recv, send in tree_schedule(length)))


def multicast_cycles(spec: WaferSpec, hops: int, n: int) -> float:
    """Hardware multicast to receivers up to ``hops`` away: ``cost.message_cycles``."""
    if hops <= 0 or n <= 0:
        return 0.0
    return float(message_cycles(spec, hops, n))


def ring_edge_latencies(spec: WaferSpec, length: int) -> np.ndarray:
    """Per ring edge of the folded ring, the latency a step adds along it: ``max(O, 2R + h H)``
    (``h`` its hops; ``O`` when a PE's own send issue is the longer wait)."""
    f = spec.fabric
    order, _ = ring_layout(length, interleaved=True)
    hops = ring_hops(order)
    lat = 2 * f.ramp_latency_cycles + hops * f.hop_latency_cycles
    return np.maximum(lat, spec.pe.instruction_overhead_cycles).astype(float)


def ring_phase_cycles(spec: WaferSpec, length: int, m: int, p: float = 1.0) -> float:
    """A reduce-scatter or an allgather (see ``ring_phase``): ``L - 1`` steps of one chunk of
    ``m`` wavelets, every PE sending in the background and streaming the incoming chunk:

        (L - 1) (O + (m - 1) p + 1) + sum(e) - min(e),    e = max(O, 2R + h H) per ring edge

    A PE's step ends ``O + (m - 1) p + 1`` after the later of its own send issue (``O``) and
    the previous PE's head (``2R + h H`` after that PE's step began); the dependency walks the
    ring backwards one edge per step, so the ``L - 1`` steps cross every edge but one: the
    latency of a window of ``L - 1`` consecutive edges, the largest being all but the shortest
    edge (the folded ring's one-hop ends). Exact when the PEs start together."""
    if length <= 1 or m <= 0:
        return 0.0
    e = ring_edge_latencies(spec, length)
    per_step = spec.pe.instruction_overhead_cycles + (m - 1) * p + 1
    return float((length - 1) * per_step + e.sum() - e.min())


def ring_step_cycles(spec: WaferSpec, length: int, m: int, p: float = 1.0) -> float:
    """Mean cycles of one step of a ring phase: :func:`ring_phase_cycles` / ``(L - 1)``, about
    ``2R + 2H + O + (m - 1) p + 1`` (one transfer: every PE sends and receives at once)."""
    if length <= 1 or m <= 0:
        return 0.0
    return ring_phase_cycles(spec, length, m, p) / (length - 1)


def ring_link_wavelets(length: int, m: int) -> float:
    """Wavelets a ring phase puts on links: ``(L - 1)`` steps of ``m`` wavelets over every ring
    link (their hop counts summed)."""
    return float((length - 1) * m * ring_link_hops(length)) if length > 1 else 0.0
