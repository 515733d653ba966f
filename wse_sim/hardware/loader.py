"""Build a :class:`WaferSpec` from a preset, a TOML file, ``--set`` overrides and ``--mesh``.

Precedence, lowest first: the base preset (``--preset``, else the file's top-level ``preset``,
else the command's default), the file's tables, each ``--set`` in order, then ``--mesh``. All
overrides are merged first and validated once, so values that only fit together (for example a
deeper router buffer and a larger SRAM) may be given in any order.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from wse_sim.errors import ConfigError
from wse_sim.hardware.presets import DEFAULT_PRESET, get_preset
from wse_sim.hardware.spec import SECTIONS, WaferSpec, field_info

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TOP_LEVEL_KEYS: tuple[str, ...] = ("preset", "name")
"""Keys a hardware file may have outside the section tables."""

_FILE_LAYOUT = (
    f"a hardware file has top-level {' and '.join(TOP_LEVEL_KEYS)} and tables "
    f"[{'], ['.join(SECTIONS)}]"
)


def parse_mesh(text: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (for example ``"64x64"``) into ``(width, height)`` in PEs."""
    parts = str(text).strip().lower().replace("*", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        width, height = int(parts[0]), int(parts[1])
    except ValueError:
        raise ConfigError(
            "--mesh", text, "use WIDTHxHEIGHT with whole numbers, e.g. 64x64"
        ) from None
    if width <= 0 or height <= 0:
        raise ConfigError("--mesh", text, "width and height must be whole numbers greater than 0")
    return width, height


def _number(section: str, name: str, text: str) -> int | float:
    """Parse the text of a number (``_`` separators allowed); ints stay exact."""
    clean = text.strip().replace("_", "")
    try:
        return int(clean)
    except ValueError:
        pass
    try:
        return float(clean)
    except ValueError:
        raise ConfigError(f"{section}.{name}", text, "must be a number, e.g. 2 or 1.1e9") from None


def coerce_value(section: str, name: str, raw: Any) -> Any:
    """Turn a raw value (TOML value or ``--set`` text) into the field's type where that is
    lossless; anything else is passed on for the section to reject with its own message."""
    info = field_info(section, name, raw)
    value = _number(section, name, raw) if isinstance(raw, str) else raw
    if info.kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_set(item: str) -> tuple[str, str, str]:
    """Parse ``section.field=value`` into its three parts. ``name=VALUE`` (the spec's name)
    comes back as ``("name", "", VALUE)``."""
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if sep and key == "name" and value:
        return "name", "", value
    section, dot, name = key.partition(".")
    if not sep or not dot or not section or not name or not value:
        raise ConfigError(
            "--set", item, "use section.field=value, e.g. fabric.hop_latency_cycles=2"
        )
    if section not in SECTIONS:
        raise ConfigError(
            key, value, f"unknown section {section!r}; use one of {', '.join(SECTIONS)}"
        )
    field_info(section, name, value)
    return section, name, value


def apply_overrides(spec: WaferSpec, overrides: dict[str, Any]) -> WaferSpec:
    """Apply ``{section: {field: value}}`` (and optionally ``{"name": str}``) on top of ``spec``;
    the result is validated once, after every value is in place."""
    changes: dict[str, Any] = {}
    for section, fields in overrides.items():
        if section == "name":
            changes["name"] = fields
            continue
        if section not in SECTIONS:
            raise ConfigError(section, fields, f"unknown key; {_FILE_LAYOUT}")
        if not isinstance(fields, dict):
            raise ConfigError(section, fields, f"must be a table [{section}] of field = value")
        values = {name: coerce_value(section, name, raw) for name, raw in fields.items()}
        changes[section] = dataclasses.replace(getattr(spec, section), **values)
    return spec.replace(**changes) if changes else spec


def load_hw_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML hardware file: tables ``mesh``, ``pe``, ``fabric``, ``io`` (any subset of
    their fields); optional top-level ``preset`` (the base) and ``name``."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("--hw", str(path), "file not found; give a TOML file path") from None
    except IsADirectoryError:
        raise ConfigError("--hw", str(path), "is a folder; give a TOML file path") from None
    except OSError as exc:
        raise ConfigError("--hw", str(path), f"cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError("--hw", str(path), "not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError("--hw", str(path), f"not valid TOML ({detail})") from None


def _merge(into: dict[str, Any], table: dict[str, Any]) -> None:
    """Merge ``{section: {field: value}}`` tables; later values win field by field."""
    for key, value in table.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value}
        else:
            into[key] = value


def build_spec(
    preset: str | None = None,
    hw_file: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    mesh: str | tuple[int, int] | None = None,
    default_preset: str = DEFAULT_PRESET,
) -> WaferSpec:
    """Compose a spec: base preset, then the file, then each ``--set``, then ``mesh``.

    The base is ``preset`` if given, else the file's top-level ``preset``, else
    ``default_preset``.
    """
    table: dict[str, Any] = dict(load_hw_file(hw_file)) if hw_file is not None else {}
    file_preset = table.pop("preset", None)
    if preset is None:
        preset = file_preset if file_preset is not None else default_preset
    spec = get_preset(preset)
    overrides: dict[str, Any] = {}
    _merge(overrides, table)
    for item in sets:
        section, field_name, value = parse_set(item)
        _merge(overrides, {"name": value} if section == "name" else {section: {field_name: value}})
    if mesh is not None:
        width, height = parse_mesh(mesh) if isinstance(mesh, str) else mesh
        _merge(overrides, {"mesh": {"width": width, "height": height}})
    return apply_overrides(spec, overrides)
