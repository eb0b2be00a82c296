"""Where the socket is looked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memoryd.client.paths import default_socket_path


def test_explicit_socket_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORYD_SOCKET", "/somewhere/m.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1")
    assert default_socket_path() == Path("/somewhere/m.sock")


def test_runtime_dir_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORYD_SOCKET", "")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1")
    assert default_socket_path() == Path("/run/user/1/memoryd/memoryd.sock")


def test_private_tmp_folder_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMORYD_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert default_socket_path() == Path(f"/tmp/memoryd-{os.getuid()}/memoryd.sock")
