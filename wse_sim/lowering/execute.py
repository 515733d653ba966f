"""Execute kernel calls and transfers on an engine, memoised: identical calls run once.

A call is identified by (kernel, algorithm, sizes, options, dtype, region width and height,
spec): plans are made at the origin of a region-sized mesh (:mod:`.choose`), so the same layer
at another offset, or another identical layer, reuses the run; its arrays are placed at the
op's region offset by :mod:`.assemble`.

* ``des``: :func:`wse_sim.engine.des.run_program` on the region-sized mesh; arrays are the
  engine's (busy cycles, FLOPs, SRAM peak, link wavelets per PE).
* ``analytic``: the kernel's :class:`~wse_sim.kernels.base.Estimate`: per-PE FLOPs from
  ``Estimate.pe_flops``, busy cycles = FLOPs / peak FLOPs per cycle, SRAM from the kernel's
  ``sram_map`` (else the busiest PE's footprint on every PE of the plan), and the estimate's
  ``link_wavelets`` spread evenly over the existing links of the plan's region.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from wse_sim.engine.result import Span
from wse_sim.errors import ConfigError
from wse_sim.hardware.spec import WaferSpec
from wse_sim.lowering.choose import Choice, kernels
from wse_sim.lowering.transfer import Lanes, link_wavelets, transfer_cycles
from wse_sim.lowering.transfer import program as transfer_program
from wse_sim.result.metrics import existing_links_mask

ENGINE_NAMES: tuple[str, ...] = ("des", "analytic")

MEMO_SIZE = 256
"""DES runs kept in memory across model runs (least recently used are dropped)."""


@dataclass
class CallRun:
    """One kernel call (or transfer) on a region-sized mesh at the origin.

    Attributes:
        cycles: cycles of one call.
        breakdown: named parts of ``cycles`` (the closed form's, for both engines).
        pe_flops, pe_busy, sram: ``(h, w)`` arrays: FLOPs, busy cycles, peak SRAM bytes per PE
            (``None`` until asked for with :meth:`Executor.full`, for analytic runs).
        links: ``(4, h, w)`` wavelets per directed link (likewise).
        spans: per-PE busy intervals (DES with spans recorded), times from the call's start.
    """

    cycles: float
    breakdown: dict[str, float]
    pe_flops: np.ndarray | None = None
    pe_busy: np.ndarray | None = None
    sram: np.ndarray | None = None
    links: np.ndarray | None = None
    spans: list[Span] | None = None


_MEMO: OrderedDict[tuple, CallRun] = OrderedDict()


def _remember(key: tuple, run: CallRun) -> CallRun:
    _MEMO[key] = run
    _MEMO.move_to_end(key)
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)
    return run


def clear_memo() -> None:
    """Forget every memoised DES run."""
    _MEMO.clear()


def _embed(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape)
    h, w = values.shape[-2:]
    out[:h, :w] = values
    return out


def analytic_run(choice: Choice, local: WaferSpec) -> CallRun:
    """Arrays of one call from its closed form, shaped like ``local``'s mesh (the placed
    region at the origin; the plan may use only part of it)."""
    plan, est = choice.plan, choice.estimate
    shape = (local.mesh.height, local.mesh.width)
    flops = np.asarray(est.pe_flops, dtype=float)
    sram_map = getattr(kernels()[choice.kernel], "sram_map", None)
    if sram_map is not None:
        sram = np.asarray(sram_map(plan), dtype=float)
    else:
        sram = np.full(plan.region.shape, float(plan.sram_bytes_per_pe))
    mask = existing_links_mask(*plan.region.shape)
    n_links = int(mask.sum())
    links = mask * (est.link_wavelets / n_links if n_links else 0.0)
    return CallRun(
        cycles=float(est.cycles),
        breakdown={k: float(v) for k, v in est.breakdown.items()},
        pe_flops=_embed(flops, shape),
        pe_busy=_embed(flops / local.peak_flops_per_cycle(choice.dtype), shape),
        sram=_embed(sram, shape),
        links=np.stack([_embed(a, shape) for a in links]),
    )


class Executor:
    """Runs calls on one engine for one spec; DES runs are memoised (module-wide)."""

    def __init__(self, spec: WaferSpec, engine: str, record_spans: bool = False) -> None:
        if engine not in ENGINE_NAMES:
            raise ConfigError("engine", engine, f"use one of {', '.join(ENGINE_NAMES)}")
        self.spec = spec
        self.engine = engine
        self.record_spans = record_spans and engine == "des"
        self.simulations = 0
        """DES simulations this executor ran (memo misses)."""

    def _key(self, key: tuple) -> tuple:
        return (key, self.spec)

    def cached(self, choice: Choice) -> bool:
        """Whether the call's DES run is already memoised (or the engine needs none)."""
        if self.engine != "des":
            return True
        run = _MEMO.get(self._key(choice.key()))
        return run is not None and (run.spans is not None or not self.record_spans)

    def call(self, choice: Choice, local: WaferSpec) -> CallRun:
        """One call of ``choice`` (planned on ``local``, the region-sized spec); analytic runs
        carry no arrays (see :meth:`full`)."""
        if self.engine == "analytic":
            est = choice.estimate
            return CallRun(float(est.cycles), {k: float(v) for k, v in est.breakdown.items()})
        key = self._key(choice.key())
        if self.cached(choice):
            _MEMO.move_to_end(key)
            return _MEMO[key]
        from wse_sim.engine.des import run_program

        kernel = kernels()[choice.kernel]
        result = run_program(
            kernel.program(choice.plan, local), local, record_spans=self.record_spans
        )
        self.simulations += 1
        est = choice.estimate
        return _remember(
            key,
            CallRun(
                cycles=float(result.cycles),
                breakdown={k: float(v) for k, v in est.breakdown.items()},
                pe_flops=result.pe_flops,
                pe_busy=result.pe_busy_cycles,
                sram=result.pe_sram_peak_bytes,
                links=result.link_wavelets,
                spans=result.spans,
            ),
        )

    def full(self, choice: Choice, local: WaferSpec) -> CallRun:
        """:meth:`call` with its arrays (computed afresh for analytic runs: they can be big)."""
        if self.engine == "analytic":
            return analytic_run(choice, local)
        return self.call(choice, local)

    def transfer(self, lane: Lanes) -> CallRun:
        """One transfer (arrays shaped like the lanes' bounding box)."""
        shape = (lane.box.height, lane.box.width)
        if self.engine == "analytic":
            cycles = transfer_cycles(self.spec, lane)
            zeros = np.zeros(shape)
            return CallRun(
                cycles, {"communication": cycles}, zeros, zeros, zeros, link_wavelets(lane)
            )
        key = self._key(("transfer", *lane.key()))
        run = _MEMO.get(key)
        if run is not None and (run.spans is not None or not self.record_spans):
            return run
        from wse_sim.engine.des import run_program

        local = self.spec.with_mesh(lane.box.width, lane.box.height)
        result = run_program(transfer_program(lane), local, record_spans=self.record_spans)
        self.simulations += 1
        return _remember(
            key,
            CallRun(
                cycles=float(result.cycles),
                breakdown={"communication": float(result.cycles)},
                pe_flops=result.pe_flops,
                pe_busy=result.pe_busy_cycles,
                sram=result.pe_sram_peak_bytes,
                links=result.link_wavelets,
                spans=result.spans,
            ),
        )
