"""A one-line progress bar on stderr, for long imports and exports.

Off unless the stream is a terminal, so that logs and pipes never receive
carriage returns.  Redrawn at most every ``redraw_interval_s``, so that a
fast loop does not spend its time drawing.
"""

from __future__ import annotations

import sys
import time
from typing import Final, TextIO

BAR_CHARS: Final = 30
REDRAW_INTERVAL_S: Final = 0.1


class Progress:
    """``update(done)`` as work goes on, ``finish()`` at the end (clears the line)."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self._stream, "isatty", None)
            enabled = bool(isatty is not None and isatty())
        self.enabled = enabled
        self._label = label
        self._total = max(total, 0)
        self._unit = unit
        self._done = 0
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int, total: int | None = None) -> None:
        self._done = done
        if total is not None:
            self._total = max(total, 0)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= REDRAW_INTERVAL_S:
            self._last_draw = now
            self._draw()

    def finish(self) -> None:
        if self.enabled and self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def line(self) -> str:
        """The text drawn: label, bar, done/total and percent."""
        total = self._total
        fraction = min(self._done / total, 1.0) if total else 0.0
        filled = int(fraction * BAR_CHARS)
        bar = "#" * filled + "-" * (BAR_CHARS - filled)
        return f"{self._label} [{bar}] {self._done}/{total}{self._unit} {fraction * 100:5.1f}%"

    def _draw(self) -> None:
        self._stream.write("\r" + self.line())
        self._stream.flush()
        self._drawn = True
