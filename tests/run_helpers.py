"""Helpers shared by the model-run tests (``test_run.py``, ``test_run_cli.py``)."""

from __future__ import annotations

RUN_JSON_KEYS: tuple[str, ...] = (
    "model",
    "mode",
    "mesh",
    "placement",
    "engine",
    "cycles",
    "seconds",
    "flops",
    "tokens_per_s",
    "tflops",
    "peak_fraction",
    "utilization",
    "per_op",
)
"""Top-level keys every saved run JSON (:meth:`RunResult.to_json`) must hold."""
