"""Build a :class:`WaferSpec` from a preset, a TOML file, ``--set`` overrides and ``--mesh``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from wse_sim.errors import ConfigError
from wse_sim.hardware.presets import DEFAULT_PRESET, get_preset
from wse_sim.hardware.spec import SECTIONS, WaferSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def parse_mesh(text: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (for example ``"64x64"``) into ``(width, height)``."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        width, height = int(parts[0]), int(parts[1])
    except ValueError:
        raise ConfigError("mesh", text, "use WIDTHxHEIGHT with whole numbers, e.g. 64x64") from None
    if width <= 0 or height <= 0:
        raise ConfigError("mesh", text, "width and height must be greater than 0")
    return width, height


def _field_type(section: str, name: str) -> type:
    cls = SECTIONS[section]
    for f in dataclasses.fields(cls):
        if f.name == name:
            return {"int": int, "float": float}.get(str(f.type), float)
    names = ", ".join(f.name for f in dataclasses.fields(cls))
    raise ConfigError(f"{section}.{name}", None, f"unknown field; {section} has {names}")


def _coerce(section: str, name: str, raw: Any) -> Any:
    kind = _field_type(section, name)
    if isinstance(raw, str):
        try:
            value = float(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{section}.{name}", raw, "must be a number") from None
    else:
        value = raw
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_set(item: str) -> tuple[str, str, str]:
    """Parse ``section.field=value`` into its three parts."""
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name or not value.strip():
        raise ConfigError(
            "--set", item, "use section.field=value, e.g. fabric.hop_latency_cycles=2"
        )
    if section not in SECTIONS:
        raise ConfigError(key, value, f"unknown section; use one of {', '.join(SECTIONS)}")
    return section, name, value.strip()


def apply_overrides(spec: WaferSpec, overrides: dict[str, dict[str, Any]]) -> WaferSpec:
    """Apply ``{section: {field: value}}`` on top of ``spec`` and validate the result."""
    for section, fields in overrides.items():
        if section == "name":
            spec = spec.replace(name=str(fields))
            continue
        if section not in SECTIONS:
            raise ConfigError(section, fields, f"unknown section; use one of {', '.join(SECTIONS)}")
        if not isinstance(fields, dict):
            raise ConfigError(section, fields, "must be a table of field = value")
        current = getattr(spec, section)
        values = {name: _coerce(section, name, raw) for name, raw in fields.items()}
        spec = spec.replace(**{section: dataclasses.replace(current, **values)})
    return spec


def load_hw_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML hardware file: sections ``mesh``, ``pe``, ``fabric``, ``io``; optional
    top-level ``preset`` (the base) and ``name``."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("--hw", str(path), "file not found; give a TOML file path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--hw", str(path), f"not valid TOML ({exc})") from None


def build_spec(
    preset: str | None = None,
    hw_file: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    mesh: str | tuple[int, int] | None = None,
) -> WaferSpec:
    """Compose a spec: preset (default ``wse2``), then the file, then each ``--set``, then mesh."""
    table: dict[str, Any] = load_hw_file(hw_file) if hw_file is not None else {}
    base = preset or table.pop("preset", None) or DEFAULT_PRESET
    table.pop("preset", None)
    spec = get_preset(base)
    name = table.pop("name", None)
    spec = apply_overrides(spec, table)
    if name is not None:
        spec = spec.replace(name=str(name))
    for item in sets:
        section, field_name, value = parse_set(item)
        spec = apply_overrides(spec, {section: {field_name: value}})
    if mesh is not None:
        width, height = parse_mesh(mesh) if isinstance(mesh, str) else mesh
        spec = spec.with_mesh(width, height)
    return spec
