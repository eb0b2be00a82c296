"""Logging to stderr: one line per event with its level, readable by journald.

Under systemd (``JOURNAL_STREAM`` set) lines carry a ``<N>`` syslog priority
prefix, which journald turns into the entry's priority, and no timestamp
(journald adds its own).  Elsewhere lines start with a UTC timestamp.
No log line ever includes the content of a memory.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.levelname.lower()} {record.name}: {record.getMessage()}"


def configure_logging(level: str) -> None:
    """Send the daemon's log to stderr at ``level`` (debug, info, warning, error)."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter())
    else:
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger("memoryd")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
