"""A placement read from a TOML or JSON file that maps layers or ops to rectangles.

Format (TOML; the JSON form has the same keys, with the rules under ``"rules"``)::

    name = "halves"              # optional: shown as the result's placement
    schedule = "pipeline"        # "sequential" (default: ops one after another) or "pipeline"
    default = [0, 0, 64, 64]     # optional: rectangle of ops that no rule matches

    [[rule]]
    layers = [0, 5]              # inclusive layer range (or one layer: layers = 3)
    rect = [0, 0, 32, 64]        # x, y, width, height in PEs

    [[rule]]
    ops = ["embed*", "lm_head"]  # op names or shell-style patterns
    rect = [32, 0, 32, 64]

An op takes the first rule that matches its name or its layer (training: a layer's backward and
optimizer ops carry the layer too, and a backward op such as ``lm_head.bwd_data`` also matches
the patterns of its forward op). Each distinct rectangle is a stage, in the order its first op
runs. Pipeline stages must not overlap. Every error is one line naming the file and the key.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from wse_sim.errors import ConfigError
from wse_sim.hardware.spec import WaferSpec
from wse_sim.placement.base import Placement, PlacementStrategy, Stage
from wse_sim.placement.fit import check_resident
from wse_sim.placement.units import heaviest_op, resident_bytes
from wse_sim.program.ir import Region

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TOP_KEYS = ("name", "schedule", "default", "rule", "rules")
RULE_KEYS = ("name", "layers", "ops", "rect")
FILE_SCHEDULES = ("sequential", "pipeline")


@dataclass(frozen=True)
class Rule:
    """One rule of a placement file: ops matching ``patterns`` or a layer in ``layers``."""

    name: str
    rect: Region
    layers: tuple[int, int] | None
    patterns: tuple[str, ...]

    def matches(self, op_name: str, layer: int | None) -> bool:
        """Its layer is in ``layers``, or its name (or, for a backward op, its forward op's
        name) matches a pattern."""
        if (
            layer is not None
            and self.layers is not None
            and self.layers[0] <= layer <= self.layers[1]
        ):
            return True
        names = {op_name, forward_name(op_name)}
        return any(fnmatch.fnmatchcase(n, p) for n in names for p in self.patterns)


BACKWARD_SUFFIXES = (".bwd", ".bwd_data", ".bwd_weight")


def forward_name(op_name: str) -> str:
    """``lm_head.bwd_data`` -> ``lm_head``: the forward op a backward op differentiates."""
    for suffix in BACKWARD_SUFFIXES:
        if op_name.endswith(suffix):
            return op_name[: -len(suffix)]
    return op_name


def read_table(path: Path) -> dict[str, Any]:
    """The file's top-level table; :class:`ConfigError` for a missing or malformed file."""
    if not path.is_file():
        raise ConfigError("placement", str(path), "no such placement or file; see --help")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            str(path), f"line {exc.lineno}", f"is not valid JSON: {exc.msg}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "TOML", f"is not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), type(data).__name__, "must hold a table (a JSON object)")
    return data


def parse_rect(where: str, value: Any, spec: WaferSpec) -> Region:
    """``[x, y, width, height]`` inside the mesh."""
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 4
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )
    if not ok or value[0] < 0 or value[1] < 0 or value[2] < 1 or value[3] < 1:
        raise ConfigError(
            where, value, "use [x, y, width, height]: whole numbers, x, y >= 0, sizes >= 1"
        )
    x, y, w, h = value
    if x + w > spec.mesh.width or y + h > spec.mesh.height:
        raise ConfigError(
            where, value, f"must lie inside the {spec.mesh.width}x{spec.mesh.height} mesh"
        )
    return Region(x, y, w, h)


def parse_layers(where: str, value: Any) -> tuple[int, int]:
    """``3`` or ``[first, last]`` (inclusive) as a range."""

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if whole(value):
        return (value, value)
    pair = isinstance(value, (list, tuple)) and len(value) == 2 and all(whole(v) for v in value)
    if pair and value[0] <= value[1]:
        return (value[0], value[1])
    raise ConfigError(where, value, "use a layer index or [first, last] with first <= last")


def parse_rule(where: str, raw: Any, spec: WaferSpec) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(where, raw, "must be a table with rect and layers and/or ops")
    for key in raw:
        if key not in RULE_KEYS:
            raise ConfigError(
                f"{where}.{key}", raw[key], f"unknown key; use {', '.join(RULE_KEYS)}"
            )
    if "rect" not in raw:
        raise ConfigError(f"{where}.rect", None, "missing; give [x, y, width, height]")
    if "layers" not in raw and "ops" not in raw:
        raise ConfigError(where, raw, "give layers, ops or both")
    layers = parse_layers(f"{where}.layers", raw["layers"]) if "layers" in raw else None
    ops = raw.get("ops", [])
    if isinstance(ops, str):
        ops = [ops]
    if not isinstance(ops, list) or not all(isinstance(p, str) and p for p in ops):
        raise ConfigError(f"{where}.ops", ops, "use a list of op names or patterns")
    name = raw.get("name", where)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name", name, "must be a string")
    return Rule(name, parse_rect(f"{where}.rect", raw["rect"], spec), layers, tuple(ops))


class FilePlacement(PlacementStrategy):
    """A placement from a file (see the module docstring for the format)."""

    description = "a TOML or JSON file mapping layers or ops to rectangles"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.stem

    def place(self, graph: nx.DiGraph, spec: WaferSpec) -> Placement:
        src = str(self.path)
        data = read_table(self.path)
        for key in data:
            if key not in TOP_KEYS:
                raise ConfigError(
                    f"{src}: {key}", data[key], f"unknown key; use {', '.join(TOP_KEYS)}"
                )
        schedule = data.get("schedule", "sequential")
        if schedule not in FILE_SCHEDULES:
            raise ConfigError(f"{src}: schedule", schedule, f"use {' or '.join(FILE_SCHEDULES)}")
        name = data.get("name", self.name)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{src}: name", name, "must be a non-empty string")
        raw_rules = data.get("rule", data.get("rules", []))
        if not isinstance(raw_rules, list):
            raise ConfigError(f"{src}: rules", raw_rules, "must be a list of tables")
        rules = [parse_rule(f"{src}: rule {i + 1}", r, spec) for i, r in enumerate(raw_rules)]
        default = (
            parse_rect(f"{src}: default", data["default"], spec) if "default" in data else None
        )
        if not rules and default is None:
            raise ConfigError(src, "no rules", "give at least one [[rule]] or a default rect")
        by_rect: dict[Region, list[str]] = {}
        labels: dict[Region, str] = {}
        for node, d in graph.nodes(data=True):
            op = d["op"]
            rule = next((r for r in rules if r.matches(node, op.layer)), None)
            if rule is None and default is None:
                raise ConfigError(
                    f"{src}: op", node, "matches no rule and the file has no default rect"
                )
            rect = rule.rect if rule is not None else default
            assert rect is not None
            by_rect.setdefault(rect, []).append(node)
            labels.setdefault(rect, rule.name if rule is not None else "default")
        rects = list(by_rect)
        if schedule == "pipeline":
            _check_disjoint(src, rects, labels)
        stages = self._stages(graph, spec, by_rect, labels, name)
        return Placement(name, schedule, tuple(stages), (f"placement file {src}",))

    @staticmethod
    def _stages(graph, spec, by_rect, labels, name) -> list[Stage]:
        """Stages with resident bytes; overlapping rectangles add up on the PEs they share."""
        per_pe = np.zeros((spec.mesh.height, spec.mesh.width))
        own = {}
        for rect, ops in by_rect.items():
            own[rect] = resident_bytes(graph, ops)
            per_pe[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width] += (
                own[rect] / rect.num_pes
            )
        total = float(sum(own.values()))
        stages = []
        for rect, ops in by_rect.items():
            peak = float(per_pe[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width].max())
            resident = peak * rect.num_pes
            check_resident(name, heaviest_op(graph, ops), rect, spec, resident, total)
            stages.append(Stage(labels[rect], rect, tuple(ops), resident))
        return stages


def _overlap(a: Region, b: Region) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def _check_disjoint(src: str, rects: list[Region], labels: dict[Region, str]) -> None:
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            if _overlap(a, b):
                raise ConfigError(
                    f"{src}: {labels[b]}.rect",
                    [b.x, b.y, b.width, b.height],
                    f"overlaps {labels[a]} {[a.x, a.y, a.width, a.height]}; pipeline stages "
                    'must be disjoint (or use schedule = "sequential")',
                )
