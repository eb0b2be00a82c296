"""Rules about crypto's source itself: one nonce source, no forbidden imports, no key in a repr."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import inspect
from pathlib import Path

import memoryd.crypto
from memoryd.crypto import errors

PACKAGE_DIR = Path(memoryd.crypto.__file__).parent
SOURCES = sorted(PACKAGE_DIR.glob("*.py"))
MODULES = [importlib.import_module(f"memoryd.crypto.{p.stem}") for p in SOURCES]
# Every way Python offers to get random bytes.
RANDOM_NAMES = {"urandom", "getrandom", "token_bytes", "token_hex", "randbytes", "SystemRandom"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _random_uses(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, name) for every use of a random source in ``path``."""
    uses: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name
            name = ""
            if isinstance(child, ast.Attribute):
                name = child.attr
            elif isinstance(child, ast.Name):
                name = child.id
            aesgcm_keygen = name == "generate_key" and isinstance(child, ast.Attribute)
            if name in RANDOM_NAMES or aesgcm_keygen:
                uses.append((function, name))
            visit(child, inner)

    visit(_tree(path), "<module>")
    return uses


def test_nonces_are_made_in_nonces_py_and_keys_only_in_generate_keys() -> None:
    uses = {path.name: _random_uses(path) for path in SOURCES}
    assert uses.pop("nonces.py") == [
        ("new_nonce", "urandom"),
        ("new_nonces", "urandom"),
        ("new_salt", "urandom"),
        ("new_keyring_id", "urandom"),
    ]
    assert uses.pop("keys.py") == [("generate_keys", "urandom")]
    assert {name: found for name, found in uses.items() if found} == {}


def test_no_random_module_is_imported() -> None:
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {"random", "secrets"} & set(names), path.name


def test_crypto_imports_no_asyncio_logging_or_other_memoryd_package() -> None:
    forbidden = ("asyncio", "logging", "memoryd.daemon", "memoryd.client", "memoryd.storage")
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert not module.startswith(forbidden), f"{path.name} imports {module}"


def test_exceptions_end_in_error_and_shadow_no_builtin() -> None:
    classes = [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    ]
    assert len(classes) >= 8
    for cls in classes:
        assert cls.__name__.endswith("Error")
        assert not hasattr(builtins, cls.__name__)
        assert issubclass(cls, errors.CryptoError)


def test_dataclass_fields_holding_keys_or_wrapped_bytes_are_left_out_of_repr() -> None:
    secretive = ("SecretKey", "EnvelopeKey", "HMAC", "bytearray")
    checked = 0
    for module in MODULES:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not dataclasses.is_dataclass(cls):
                continue
            for f in dataclasses.fields(cls):
                kind = str(f.type)
                wrapped_bytes = "wrapped" in f.name and "bytes" in kind
                if wrapped_bytes or any(word in kind for word in secretive):
                    checked += 1
                    assert f.repr is False, f"{cls.__name__}.{f.name} shows in repr"
    assert checked >= 4  # HeldKey.secret, HeldKey._envelope, Entry.wrapped, KeyringFile's


def test_the_format_document_names_every_magic_and_limit() -> None:
    spec = (PACKAGE_DIR / "FORMAT.md").read_text()
    from memoryd.crypto import envelope, keyring_file, keystore

    for magic in (envelope.MAGIC, keyring_file.MAGIC, keystore.MAGIC):
        assert " ".join(f"{b:02X}" for b in magic) in spec
    assert f"{envelope.PLAINTEXT_BYTES_MAX:,}" in spec
    assert f"{keystore.ENTRY_BYTES} bytes" in spec
    assert "126 + 79 K" in spec
