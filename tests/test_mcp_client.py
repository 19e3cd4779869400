"""The MCP client (respd.tools.mcp.client) against a real MCP server: listing, calls, errors, pooling, policy."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from respd.outbound import OutboundPolicy
from respd.tools.mcp.client import (
    McpHttpError,
    McpTimeout,
    McpUnreachable,
    Server,
    Sessions,
)
from respd.tools.mcp.servers import parse_servers
from tests.mcp_server import TestMcpServer, free_port

LOCAL = OutboundPolicy(allow=("127.0.0.1:*",))


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[TestMcpServer]:
    with TestMcpServer() as srv:
        yield srv


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_lists_tools_and_calls_them_over_one_pooled_session(mcp_server: TestMcpServer) -> None:
    server = Server(mcp_server.url, LOCAL, headers=(("Authorization", "Bearer tok-1"), ("X-Team", "docs")))

    async def go() -> tuple[Any, ...]:
        pool = Sessions()
        try:
            tools = await pool.list_tools(server)
            before = len(mcp_server.headers)
            results = [await pool.call_tool(server, "add", {"a": i, "b": 2}) for i in range(5)]
            return tools, results, len(mcp_server.headers) - before, len(pool)
        finally:
            await pool.aclose()

    tools, results, requests, sessions = run(go())
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"add", "echo", "slow", "fail", "delete_file"}
    assert by_name["add"].input_schema["required"] == ["a", "b"] and by_name["add"].read_only
    assert by_name["add"].as_json()["annotations"] == {"readOnlyHint": True}
    assert not by_name["delete_file"].read_only
    assert [r.output for r in results] == ["2", "3", "4", "5", "6"] and not results[0].is_error
    assert requests == 5 and sessions == 1  # one HTTP exchange per call: the session was reused
    assert mcp_server.headers[-1]["authorization"] == "Bearer tok-1" and mcp_server.headers[-1]["x-team"] == "docs"


def test_tool_errors_timeouts_and_unknown_tools(mcp_server: TestMcpServer) -> None:
    server = Server(mcp_server.url, LOCAL)

    async def go() -> tuple[Any, ...]:
        pool = Sessions()
        try:
            failed = await pool.call_tool(server, "fail", {"reason": "disk full"})
            unknown = await pool.call_tool(server, "nope", {})
            with pytest.raises(McpTimeout) as timeout:
                await pool.call_tool(server, "slow", {"seconds": 3}, timeout_s=0.3)
            after = await pool.call_tool(server, "echo", {"text": "still here"})
            return failed, unknown, timeout.value, after
        finally:
            await pool.aclose()

    failed, unknown, timeout, after = run(go())
    assert failed.is_error and failed.content[0]["type"] == "text"
    assert unknown.is_error and "nope" in unknown.output
    assert timeout.error == {"type": "mcp_protocol_error", "code": -32001, "message": timeout.message}
    assert after.output == "still here"  # a timed-out call leaves the session usable


def test_unreachable_refused_and_http_errors() -> None:
    async def go() -> list[Exception]:
        pool = Sessions()
        errors: list[Exception] = []
        for server in (
            Server(f"http://127.0.0.1:{free_port()}/mcp", LOCAL),  # nothing listens
            Server("http://127.0.0.1:5432/", OutboundPolicy()),  # loopback, not allowed by default
        ):
            try:
                await pool.list_tools(server)
            except Exception as exc:
                errors.append(exc)
        await pool.aclose()
        return errors

    down, refused = run(go())
    assert isinstance(down, McpUnreachable) and down.error["code"] == -32000
    assert isinstance(refused, McpUnreachable) and "not allowed" in refused.message and "127.0.0.1" in refused.message


def test_http_status_is_reported(mcp_server: TestMcpServer) -> None:
    async def go() -> Exception:
        pool = Sessions()
        try:
            await pool.list_tools(Server(f"http://127.0.0.1:{mcp_server.port}/elsewhere", LOCAL, transport="streamable_http"))
        except Exception as exc:
            return exc
        finally:
            await pool.aclose()
        raise AssertionError("listing a missing endpoint succeeded")

    err = run(go())
    assert isinstance(err, McpHttpError) and err.error["type"] == "http_error" and err.error["code"] == 404


def test_sse_only_server_is_found_by_trying() -> None:
    with TestMcpServer(sse_only=True) as sse:

        async def go() -> Any:
            pool = Sessions()
            try:
                return await pool.call_tool(Server(sse.url, LOCAL), "echo", {"text": "over sse"})
            finally:
                await pool.aclose()

        assert run(go()).output == "over sse"
        assert any(h.get("accept", "").startswith("text/event-stream") for h in sse.headers)


def test_pool_is_bounded_and_a_restarted_server_gets_a_new_session() -> None:
    with TestMcpServer() as a, TestMcpServer() as b:
        servers = [Server(a.url, LOCAL), Server(b.url, LOCAL), Server(a.url, LOCAL, headers=(("X-Key", "2"),))]

        async def go() -> tuple[int, str]:
            pool = Sessions(max_sessions=2)
            try:
                for server in servers:
                    await pool.call_tool(server, "add", {"a": 1, "b": 1})
                size = len(pool)
                a.stop()
                a.start()  # same port, new process state: the old session is unknown there
                result = await pool.call_tool(servers[2], "echo", {"text": "again"})
                return size, result.output
            finally:
                await pool.aclose()

        size, output = run(go())
        assert size == 2 and output == "again"


def test_mcp_servers_config() -> None:
    (srv,) = parse_servers([{"connector_id": "docs", "url": "https://docs.example/mcp", "authorization_env": "T",
                             "headers_env": {"X-Team": "TEAM"}}])  # fmt: skip
    assert srv.headers({"T": "s3cret", "TEAM": "blue"}) == (("X-Team", "blue"), ("Authorization", "Bearer s3cret"))
    assert srv.headers({}) == ()
    assert srv.policy(OutboundPolicy(public=False)).allow == ("docs.example:443",)
    for bad, words in [
        ([{"url": "https://x"}], "connector_id"),
        ([{"connector_id": "a", "url": "ftp://x"}], "http"),
        ([{"connector_id": "a", "url": "https://x", "transport": "ws"}], "transport"),
        ([{"connector_id": "a", "url": "https://x", "token": "t"}], "unknown keys"),
        ([{"connector_id": "a", "url": "https://x"}, {"connector_id": "a", "url": "https://y"}], "unique"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_servers(bad)
