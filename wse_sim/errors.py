"""Errors that carry a one-line message for the user.

Every error a user can cause derives from :class:`WseSimError`; the CLI prints its message on one
line and exits with code 2. Library code raises, it never calls ``exit``.
"""

from __future__ import annotations

from typing import Any


class WseSimError(Exception):
    """Base class: the message is one line that says what to change."""


class ConfigError(WseSimError, ValueError):
    """A configuration value is invalid: names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: {allowed}")


class PlanError(WseSimError):
    """A kernel or placement does not fit: names what, bytes needed, bytes available, a fix."""


class SramOverflowError(PlanError):
    """An SRAM allocation on one PE would exceed its capacity."""


class DeadlockError(WseSimError):
    """Nothing can progress while work is pending; ``waits`` lists who waits on whom.

    Attributes:
        cycle: the wait-for cycle as a list of human-readable descriptions (may be empty when
            the stall is not cyclic, e.g. a receive that no PE ever sends to).
        waits: every pending wait as ``(waiter, resource, holder)`` strings.
        time: simulated cycle at which progress stopped.
    """

    def __init__(
        self, message: str, cycle: list[str], waits: list[tuple[str, str, str]], time: float
    ):
        self.cycle = cycle
        self.waits = waits
        self.time = time
        super().__init__(message)
