"""Timelines as Chrome / Perfetto trace-event JSON (open in https://ui.perfetto.dev or
chrome://tracing).

The trace is ``{"traceEvents": [...], "otherData": {...}}`` with

* ``"M"`` metadata events naming each process and thread (``process_name``, ``thread_name``,
  ``thread_sort_index``);
* ``"X"`` complete events with ``ts`` and ``dur`` in microseconds of *simulated* time
  (cycles / clock Hz x 1e6).

Process 1 ("ops by region") has one thread for the whole run and one per mesh region of
:attr:`RunResult.per_op`; ops that overlap in time on the same region go to extra lanes so that
every thread's events nest cleanly. Process 2 ("PEs") has one thread per PE with the DES engine's
compute / send / recv / stream spans (:class:`wse_sim.engine.result.Span`), for small runs:
only the first ``max_pe_tracks`` PEs (row-major order) are kept, and the trace's ``otherData``
says so when PEs were dropped.

Spans are not part of the saved RunResult; a run that records them saves them beside the result
with :func:`save_spans` (``RESULT.spans.json``, see :func:`spans_path_for`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wse_sim.engine.result import Span
from wse_sim.errors import ConfigError
from wse_sim.result.io import _json_default, atomic_write_text

OPS_PID = 1
"""Process id of the per-region op tracks."""
PES_PID = 2
"""Process id of the per-PE span tracks."""
DEFAULT_MAX_PE_TRACKS = 1024
"""PEs with span tracks kept by default (a trace with a thread per PE of a big mesh is unusable)."""

SPANS_FORMAT = "wse-sim spans"
SPANS_VERSION = 1
SPAN_FIELDS: tuple[str, ...] = ("x", "y", "kind", "name", "start", "end")


# -- spans on disk -------------------------------------------------------------------------------
def spans_path_for(result_path: str | Path) -> Path:
    """Where a run's spans live beside its result: ``run.json`` -> ``run.spans.json``."""
    p = Path(result_path)
    return p.with_name(p.stem + ".spans.json")


def save_spans(path: str | Path, spans: Iterable[Span]) -> Path:
    """Write ``spans`` as compact JSON rows ``[x, y, kind, name, start, end]`` (cycles), atomically."""
    rows = [[s.x, s.y, s.kind, s.name, s.start, s.end] for s in spans]
    body = ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    header = json.dumps(
        {"format": SPANS_FORMAT, "version": SPANS_VERSION, "fields": list(SPAN_FIELDS)}
    )[:-1]
    return atomic_write_text(path, f'{header}, "spans": [\n{body}\n]}}\n')


def load_spans(path: str | Path) -> list[Span]:
    """Read spans written by :func:`save_spans`; :class:`ConfigError` names a bad file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("spans", str(p), "file not found; give a .spans.json written by a run")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("spans", str(p), f"not a JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SPANS_FORMAT:
        raise ConfigError("spans", str(p), f"not a spans file (format is not {SPANS_FORMAT!r})")
    if data.get("version") != SPANS_VERSION:
        raise ConfigError(
            "spans", str(p), f"version {data.get('version')!r} unsupported; use {SPANS_VERSION}"
        )
    spans = []
    for i, row in enumerate(data.get("spans", [])):
        try:
            x, y, kind, name, start, end = row
            span = Span(int(x), int(y), str(kind), str(name), float(start), float(end))
        except (TypeError, ValueError):
            raise ConfigError(
                "spans", str(p), f"row {i} is not [x, y, kind, name, start, end]"
            ) from None
        spans.append(span)
    return spans


# -- conversion ----------------------------------------------------------------------------------
def clock_of(result: Any = None, clock_hz: float | None = None) -> float:
    """PE clock in Hz: ``clock_hz`` when given, else the result's ``cycles / seconds``."""
    if clock_hz is not None:
        if not isinstance(clock_hz, (int, float)) or clock_hz <= 0:
            raise ConfigError("clock_hz", clock_hz, "must be a number of Hz greater than 0")
        return float(clock_hz)
    cycles = float(getattr(result, "cycles", 0.0) or 0.0)
    seconds = float(getattr(result, "seconds", 0.0) or 0.0)
    if cycles > 0 and seconds > 0:
        return cycles / seconds
    raise ConfigError(
        "clock_hz", clock_hz, "cannot infer the clock from the result; give it, e.g. 1.1e9"
    )


def cycles_to_us(cycles: float, clock_hz: float) -> float:
    """Simulated microseconds of ``cycles`` PE cycles at ``clock_hz``."""
    return float(cycles) / clock_hz * 1e6


def _assign_lanes(intervals: Sequence[tuple[float, float]]) -> list[int]:
    """Lane index per interval so that intervals in one lane never overlap (greedy, by start)."""
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], -intervals[i][1]))
    lane_end: list[float] = []
    lanes = [0] * len(intervals)
    for i in order:
        start, end = intervals[i]
        for lane, free in enumerate(lane_end):
            if free <= start:
                lanes[i] = lane
                lane_end[lane] = end
                break
        else:
            lanes[i] = len(lane_end)
            lane_end.append(end)
    return lanes


def _meta(pid: int, tid: int, kind: str, value: Any) -> dict[str, Any]:
    key = "sort_index" if kind.endswith("sort_index") else "name"
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {key: value}}


def _region_label(region: Sequence[int]) -> str:
    if len(region) == 4:
        x, y, w, h = region
        return f"region ({x},{y}) {w}x{h}"
    return f"region {list(region)}"


def op_events(result: Any, clock_hz: float) -> list[dict[str, Any]]:
    """Metadata and ``X`` events of process :data:`OPS_PID`: the run and one track per region."""
    events: list[dict[str, Any]] = [
        _meta(OPS_PID, 0, "process_name", "ops by region"),
        _meta(OPS_PID, 0, "process_sort_index", 0),
        _meta(OPS_PID, 0, "thread_name", "run"),
        _meta(OPS_PID, 0, "thread_sort_index", 0),
    ]
    total = float(getattr(result, "cycles", 0.0) or 0.0)
    label = " ".join(str(getattr(result, k, "") or "") for k in ("model", "mode")).strip()
    events.append(
        {
            "name": label or "run",
            "cat": "run",
            "ph": "X",
            "ts": 0.0,
            "dur": cycles_to_us(max(total, 0.0), clock_hz),
            "pid": OPS_PID,
            "tid": 0,
            "args": {"cycles": total},
        }
    )
    ops = list(getattr(result, "per_op", None) or [])
    by_region: dict[tuple[int, ...], list[Any]] = {}
    for op in ops:
        by_region.setdefault(tuple(op.region), []).append(op)
    tid = 0
    for region, group in sorted(by_region.items()):
        for op in group:
            if op.cycles < 0:
                raise ConfigError(f"per_op[{op.name}].cycles", op.cycles, "must be >= 0")
        lanes = _assign_lanes([(op.start_cycle, op.start_cycle + op.cycles) for op in group])
        tids = {}
        for lane in sorted(set(lanes)):
            tid += 1
            tids[lane] = tid
            name = _region_label(region) + (f" lane {lane + 1}" if lane else "")
            events.append(_meta(OPS_PID, tid, "thread_name", name))
            events.append(_meta(OPS_PID, tid, "thread_sort_index", tid))
        for op, lane in zip(group, lanes):
            events.append(
                {
                    "name": op.name,
                    "cat": f"{op.kernel},{op.stage}",
                    "ph": "X",
                    "ts": cycles_to_us(op.start_cycle, clock_hz),
                    "dur": cycles_to_us(op.cycles, clock_hz),
                    "pid": OPS_PID,
                    "tid": tids[lane],
                    "args": {
                        "kernel": op.kernel,
                        "algorithm": op.algorithm,
                        "stage": op.stage,
                        "layer": op.layer,
                        "region": list(op.region),
                        "start_cycle": op.start_cycle,
                        "cycles": op.cycles,
                        "flops": op.flops,
                        **{f"breakdown.{k}": v for k, v in op.breakdown.items()},
                    },
                }
            )
    return events


def span_events(
    spans: Iterable[Span], clock_hz: float, max_pe_tracks: int = DEFAULT_MAX_PE_TRACKS
) -> tuple[list[dict[str, Any]], list[str]]:
    """Events of process :data:`PES_PID` (one track per PE, more lanes where spans overlap) and
    notes about anything left out."""
    by_pe: dict[tuple[int, int], list[Span]] = {}
    for s in spans:
        if s.end < s.start:
            raise ConfigError(
                "spans", f"({s.x},{s.y}) {s.name} {s.start}..{s.end}", "end must be >= start"
            )
        by_pe.setdefault((s.y, s.x), []).append(s)
    notes: list[str] = []
    keys = sorted(by_pe)
    if len(keys) > max_pe_tracks:
        notes.append(
            f"spans of {len(keys) - max_pe_tracks} of {len(keys)} PEs left out "
            f"(kept the first {max_pe_tracks} in row-major order)"
        )
        keys = keys[:max_pe_tracks]
    if not keys:
        return [], notes
    events: list[dict[str, Any]] = [
        _meta(PES_PID, 0, "process_name", "PEs"),
        _meta(PES_PID, 0, "process_sort_index", 1),
    ]
    tid = 0
    for y, x in keys:
        group = sorted(by_pe[(y, x)], key=lambda s: (s.start, s.end))
        lanes = _assign_lanes([(s.start, s.end) for s in group])
        tids = {}
        for lane in sorted(set(lanes)):
            tid += 1
            tids[lane] = tid
            name = f"PE ({x},{y})" + (f" lane {lane + 1}" if lane else "")
            events.append(_meta(PES_PID, tid, "thread_name", name))
            events.append(_meta(PES_PID, tid, "thread_sort_index", tid))
        for s, lane in zip(group, lanes):
            events.append(
                {
                    "name": s.name or s.kind,
                    "cat": s.kind,
                    "ph": "X",
                    "ts": cycles_to_us(s.start, clock_hz),
                    "dur": cycles_to_us(s.end - s.start, clock_hz),
                    "pid": PES_PID,
                    "tid": tids[lane],
                    "args": {"kind": s.kind, "start_cycle": s.start, "end_cycle": s.end},
                }
            )
    return events, notes


def trace_events(
    result: Any = None,
    spans: Iterable[Span] | None = None,
    clock_hz: float | None = None,
    max_pe_tracks: int = DEFAULT_MAX_PE_TRACKS,
) -> dict[str, Any]:
    """The whole trace document for a RunResult (its ``per_op``) and/or engine spans."""
    if result is None and spans is None:
        raise ConfigError("trace", None, "give a result, spans, or both")
    clock = clock_of(result, clock_hz)
    events: list[dict[str, Any]] = []
    if result is not None:
        events += op_events(result, clock)
    notes: list[str] = []
    if spans is not None:
        pe_events, notes = span_events(spans, clock, max_pe_tracks)
        events += pe_events
    other: dict[str, Any] = {"clock_hz": clock, "time_unit": "simulated microseconds"}
    for key in ("model", "mode", "placement", "engine", "preset", "cycles"):
        if result is not None and getattr(result, key, None) is not None:
            other[key] = getattr(result, key)
    if notes:
        other["notes"] = notes
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": other}


def write_trace(
    path: str | Path,
    result: Any = None,
    spans: Iterable[Span] | None = None,
    clock_hz: float | None = None,
    max_pe_tracks: int = DEFAULT_MAX_PE_TRACKS,
) -> Path:
    """Write :func:`trace_events` to ``path`` (compact JSON, atomically) and return the path."""
    doc = trace_events(result, spans, clock_hz, max_pe_tracks)
    return atomic_write_text(path, json.dumps(doc, separators=(",", ":"), default=_json_default))
