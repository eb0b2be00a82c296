"""Waiting for a real daemon's builder to catch up, for the builder's tests."""

from __future__ import annotations

import time

from memoryd.client import Client


def wait_built(client: Client, timeout_s: float = 30.0) -> None:
    """Until ``builder_lag`` is 0 (everything committed is applied); fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while client.stats()["builder_lag"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.stats()["builder_lag"] == 0
