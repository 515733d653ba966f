"""Calibrated GPU baselines: the same layer graph the compiler builds, costed on A100/H100/H200.

* :mod:`~wse_sim.baselines.gpus`: :class:`GpuSpec` and the registry :data:`GPUS`.
* :mod:`~wse_sim.baselines.model`: kernel times (GEMM, attention, memory-bound, allreduce).
* :mod:`~wse_sim.baselines.sharding`: an op's share under tensor or data parallelism.
* :mod:`~wse_sim.baselines.graph_cost`: :func:`cost_graph` -> :class:`GpuResult`.
* :mod:`~wse_sim.baselines.calibration`: measured points (``calibration.json``) vs the model.
* :mod:`~wse_sim.baselines.opspecs`, :mod:`~wse_sim.baselines.reference_graphs`: OpSpecs and
  small transformer graphs for calibration and tests.

The model, its parameters and their sources: ``docs/baselines.md``.
"""

from wse_sim.baselines.gpus import GPUS, GpuSpec, get_gpu
from wse_sim.baselines.graph_cost import GpuOpCost, GpuResult, cost_graph
from wse_sim.baselines.model import KernelCost, op_cost

__all__ = [
    "GPUS",
    "GpuOpCost",
    "GpuResult",
    "GpuSpec",
    "KernelCost",
    "cost_graph",
    "get_gpu",
    "op_cost",
]
