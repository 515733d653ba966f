"""wse-sim: a cycle-approximate simulator of wafer-scale engines for Transformer workloads."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def run(*args: Any, **kwargs: Any) -> Any:
    """Simulate a model run and return a ``RunResult``: see :func:`wse_sim.api.run`.

    Imported lazily so that ``import wse_sim`` stays light.
    """
    from wse_sim.api import run as _run

    return _run(*args, **kwargs)


def __getattr__(name: str) -> Any:
    """``wse_sim.sweep`` (callable: the sweep API) is imported on first use."""
    if name == "sweep":
        import importlib

        return importlib.import_module("wse_sim.sweep")
    raise AttributeError(f"module 'wse_sim' has no attribute {name!r}")
