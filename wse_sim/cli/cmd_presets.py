"""``wse-sim presets``: list every registry (hardware, models, placements, kernels, engines, GPUs).

A registry is a dict from name to an entry: an object with a ``description`` (or a docstring), or
the description string itself. Registries whose module or attribute does not exist yet are
skipped silently (asked for by name, they show as empty); an error inside a module that does
exist is not hidden.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Registry:
    """Where one registry lives: ``kind`` is the CLI filter word; ``modules`` are tried in
    order and the first that has ``attr`` is used."""

    kind: str
    title: str
    modules: tuple[str, ...]
    attr: str


NAME = "presets"
HELP = "list hardware presets, model presets, placements, kernels, engines and GPU models"

REGISTRIES: tuple[Registry, ...] = (
    Registry("hardware", "hardware presets", ("wse_sim.hardware.presets",), "PRESETS"),
    Registry("models", "model presets", ("wse_sim.spec.models",), "MODEL_PRESETS"),
    Registry("placements", "placements", ("wse_sim.placement.registry",), "PLACEMENTS"),
    Registry("kernels", "kernels", ("wse_sim.kernels.registry", "wse_sim.kernels"), "KERNELS"),
    Registry("engines", "engines", ("wse_sim.engine.registry",), "ENGINES"),
    Registry("gpus", "gpu models", ("wse_sim.baselines.gpus",), "GPUS"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        nargs="?",
        choices=[r.kind for r in REGISTRIES],
        help="list only this registry",
    )


def _missing(exc: ModuleNotFoundError, module_name: str) -> bool:
    """True when ``exc`` says ``module_name`` (or a package above it) does not exist."""
    return exc.name is not None and (module_name + ".").startswith(exc.name + ".")


def load_registry(registry: Registry) -> dict[str, Any] | None:
    """The registry dict, or None when none of its modules defines it yet."""
    for module_name in registry.modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _missing(exc, module_name):
                continue
            raise
        found = getattr(module, registry.attr, None)
        if isinstance(found, dict):
            return found
    return None


def describe(entry: Any) -> str:
    """First line of the entry's description (or docstring); the string itself for a str."""
    if isinstance(entry, str):
        text = entry
    else:
        text = str(getattr(entry, "description", "") or "") or (getattr(entry, "__doc__", "") or "")
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def run(args: argparse.Namespace) -> int:
    blocks = []
    for registry in REGISTRIES:
        if args.kind and registry.kind != args.kind:
            continue
        entries = load_registry(registry)
        if entries is None and not args.kind:
            continue
        entries = entries or {}
        lines = [f"{registry.title}:"]
        width = max((len(str(n)) for n in entries), default=0)
        for name, entry in entries.items():
            lines.append(f"  {str(name):<{width}}  {describe(entry)}".rstrip())
        if not entries:
            lines.append("  (none registered)")
        blocks.append("\n".join(lines))
    if blocks:
        print("\n\n".join(blocks))
    return 0
