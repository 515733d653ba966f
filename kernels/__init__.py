"""The kernel library (installed as ``wse_sim.kernels``)."""

from wse_sim.kernels.base import KERNELS, Estimate, Kernel, Plan, register

__all__ = ["KERNELS", "Estimate", "Kernel", "Plan", "register"]
