"""A tiny progress bar on stderr, drawn only when stderr is a terminal.

Usage::

    with progress(total=len(points), label="sweep") as bar:
        for p in points:
            ...
            bar.advance()

When the stream is not a terminal (a pipe, a file, a CI log) nothing is written at all, so the
output of a command stays clean. No third-party dependency.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

BAR_WIDTH = 30
"""Characters of the bar itself."""

MIN_REDRAW_SECONDS = 0.1
"""At most one redraw per this many seconds (wall clock), except the final one."""


class ProgressBar:
    """Counts finished items out of ``total`` and redraws one line on ``stream``.

    Attributes:
        total: items expected (>= 0).
        done: items finished so far.
        enabled: whether anything is drawn (``False`` when the stream is not a terminal).
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty()) if callable(isatty) else False
        self.enabled = enabled
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more items finished and redraw (rate-limited)."""
        self.done += n
        now = time.monotonic()
        if self.done >= self.total or now - self._last_draw >= MIN_REDRAW_SECONDS:
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        """The text of the bar, e.g. ``sweep [#######.......]  7/30  23%  4.1s``."""
        now = time.monotonic() if now is None else now
        frac = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        filled = int(round(frac * BAR_WIDTH))
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        elapsed = now - self._start
        label = f"{self.label} " if self.label else ""
        return f"{label}[{bar}] {self.done}/{self.total} {frac * 100:3.0f}% {elapsed:6.1f}s"

    def _draw(self, now: float) -> None:
        self._last_draw = now
        if not self.enabled:
            return
        self.stream.write("\r" + self.render(now))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Draw the final state and end the line (only if something was drawn)."""
        if not self.enabled:
            return
        self._draw(time.monotonic())
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


@contextmanager
def progress(
    total: int,
    label: str = "",
    stream: TextIO | None = None,
    enabled: bool | None = None,
) -> Iterator[ProgressBar]:
    """Context manager yielding a :class:`ProgressBar`; the line is finished on exit.

    ``enabled=None`` (default) draws only when ``stream`` (default stderr) is a terminal.
    """
    bar = ProgressBar(total, label, stream=stream, enabled=enabled)
    try:
        yield bar
    finally:
        bar.close()
