"""The result of a model run: plain data that serialises to JSON (+ an .npz of arrays)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wse_sim.result.bundle import load_bundle, save_bundle

ARRAY_FIELDS = ("pe_compute_busy", "pe_flops", "pe_sram_peak_bytes", "link_wavelets")


@dataclass
class OpResult:
    """One op of the run. ``region`` is ``[x, y, width, height]`` in PEs; cycles are PE cycles.

    ``calls`` is how many kernel calls the op took (chunks it was cut into to fit SRAM, times
    repeats such as the two passes of a backward attention); ``cycles`` covers all of them.
    Transfers between regions appear with kernel ``transfer``; ops run off the wafer (the
    optimizer under weight streaming) with algorithm ``external`` and 0 cycles.
    """

    name: str
    kernel: str
    algorithm: str
    region: list[int]
    cycles: float
    flops: float
    start_cycle: float = 0.0
    stage: str = "fwd"
    layer: int | None = None
    breakdown: dict[str, float] = field(default_factory=dict)
    calls: float = 1.0
    need_bytes_per_pe: float = 0.0


@dataclass
class RunResult:
    """Headline numbers, per-op breakdown and per-PE / per-link arrays of one run.

    Arrays (shaped like the mesh, ``[y, x]``): ``pe_compute_busy`` fraction of the run's cycles
    each PE computes; ``pe_flops`` FLOPs executed per PE; ``pe_sram_peak_bytes`` peak bytes per
    PE; ``link_wavelets`` shape ``(4, H, W)``: wavelets carried on the link leaving each router
    east, west, north, south.

    ``stages`` lists the placement's stages (pipeline) or layer groups (weight streaming) with
    their cycles; ``latency_cycles`` is the time one batch takes end to end (equal to ``cycles``
    except for a pipeline, whose ``cycles`` is the steady-state interval between batches).
    """

    model: str
    mode: str
    mesh: dict[str, int]
    placement: str
    engine: str
    preset: str
    cycles: float
    seconds: float
    flops: float
    tokens: float
    tokens_per_s: float
    tflops: float
    peak_fraction: float
    utilization: dict[str, float]
    per_op: list[OpResult] = field(default_factory=list)
    batch: int = 1
    seq: int = 0
    context: int = 0
    wafers: int = 1
    dtype: str = "fp16"
    bottleneck: str | None = None
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    latency_cycles: float = 0.0
    micro_batches: int = 1
    pe_compute_busy: np.ndarray | None = None
    pe_flops: np.ndarray | None = None
    pe_sram_peak_bytes: np.ndarray | None = None
    link_wavelets: np.ndarray | None = None

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without the arrays (they go to the .npz beside the JSON)."""
        data = {k: v for k, v in asdict(self).items() if k not in ARRAY_FIELDS}
        data["per_op"] = [asdict(op) for op in self.per_op]
        return data

    def to_json(self) -> str:
        from wse_sim.result.io import _json_default

        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ARRAY_FIELDS if getattr(self, k) is not None}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (JSON) and ``path`` with suffix ``.npz`` (arrays), each atomically
        (:func:`~wse_sim.result.bundle.save_bundle`); the JSON names the arrays file under
        ``"arrays"``. Returns the JSON path."""
        return save_bundle(path, self.to_dict(), self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """Read what :meth:`save` wrote (:func:`~wse_sim.result.bundle.load_bundle`)."""
        data, arrays = load_bundle(path)
        data["per_op"] = [OpResult(**op) for op in data.get("per_op", [])]
        return cls(**data, **{k: v for k, v in arrays.items() if k in ARRAY_FIELDS})

    def heatmap(self, path: str | Path, kind: str = "all", **options: Any) -> Path:
        """Draw the run's per-PE / per-link arrays to ``path`` (``.png`` / ``.svg``):
        ``kind`` is ``compute``, ``sram``, ``links`` or ``all``; ``options`` go to
        :func:`wse_sim.report.heatmap.heatmap_from_result` (``max_cells``, ``method``, ``dpi``,
        ``per_direction``). Returns the path written."""
        from wse_sim.report.heatmap import heatmap_from_result

        return heatmap_from_result(self, path, kind, **options)

    def to_frame(self) -> Any:
        """The per-op table as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_frame needs pandas: pip install 'wse-sim[pandas]'") from exc
        return pd.DataFrame([asdict(op) for op in self.per_op])
