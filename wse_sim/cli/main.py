"""The ``wse-sim`` command: one subcommand per module ``wse_sim/cli/cmd_*.py``.

Each such module defines ``NAME`` (the subcommand), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Usage errors and user errors (:class:`wse_sim.errors.WseSimError`) print
one line on stderr and exit with code 2; nothing is printed as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import wse_sim
from wse_sim.errors import WseSimError

PROG = "wse-sim"

ORDER: tuple[str, ...] = (
    "run",
    "kernel",
    "compare",
    "sweep",
    "heatmap",
    "trace",
    "hardware",
    "presets",
)
"""Subcommands listed first in ``--help``, in this order; any others follow by name."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def _commands() -> list[ModuleType]:
    """Every module ``wse_sim/cli/cmd_*.py``, in :data:`ORDER` then by name."""
    import wse_sim.cli as cli_pkg

    modules = []
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            modules.append(importlib.import_module(f"wse_sim.cli.{info.name}"))
    modules.sort(key=lambda m: (ORDER.index(m.NAME) if m.NAME in ORDER else len(ORDER), m.NAME))
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Cycle-approximate simulator of wafer-scale engines for Transformer workloads.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {wse_sim.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in _commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_handler=module.run)
    return parser


def _error(message: str) -> None:
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; return the exit code (0 ok, 2 usage or user error, 130 interrupt)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_handler", None) is None:
        names = ", ".join(m.NAME for m in _commands())
        _error(f"choose a COMMAND: {names} (see --help)")
        return 2
    try:
        return int(args._handler(args) or 0)
    except WseSimError as exc:
        _error(str(exc))
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
