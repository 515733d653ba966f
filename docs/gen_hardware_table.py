"""Generate the field tables of docs/hardware.md from the code (``wse_sim.hardware``).

    python docs/gen_hardware_table.py           rewrite the tables in docs/hardware.md
    python docs/gen_hardware_table.py --check   exit 1 if docs/hardware.md is out of date

The tables sit between the markers ``<!-- hardware-table:start -->`` and
``<!-- hardware-table:end -->``; everything outside them is written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wse_sim.hardware.presets import PRESETS
from wse_sim.hardware.spec import iter_fields

DOC = Path(__file__).with_name("hardware.md")
START = "<!-- hardware-table:start -->"
END = "<!-- hardware-table:end -->"


def _value(value: int | float) -> str:
    """``1.1e9`` for large floats, plain digits for ints."""
    if isinstance(value, float):
        return f"{value:.6g}".replace("e+0", "e").replace("e+", "e")
    return str(value)


def tables() -> str:
    """Two markdown tables: preset values by field, then description and source by field."""
    names = list(PRESETS)
    head = ["field", "unit", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for info in iter_fields():
        values = [_value(getattr(getattr(PRESETS[n].spec, info.section), info.name)) for n in names]
        lines.append(f"| `{info.key}` | {info.unit} | " + " | ".join(values) + " |")
    lines += ["", "| field | meaning | estimate? | source |", "|---|---|---|---|"]
    for info in iter_fields():
        est = "**estimate**" if info.estimate else "no"
        lines.append(f"| `{info.key}` | {info.doc} | {est} | {info.source} |")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with the part between the markers replaced by :func:`tables`."""
    if START not in text or END not in text:
        raise SystemExit(f"{DOC}: markers {START} and {END} not found")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{tables()}\n{END}{after}"


def main(argv: list[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print(f"{DOC} is out of date: run python docs/gen_hardware_table.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
