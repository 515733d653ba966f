"""Arguments shared by several subcommands, and how they become typed values."""

from __future__ import annotations

import argparse

from wse_sim.hardware.loader import build_spec
from wse_sim.hardware.presets import DEFAULT_PRESET, PRESETS
from wse_sim.hardware.spec import WaferSpec


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (a size, a count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a whole number >= 1")
    return value


def add_hardware_arguments(
    parser: argparse.ArgumentParser, default_preset: str = DEFAULT_PRESET
) -> None:
    """``--preset``, ``--mesh``, ``--hw`` and ``--set``."""
    g = parser.add_argument_group("hardware")
    g.add_argument(
        "--preset",
        default=None,
        help=f"hardware preset ({', '.join(PRESETS)}; default: the --hw file's preset, "
        f"else {default_preset})",
    )
    g.add_argument("--mesh", default=None, metavar="WxH", help="mesh size in PEs, e.g. 64x64")
    g.add_argument(
        "--hw",
        default=None,
        metavar="FILE.toml",
        help="hardware file: any subset of [mesh], [pe], [fabric], [io]; optional preset, name",
    )
    g.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one hardware field, e.g. fabric.hop_latency_cycles=2 (repeatable)",
    )
    parser.set_defaults(_default_preset=default_preset)


def spec_from_args(args: argparse.Namespace) -> WaferSpec:
    """Build the :class:`WaferSpec` named by the hardware arguments."""
    return build_spec(
        preset=args.preset,
        hw_file=args.hw,
        sets=args.sets,
        mesh=args.mesh,
        default_preset=getattr(args, "_default_preset", DEFAULT_PRESET),
    )
