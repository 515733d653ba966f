"""``wse-sim presets``: list every registry (hardware, models, placements, kernels, engines, GPUs)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

NAME = "presets"
HELP = "list hardware presets, model presets, placements, kernels, engines and GPU models"

# (title, module, registry attribute); a registry maps a name to an object with `description`
# (or to the description string itself).
REGISTRIES: tuple[tuple[str, str, str], ...] = (
    ("hardware presets", "wse_sim.hardware.presets", "PRESETS"),
    ("model presets", "wse_sim.spec.models", "MODEL_PRESETS"),
    ("placements", "wse_sim.placement.registry", "PLACEMENTS"),
    ("kernels", "wse_sim.kernels.registry", "KERNELS"),
    ("engines", "wse_sim.engine.registry", "ENGINES"),
    ("gpu models", "wse_sim.baselines.gpus", "GPUS"),
)

KIND_OF_TITLE = {
    "hardware presets": "hardware",
    "model presets": "models",
    "placements": "placements",
    "kernels": "kernels",
    "engines": "engines",
    "gpu models": "gpus",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        nargs="?",
        choices=list(KIND_OF_TITLE.values()),
        help="list only this registry",
    )


def describe(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    return (
        str(getattr(entry, "description", "")).strip().splitlines()[0]
        if getattr(entry, "description", "")
        else ""
    )


def run(args: argparse.Namespace) -> int:
    for title, module_name, attr in REGISTRIES:
        if args.kind and KIND_OF_TITLE[title] != args.kind:
            continue
        try:
            registry = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            continue
        print(f"{title}:")
        width = max((len(n) for n in registry), default=0)
        for name, entry in registry.items():
            print(f"  {name:<{width}}  {describe(entry)}")
        print()
    return 0
