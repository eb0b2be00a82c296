"""Every Python package in the code folders is installed by a wheel, not only by -e."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_FOLDERS = {
    "daemon": "memoryd.daemon",
    "client": "memoryd.client",
    "storage": "memoryd.storage",
    "crypto": "memoryd.crypto",
}


def test_every_code_package_is_listed_for_the_wheel() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for folder, name in CODE_FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed, f"pyproject packages differ: missing {found - listed}"
    assert {setuptools["package-dir"][name] for name in CODE_FOLDERS.values()} == set(CODE_FOLDERS)
