"""The MCP tool entry: allowed_tools and require_approval filters, function names, the echo without secrets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from respd.tools.mcp.config import McpToolConfig, function_name
from respd.tools.mcp.listing import ToolInfo, from_item, latest_lists, list_item

READ = ToolInfo("read_wiki", "Read", {"type": "object"}, {"readOnlyHint": True})
WRITE = ToolInfo("write_wiki", "Write", {"type": "object"}, {"destructiveHint": True})
PLAIN = ToolInfo("ask", None, {"type": "object"}, None)


def config(**fields: Any) -> McpToolConfig:
    return McpToolConfig.model_validate({"type": "mcp", "server_label": "wiki", "server_url": "https://x", **fields})


@pytest.mark.parametrize(
    ("rule", "asks"),
    [
        (None, {"read_wiki", "write_wiki", "ask"}),  # the API's default is "always"
        ("always", {"read_wiki", "write_wiki", "ask"}),
        ("never", set()),
        ({"never": {"tool_names": ["ask"]}}, {"read_wiki", "write_wiki"}),
        ({"never": {"read_only": True}}, {"write_wiki", "ask"}),
        ({"always": {"tool_names": ["write_wiki"]}}, {"write_wiki"}),
        ({"always": {"read_only": False}, "never": {"read_only": True}}, {"write_wiki", "ask"}),
        ({"always": {"tool_names": ["write_wiki"]}, "never": {"tool_names": ["read_wiki"]}}, {"write_wiki", "ask"}),
        ({"never": {}}, set()),
    ],
)
def test_require_approval(rule: Any, asks: set[str]) -> None:
    c = config(require_approval=rule) if rule is not None else config()
    assert {t.name for t in (READ, WRITE, PLAIN) if c.needs_approval(t)} == asks


@pytest.mark.parametrize(
    ("allowed", "offered"),
    [
        (None, {"read_wiki", "write_wiki", "ask"}),
        (["ask", "nope"], {"ask"}),
        ([], set()),
        ({"read_only": True}, {"read_wiki"}),
        ({"tool_names": ["ask", "read_wiki"], "read_only": False}, {"ask"}),
    ],
)
def test_allowed_tools(allowed: Any, offered: set[str]) -> None:
    c = config(allowed_tools=allowed)
    assert {t.name for t in (READ, WRITE, PLAIN) if c.allows(t)} == offered


def test_function_names_are_safe_and_distinct() -> None:
    assert function_name("wiki", "read_wiki") == "wiki__read_wiki"
    odd = function_name("wiki", "files/read.v2")
    assert odd.startswith("wiki__files_read_v2_") and odd != function_name("wiki", "files_read_v2")
    long = function_name("a" * 40, "b" * 40)
    assert len(long) == 64 and long != function_name("a" * 40, "b" * 41)


def test_echo_leaves_out_secrets() -> None:
    c = config(authorization="tok", headers={"X-Key": "secret"}, allowed_tools=["ask"])
    assert c.echo() == {"type": "mcp", "server_label": "wiki", "server_url": "https://x", "allowed_tools": ["ask"],
                        "require_approval": "always"}  # fmt: skip


def test_list_items_round_trip() -> None:
    item = list_item("wiki", [READ, PLAIN])
    assert item["id"].startswith("mcpl_") and "error" not in item
    assert from_item(item) == [READ, PLAIN]
    failed = list_item("wiki", error="down")
    assert from_item(failed) is None and failed["tools"] == []
    newer = list_item("wiki", [WRITE])
    assert latest_lists([item, failed, newer, {"type": "message"}]) == {"wiki": [WRITE]}


def test_credentials_are_sealed_in_a_stored_request() -> None:
    from respd.sealing import Sealer, SealError
    from respd.tools.mcp.secrets import open_request, seal_request

    sealer = Sealer(bytes(32))
    tool = {"type": "mcp", "server_label": "s", "server_url": "https://x", "authorization": "tok-123",
            "headers": {"X-Api-Key": "key-456"}}  # fmt: skip
    body = orjson.dumps({"model": "m", "tools": [tool], "input": [{"type": "additional_tools", "tools": [tool]}]})
    sealed = seal_request(sealer, "tenant-a", body)
    assert b"tok-123" not in sealed and b"key-456" not in sealed and sealed.count(b"respd-sealed:") == 4
    assert orjson.loads(open_request(sealer, "tenant-a", sealed)) == orjson.loads(body)
    with pytest.raises(SealError):
        open_request(sealer, "tenant-b", sealed)
    plain = orjson.dumps({"model": "m", "tools": [{"type": "function", "name": "f"}]})
    assert seal_request(sealer, "t", plain) is plain and open_request(sealer, "t", plain) is plain


def test_tools_in_input_items_are_stored_without_credentials() -> None:
    from respd.engine.items import normalize
    from respd.wire.items import AdditionalTools

    mcp = {"type": "mcp", "server_label": "s", "server_url": "https://x", "authorization": "tok", "headers": {"K": "v"}}
    item = AdditionalTools.model_validate({"type": "additional_tools", "tools": [mcp, {"type": "function", "name": "f"}]})
    stored = normalize(item)["tools"]
    assert stored == [{"type": "mcp", "server_label": "s", "server_url": "https://x"}, {"type": "function", "name": "f"}]
