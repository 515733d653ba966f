"""Parameter sweeps: expand a grid to points, evaluate them in parallel (local processes or a
Dask cluster) with an on-disk cache, and write a CSV and a plot. See docs/sweeps.md."""

from wse_sim.sweep.executors import SweepError
from wse_sim.sweep.grid import expand
from wse_sim.sweep.runner import SweepSummary, default_jobs, run_sweep

__all__ = ["SweepError", "SweepSummary", "default_jobs", "expand", "run_sweep"]
