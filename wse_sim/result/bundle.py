"""A result on disk: a JSON file of plain data plus an ``.npz`` of arrays beside it.

Shared by the result classes (:class:`~wse_sim.result.kernel_result.KernelResult`; the same
layout as :meth:`RunResult.save`): both files are written atomically, and the JSON names its
arrays file under ``"arrays"`` so that a loader finds it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from wse_sim.result.io import atomic_write, atomic_write_json


def save_bundle(path: str | Path, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``data`` to ``path`` (JSON) and ``arrays`` to ``path`` with suffix ``.npz``.

    The arrays file is written first, so the JSON never names a file that is not there yet.
    Returns the JSON path.
    """
    p = Path(path)
    data = dict(data)
    if arrays:
        npz = p.with_suffix(".npz")

        def write(fh: Any) -> None:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            fh.write(buf.getvalue())

        atomic_write(npz, write)
        data["arrays"] = npz.name
    atomic_write_json(p, data)
    return p


def load_bundle(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read what :func:`save_bundle` wrote: ``(data without "arrays", {name: array})``."""
    p = Path(path)
    data = json.loads(p.read_text())
    npz_name = data.pop("arrays", None)
    arrays: dict[str, np.ndarray] = {}
    if npz_name:
        with np.load(p.parent / npz_name) as z:
            arrays = {k: z[k] for k in z.files}
    return data, arrays
