"""PROTOCOL.md stays true: its byte example, its tables and its example client."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import memoryd.client
from memoryd.client import errors, protocol

from .test_client_server import running_server

SPEC = Path(memoryd.client.__file__).with_name("PROTOCOL.md").read_text(encoding="utf-8")


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SPEC, flags=re.DOTALL)


def test_hex_example_is_the_real_encoding_of_hello() -> None:
    expected = protocol.encode_request(1, "hello", {"protocol": 1, "client": "example"})
    hex_lines = [b for b in _code_blocks("") if re.fullmatch(r"[0-9a-f ]+\n", b)]
    assert [bytes.fromhex(line) for line in hex_lines] == [expected]
    assert f"the {len(expected)} bytes on the wire" in SPEC


@pytest.mark.parametrize("code", sorted(errors.ERROR_CODES))
def test_every_error_code_is_specified(code: str) -> None:
    assert re.search(rf"^\| `{code}` \|", SPEC, flags=re.MULTILINE), code


@pytest.mark.parametrize(("name", "value"), sorted(protocol.LIMITS.items()))
def test_every_limit_is_specified_with_its_value(name: str, value: int) -> None:
    assert re.search(rf"^\| `{name}` \| {value}\b", SPEC, flags=re.MULTILINE), name


def test_example_client_works_against_a_protocol_server() -> None:
    (source,) = _code_blocks("python")
    namespace: dict[str, Any] = {"__name__": "protocol_example"}
    exec(compile(source, "PROTOCOL.md", "exec"), namespace)
    with running_server() as server:
        memory = namespace["Memoryd"](str(server.path))
        try:
            assert memory.info["protocol"] == 1
            stored = memory.call("put", {"content": "plain 🐍", "tags": ["demo"]})
            assert memory.call("get", {"id": stored["id"]})["frame"]["content"] == "plain 🐍"
            with pytest.raises(namespace["MemorydError"]) as info:
                memory.call("get", {"id": "0" * 32})
            assert info.value.code == "not_found"
        finally:
            memory.close()
