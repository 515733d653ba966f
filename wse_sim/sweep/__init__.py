"""Parameter sweeps: expand a grid to points, evaluate them in parallel (local processes or a
Dask cluster) with an on-disk cache, and write a CSV and a plot. See docs/sweeps.md.

The package is also callable: ``wse_sim.sweep(grid, out, ...)`` is
:func:`wse_sim.sweep.api.sweep`, mirroring ``wse_sim.run`` and the ``wse-sim sweep`` command.
"""

import sys
import types
from typing import Any

from wse_sim.sweep.executors import SweepError
from wse_sim.sweep.grid import expand
from wse_sim.sweep.runner import SweepSummary, default_jobs, run_sweep

__all__ = ["SweepError", "SweepSummary", "default_jobs", "expand", "run_sweep"]


class _CallableModule(types.ModuleType):
    """Lets ``wse_sim.sweep(...)`` call the sweep API while staying a package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from wse_sim.sweep.api import sweep

        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
