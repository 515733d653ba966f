"""wse-sim: a cycle-approximate simulator of wafer-scale engines for Transformer workloads."""

__version__ = "0.1.0"
