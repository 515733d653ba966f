"""Every kernel of the library, by name.

Importing this module imports each module of the kernel package (except ``base``,
``registry``, ``runner`` and private modules starting with ``_``), so that every kernel module's
``@register`` runs: a new kernel file appears here without editing this one.
"""

from __future__ import annotations

import importlib
import pkgutil

from wse_sim.errors import ConfigError

from .base import KERNELS, Kernel

SKIP = frozenset({"base", "registry", "runner"})


def _load_all() -> None:
    package = __name__.rpartition(".")[0]
    path = importlib.import_module(package).__path__
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name in SKIP or info.name.startswith("_"):
            continue
        importlib.import_module(f"{package}.{info.name}")
    ordered = sorted(KERNELS.items())  # listings show kernels by name
    KERNELS.clear()
    KERNELS.update(ordered)


_load_all()


def get_kernel(name: str) -> Kernel:
    """The registered kernel ``name``; a :class:`ConfigError` lists the names otherwise."""
    try:
        return KERNELS[name]
    except KeyError:
        raise ConfigError(
            "kernel", name, f"unknown kernel; use one of {', '.join(sorted(KERNELS))}"
        ) from None


__all__ = ["KERNELS", "get_kernel"]
