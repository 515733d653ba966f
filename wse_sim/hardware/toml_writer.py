"""Write a :class:`WaferSpec` as a complete TOML hardware file that ``--hw`` loads back."""

from __future__ import annotations

from wse_sim.hardware.spec import SECTIONS, WaferSpec, field_info

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quoted, control characters escaped)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_number(value: int | float) -> str:
    """An int or a finite float as TOML; ``repr`` keeps floats exact (``1100000000.0``)."""
    return repr(int(value)) if isinstance(value, int) else repr(float(value))


def spec_to_toml(spec: WaferSpec) -> str:
    """Every field of ``spec``, one table per section, each with its unit as a comment."""
    lines = [
        "# wse-sim hardware file: load it with `wse-sim ... --hw FILE.toml`.",
        "# Every field is given, so the base preset does not matter.",
        f"name = {toml_string(spec.name)}",
    ]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        values = getattr(spec, section)
        for name in values.__dataclass_fields__:
            info = field_info(section, name)
            note = f"{info.unit}; {info.doc}" + ("; estimate" if info.estimate else "")
            lines.append(f"{name} = {toml_number(getattr(values, name))}  # {note}")
    return "\n".join(lines) + "\n"
