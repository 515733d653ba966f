"""Regenerate the option tables of docs/cli.md from the ``wse-sim`` argparse parsers.

docs/cli.md is hand-written prose around generated blocks::

    <!-- BEGIN generated: sweep -->
    ...synopsis and option tables, made by this script...
    <!-- END generated: sweep -->

one block per subcommand (plus ``commands``, the list of subcommands). Running the script
rewrites every block in place; a subcommand without a block gets a new section at the end of the
file, to be given prose by hand. ``--check`` writes nothing and exits with 1 when the file is
out of date (tests/test_cli_e2e.py runs it).

    python docs/gen_cli_reference.py          # rewrite docs/cli.md
    python docs/gen_cli_reference.py --check  # exit 1 if docs/cli.md is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from wse_sim.cli.main import PROG, build_parser

CLI_MD = Path(__file__).resolve().parent / "cli.md"
WIDTH = 100
"""Longest synopsis line, in characters."""
COMMANDS_BLOCK = "commands"
BLOCK_RE = re.compile(
    r"<!-- BEGIN generated: (?P<name>[\w-]+) -->\n.*?<!-- END generated: (?P=name) -->",
    re.DOTALL,
)


# -- reading the parsers ---------------------------------------------------------------------------
def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Subcommand name -> its parser, in the order ``wse-sim --help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Subcommand name -> its one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _shown(action: argparse.Action) -> bool:
    return action.help is not argparse.SUPPRESS and not isinstance(
        action, (argparse._HelpAction, argparse._VersionAction)
    )


def metavar(action: argparse.Action) -> str:
    """What stands for the value: the metavar, ``{a,b}`` for choices, else the dest."""
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def usage_item(action: argparse.Action) -> str:
    """One synopsis item: ``RESULT.json``, ``[--kind {..}]``, ``--out DIR``, ``[--set X]...``."""
    if not action.option_strings:
        text = metavar(action)
        return f"[{text}]" if action.nargs in ("?", "*") else text
    if isinstance(action, argparse.BooleanOptionalAction):
        text = " | ".join(action.option_strings)
        return text if action.required else f"[{text}]"
    flag = max(action.option_strings, key=len)
    text = f"{flag} {metavar(action)}" if takes_value(action) else flag
    if not action.required:
        text = f"[{text}]"
    if isinstance(action, argparse._AppendAction):
        text += "..."
    return text


def synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    """The usage line(s), positionals first, wrapped at :data:`WIDTH` with a hanging indent.

    Options of a mutually exclusive group are shown together: ``(--a A | --b B)`` when one of
    them is required, ``[--a A | --b B]`` otherwise.
    """
    actions = [a for a in parser._actions if _shown(a)]
    mutex = {}
    for group in parser._mutually_exclusive_groups:
        members = [a for a in group._group_actions if _shown(a)]
        for a in members:
            mutex[a] = (group, members)
    items = [usage_item(a) for a in actions if not a.option_strings]
    done = set()
    for a in actions:
        if not a.option_strings or a in done:
            continue
        if a in mutex:
            group, members = mutex[a]
            done.update(members)
            inner = " | ".join(usage_item(m).strip("[]") for m in members)
            items.append(f"({inner})" if group.required else f"[{inner}]")
        else:
            items.append(usage_item(a))
    head = f"{PROG} {name}"
    lines, line = [], head
    indent = " " * (len(head) + 1)
    for item in items:
        if len(line) + 1 + len(item) > WIDTH and line.strip() != head:
            lines.append(line)
            line = indent + item
        else:
            line += " " + item
    lines.append(line)
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def help_text(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if not text and action.choices is not None:
        text = "one of " + ", ".join(str(c) for c in action.choices)
    if "%(" in text:
        text = text % {**vars(action), "prog": parser.prog}
    return _cell(text)


def default_text(action: argparse.Action) -> str:
    """The default as the table shows it: ``off`` for a flag, ``see meaning`` when the help
    states a computed default, ``—`` when there is none."""
    default = action.default
    if action.required:
        return "—"
    if action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction):
        return "on" if default is True else "off"
    if default in (None, [], argparse.SUPPRESS):
        return "see meaning" if "default" in (action.help or "") else "—"
    return f"`{default}`"


def option_name(action: argparse.Action) -> str:
    """The option as a table cell: ``--flag METAVAR`` in code (``|`` escaped for the table)."""
    if not action.option_strings:
        text = metavar(action)
    else:
        flags = ", ".join(action.option_strings)
        text = f"{flags} {metavar(action)}" if takes_value(action) else flags
    return "`" + text.replace("|", "\\|") + "`"


def option_tables(parser: argparse.ArgumentParser) -> str:
    """One table per argument group that has options: option, meaning, default."""
    out: list[str] = []
    required_choice = {}
    for mutex in parser._mutually_exclusive_groups:
        if mutex.required:
            flags = ", ".join(f"`{max(m.option_strings, key=len)}`" for m in mutex._group_actions)
            required_choice.update(dict.fromkeys(mutex._group_actions, flags))
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if _shown(a)]
        if not actions:
            continue
        title = group.title or "options"
        if title in ("options", "optional arguments"):
            title = "options"
        elif title == "positional arguments":
            title = "arguments"
        out.append(f"*{title}*\n")
        out.append("| option | meaning | default |")
        out.append("|---|---|---|")
        for a in actions:
            note = " (required)" if a.required and a.option_strings else ""
            if a in required_choice:
                note = " (give one of " + required_choice[a] + ")"
            out.append(f"| {option_name(a)} | {help_text(a, parser)}{note} | {default_text(a)} |")
        out.append("")
    return "\n".join(out).rstrip("\n")


def command_block(name: str, parser: argparse.ArgumentParser) -> str:
    """The generated body of one subcommand's block."""
    return f"```\n{synopsis(name, parser)}\n```\n\n{option_tables(parser)}"


def commands_block(parser: argparse.ArgumentParser) -> str:
    """The list of subcommands with their one-line help."""
    rows = ["| command | what it does |", "|---|---|"]
    for name, text in command_help(parser).items():
        rows.append(f"| [`{name}`](#{name}) | {_cell(text)} |")
    return "\n".join(rows)


def blocks() -> dict[str, str]:
    """Every generated block by name: ``commands`` first, then each subcommand."""
    parser = build_parser()
    made = {COMMANDS_BLOCK: commands_block(parser)}
    for name, sub in subparsers(parser).items():
        made[name] = command_block(name, sub)
    return made


# -- rewriting the document -------------------------------------------------------------------------
def wrap(name: str, body: str) -> str:
    return f"<!-- BEGIN generated: {name} -->\n{body}\n<!-- END generated: {name} -->"


def render(text: str, made: dict[str, str]) -> str:
    """``text`` with every known block replaced and missing subcommands appended."""
    found: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in made:
            return match.group(0)  # a command this installation does not have: leave it
        found.add(name)
        return wrap(name, made[name])

    new = BLOCK_RE.sub(replace, text)
    for name, body in made.items():
        if name not in found:
            new = new.rstrip("\n") + f"\n\n## {name}\n\n{wrap(name, body)}\n"
    return new


def stale_blocks(text: str, made: dict[str, str]) -> list[str]:
    """Names of blocks that are missing or differ from what the parsers give."""
    present = {m.group("name"): m.group(0) for m in BLOCK_RE.finditer(text)}
    return [name for name, body in made.items() if present.get(name) != wrap(name, body)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    ap.add_argument("--path", type=Path, default=CLI_MD, help="the file (default docs/cli.md)")
    args = ap.parse_args(argv)
    text = args.path.read_text()
    made = blocks()
    if args.check:
        stale = stale_blocks(text, made)
        if stale:
            print(
                f"{args.path}: out of date for {', '.join(stale)}; "
                "run python docs/gen_cli_reference.py",
                file=sys.stderr,
            )
            return 1
        return 0
    new = render(text, made)
    if new != text:
        args.path.write_text(new)
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
