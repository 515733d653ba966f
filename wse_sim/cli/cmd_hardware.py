"""``wse-sim hardware``: print the resolved hardware spec, its units and derived figures.

``--json PATH`` writes the same as data; ``--toml PATH`` writes a complete hardware file that
``--hw PATH`` loads back to the same spec.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wse_sim.cli.common import add_hardware_arguments, spec_from_args
from wse_sim.errors import ConfigError
from wse_sim.hardware.derived import derived_figures
from wse_sim.hardware.spec import SECTIONS, WaferSpec, iter_fields
from wse_sim.hardware.toml_writer import spec_to_toml
from wse_sim.result.io import atomic_write_json, atomic_write_text

NAME = "hardware"
HELP = "print the resolved hardware spec (every field with its unit) and derived figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_hardware_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", default=None, metavar="PATH", help="also write the spec as JSON")
    out.add_argument(
        "--toml", default=None, metavar="PATH", help="also write a complete TOML that --hw loads"
    )


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render(spec: WaferSpec) -> str:
    """The text ``wse-sim hardware`` prints: every field (``section.field value unit``) and
    the derived figures; estimates are marked."""
    infos = list(iter_fields())
    values = {i.key: _value_text(getattr(getattr(spec, i.section), i.name)) for i in infos}
    key_w = max(len(i.key) for i in infos)
    val_w = max(len(v) for v in values.values())
    unit_w = max(len(i.unit) for i in infos)
    lines = [f"hardware: {spec.name} ({spec.mesh.width}x{spec.mesh.height} PEs)"]
    for section in SECTIONS:
        lines.append("")
        for info in (i for i in infos if i.section == section):
            mark = " (estimate)" if info.estimate else ""
            lines.append(
                f"  {info.key:<{key_w}}  {values[info.key]:>{val_w}}  {info.unit:<{unit_w}}  "
                f"{info.doc}{mark}"
            )
    figures = derived_figures(spec)
    texts = [f"{f.value:,}" if f.key == "pes" else f"{f.value:.4g}" for f in figures]
    label_w = max(len(f.label) for f in figures)
    val_w = max(len(t) for t in texts)
    unit_w = max(len(f.unit) for f in figures)
    lines += ["", "derived:"]
    for f, text in zip(figures, texts):
        lines.append(f"  {f.label:<{label_w}}  {text:>{val_w}}  {f.unit:<{unit_w}}  {f.formula}")
    return "\n".join(lines) + "\n"


def to_json(spec: WaferSpec) -> dict[str, Any]:
    """The spec as data: ``spec`` (nested sections), ``fields`` (with units and sources) and
    ``derived`` figures."""
    return {
        "name": spec.name,
        "spec": spec.to_dict(),
        "fields": [
            {
                "key": i.key,
                "value": getattr(getattr(spec, i.section), i.name),
                "unit": i.unit,
                "doc": i.doc,
                "source": i.source,
                "estimate": i.estimate,
            }
            for i in iter_fields()
        ],
        "derived": [
            {"key": f.key, "label": f.label, "value": f.value, "unit": f.unit, "formula": f.formula}
            for f in derived_figures(spec)
        ],
    }


def _write(flag: str, path: str, write: Callable[[Path], object]) -> None:
    try:
        write(Path(path))
    except OSError as exc:
        raise ConfigError(flag, path, f"cannot write it ({exc.strerror or exc})") from None


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    print(render(spec), end="")
    if args.json:
        _write("--json", args.json, lambda p: atomic_write_json(p, to_json(spec)))
        print(f"wrote {args.json}", file=sys.stderr)
    if args.toml:
        _write("--toml", args.toml, lambda p: atomic_write_text(p, spec_to_toml(spec)))
        print(f"wrote {args.toml}", file=sys.stderr)
    return 0
