"""Read a saved :class:`RunResult` for the report commands, turning file problems into one-line
:class:`ConfigError` messages."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from wse_sim.errors import ConfigError
from wse_sim.result.run_result import RunResult


def load_run_result(path: str | Path) -> RunResult:
    """Load ``path`` (the JSON written by :meth:`RunResult.save`) and the ``.npz`` beside it.

    Raises :class:`ConfigError` naming the file when it is missing, not JSON, not a saved
    RunResult, or when its arrays file is missing or unreadable.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError("RESULT", str(p), "file not found; give the .json a run saved")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("RESULT", str(p), f"not a JSON file ({_first_line(exc)})") from None
    if not isinstance(data, dict) or "cycles" not in data or "model" not in data:
        raise ConfigError(
            "RESULT", str(p), "not a saved run result (no 'model'/'cycles'); give a run's .json"
        )
    npz = data.get("arrays")
    if npz and not (p.parent / npz).is_file():
        raise ConfigError(
            "RESULT", str(p), f"its arrays file {npz} is missing; keep it beside the .json"
        )
    try:
        return RunResult.load(p)
    except (TypeError, KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            "RESULT", str(p), f"not a readable run result ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
