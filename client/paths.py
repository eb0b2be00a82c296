"""Where the daemon's socket lives; the daemon and every client agree through here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

SOCKET_ENV: Final = "MEMORYD_SOCKET"
SOCKET_NAME: Final = "memoryd.sock"


def default_socket_path() -> Path:
    """The socket path used when none is given.

    In order: ``$MEMORYD_SOCKET`` if set and non-empty; else
    ``$XDG_RUNTIME_DIR/memoryd/memoryd.sock`` if ``XDG_RUNTIME_DIR`` is set and
    non-empty; else ``/tmp/memoryd-{uid}/memoryd.sock``, a per-user folder that
    the daemon creates with mode 0700.  Pure: reads the environment, touches
    no file.
    """
    explicit = os.environ.get(SOCKET_ENV)
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "memoryd" / SOCKET_NAME
    return Path("/tmp") / f"memoryd-{os.getuid()}" / SOCKET_NAME
