"""The default point function: one model run through ``wse_sim.api.run``.

A point's plain keys (``model``, ``mesh``, ``placement``, ``mode``, ``batch``, ``seq``,
``engine``, ...) are passed as keyword arguments; dotted keys (``fabric.hop_latency_cycles``)
are hardware overrides and are passed together as ``sets=["fabric.hop_latency_cycles=2", ...]``,
the same form as the CLI's ``--set``.
"""

from __future__ import annotations

from typing import Any

from wse_sim.sweep.grid import Point


def split_point(point: Point) -> tuple[dict[str, Any], list[str]]:
    """``(keyword arguments, hardware overrides as "section.field=value")`` of a point."""
    kwargs = {k: v for k, v in point.items() if "." not in k}
    sets = [f"{k}={v}" for k, v in point.items() if "." in k]
    return kwargs, sets


def run_point(point: Point) -> dict[str, Any]:
    """Run the model of ``point`` and return its headline numbers: ``RunResult.to_dict()``
    without the per-op table, the per-stage table and the echoed inputs (the point's own keys
    are its inputs): cycles, seconds, tokens_per_s, tflops, peak_fraction, utilization..."""
    from wse_sim.api import run  # imported in the worker process, on first use

    kwargs, sets = split_point(point)
    if sets:
        kwargs["sets"] = sets
    data = run(**kwargs).to_dict()
    for bulky in ("per_op", "stages", "inputs"):
        data.pop(bulky, None)
    return data
