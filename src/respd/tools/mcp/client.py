"""A client of remote MCP servers: list a server's tools and call one, with the official ``mcp`` SDK.

Sessions are pooled: one live session per server and credentials (URL, transport, headers), reused by every
request that names the same server, so a call costs one HTTP exchange on a kept-alive connection instead of
a connection, a protocol handshake and a teardown. The pool is bounded (``max_sessions``, least recently used
closed first) and closes sessions idle for ``idle_s``. A session that broke (the server restarted and forgot
it, the connection was refused) is replaced once, when the failure shows the server never saw the request.

Servers speak Streamable HTTP, or only the older HTTP+SSE transport: with ``transport="auto"`` a URL ending
in ``/sse`` is SSE, and one whose Streamable HTTP handshake is answered 400/404/405 is tried over SSE
(remembered per URL). Every connection goes through the outbound policy (:mod:`respd.tools.mcp.http`).

Failures are :class:`McpError` subclasses whose :attr:`McpError.error` is the ``error`` object an
``mcp_call`` item carries (``mcp_protocol_error``, ``http_error``); a tool that reports its own failure
(``isError``) is not an exception but a :class:`CallResult` with ``is_error``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx2
import orjson
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ContentBlock, EmbeddedResource, TextContent, TextResourceContents, Tool
from mcp_types.jsonrpc import CONNECTION_CLOSED, INVALID_REQUEST, METHOD_NOT_FOUND, REQUEST_TIMEOUT

from respd.outbound import OutboundPolicy, refusal
from respd.tools.mcp.http import StatusMemory, guarded_client
from respd.tools.mcp.listing import ToolInfo

log = logging.getLogger("respd.mcp")

T = TypeVar("T")
Transport = Literal["auto", "streamable_http", "sse"]
_MAX_PAGES = 20  # tools/list pages followed before giving up on a server that never stops paging


@dataclass(frozen=True, slots=True)
class Server:
    """An MCP server and the credentials a session with it uses; equal servers share one pooled session."""

    url: str
    policy: OutboundPolicy
    headers: tuple[tuple[str, str], ...] = ()
    transport: Transport = "auto"
    connect_timeout_s: float = 10.0

    def __repr__(self) -> str:  # headers hold secrets: never in a log line or a traceback
        return f"Server({self.url!r}, transport={self.transport!r}, {len(self.headers)} headers)"


@dataclass(frozen=True, slots=True)
class CallResult:
    """A tool's answer: its text for the model and, when the tool itself failed, its content blocks."""

    output: str
    is_error: bool = False
    content: list[dict[str, Any]] = field(default_factory=list)


class McpError(Exception):
    """A request to an MCP server failed. ``error`` is the ``mcp_call`` item's ``error`` object for it."""

    def __init__(self, message: str, error: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.error = error


class McpUnreachable(McpError):
    """No connection: refused by the outbound policy, DNS, connection refused, TLS."""

    def __init__(self, message: str) -> None:
        super().__init__(message, {"type": "mcp_protocol_error", "code": CONNECTION_CLOSED, "message": message})


class McpTimeout(McpError):
    """The server did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, {"type": "mcp_protocol_error", "code": REQUEST_TIMEOUT, "message": message})


class McpHttpError(McpError):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, {"type": "http_error", "code": status, "message": message})
        self.status = status


class McpProtocolError(McpError):
    """The server answered with a JSON-RPC error (unknown tool, bad arguments, internal error…)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message, {"type": "mcp_protocol_error", "code": code, "message": message})
        self.code = code


# -- one session ------------------------------------------------------------------------------------------
class _Session:
    """A live MCP session, owned by one task: the SDK's transports are task groups that must be entered and
    left in the same task, so the session lives in its own and requests use it from theirs."""

    def __init__(self, server: Server, transport: Literal["streamable_http", "sse"]) -> None:
        self.server = server
        self.transport = transport
        self.memory = StatusMemory()
        self.client: Client | None = None
        self.error: BaseException | None = None
        self.last_used = time.monotonic()
        self.users = 0
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"mcp-session {server.url}")

    def _transport(self) -> AbstractAsyncContextManager[Any]:
        s = self.server
        timeout = httpx2.Timeout(s.connect_timeout_s, read=300.0)
        if self.transport == "sse":
            def factory(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                        auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:  # fmt: skip
                return guarded_client(s.policy, self.memory, headers=headers, timeout=timeout, auth=auth)

            return sse_client(s.url, headers=dict(s.headers), timeout=s.connect_timeout_s, httpx_client_factory=factory)
        http = guarded_client(s.policy, self.memory, headers=dict(s.headers), timeout=timeout)
        return _streamable(http, s.url)

    async def _run(self) -> None:
        try:
            async with Client(self._transport(), cache=None) as client:
                self.client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # the session's task reports whatever ended it, cancellation too
            self.error = exc
        finally:
            self.client = None
            self._ready.set()

    async def connected(self) -> Client:
        """The session's client once its handshake is done; raises the :class:`McpError` that ended it."""
        try:
            async with asyncio.timeout(self.server.connect_timeout_s):
                await self._ready.wait()
        except TimeoutError:
            self.close()
            raise McpTimeout(f"The MCP server at {self.server.url} did not complete the connection within "
                             f"{self.server.connect_timeout_s:g} s.") from None  # fmt: skip
        if self.client is None:
            raise as_mcp_error(self.error or RuntimeError("session closed"), self)
        return self.client

    @property
    def alive(self) -> bool:
        return not self.task.done() and not self._stop.is_set()

    def close(self) -> None:
        self._stop.set()


@asynccontextmanager
async def _streamable(http: httpx2.AsyncClient, url: str) -> AsyncIterator[Any]:
    """Streamable HTTP over ``http``, closing it after (the SDK leaves a client it was given open)."""
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams


# -- errors -----------------------------------------------------------------------------------------------
def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def as_mcp_error(exc: BaseException, session: _Session) -> McpError:
    """The :class:`McpError` an SDK or httpx2 failure stands for."""
    if isinstance(exc, McpError):
        return exc
    leaves = _leaves(exc)
    url = session.server.url
    for leaf in leaves:
        if (refused := refusal(leaf)) is not None:
            return McpUnreachable(f"Cannot reach the MCP server at {url}: {refused.message}")
    leaf = next((x for x in leaves if isinstance(x, MCPError | httpx2.HTTPError)), leaves[0])
    status = session.memory.status
    if isinstance(leaf, httpx2.HTTPStatusError):
        status = leaf.response.status_code
    if isinstance(leaf, MCPError) and leaf.code == REQUEST_TIMEOUT:
        return McpTimeout(f"The MCP server at {url} did not answer in time.")
    if status is not None and (not isinstance(leaf, MCPError) or leaf.message in _STAND_INS):
        return McpHttpError(status, f"The MCP server at {url} answered HTTP {status}.")
    if isinstance(leaf, MCPError):
        return McpProtocolError(leaf.code, leaf.message)
    if isinstance(leaf, httpx2.TimeoutException):
        return McpTimeout(f"The MCP server at {url} did not answer in time.")
    if isinstance(leaf, httpx2.HTTPError | OSError):
        return McpUnreachable(f"Cannot reach the MCP server at {url}: {leaf or type(leaf).__name__}.")
    return McpProtocolError(CONNECTION_CLOSED, f"The MCP session with {url} failed: {type(leaf).__name__}: {leaf}")


# What the SDK says for an HTTP error status it does not report (respd reports the status instead).
_STAND_INS = frozenset({"Server returned an error response", "Not Found", "Session terminated"})


def _gone(exc: McpError) -> bool:
    """Whether a failure on a reused session shows the server never ran the request (safe to send again)."""
    return isinstance(exc, McpUnreachable) or (isinstance(exc, McpHttpError) and exc.status == 404) or (
        isinstance(exc, McpProtocolError) and exc.code in (INVALID_REQUEST, CONNECTION_CLOSED))  # fmt: skip


# -- results ----------------------------------------------------------------------------------------------
def _tool_info(tool: Tool) -> ToolInfo:
    notes = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else None
    return ToolInfo(tool.name, tool.description, tool.input_schema, notes)


def _block_text(block: ContentBlock) -> str:
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, EmbeddedResource) and isinstance(block.resource, TextResourceContents):
        return block.resource.text
    if isinstance(block, EmbeddedResource):
        return f"[resource {block.resource.uri}]"
    if block.type == "resource_link":
        return f"[resource {block.uri}]"
    return f"[{block.type}: {block.mime_type}, {len(block.data) * 3 // 4} bytes]"


def call_result(result: CallToolResult) -> CallResult:
    """A tool's answer as text for the model (structured content when it gave no blocks)."""
    text = "\n".join(_block_text(b) for b in result.content)
    if not result.content and result.structured_content is not None:
        text = orjson.dumps(result.structured_content).decode()
    content = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]
    return CallResult(text, result.is_error, content if result.is_error else [])


# -- the pool ---------------------------------------------------------------------------------------------
class Sessions:
    """Pooled MCP sessions, per server and credentials."""

    def __init__(self, *, max_sessions: int = 64, idle_s: float = 300.0) -> None:
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self._pool: OrderedDict[Server, _Session] = OrderedDict()
        self._sse_urls: set[str] = set()  # servers found to speak only HTTP+SSE

    async def list_tools(self, server: Server, timeout_s: float = 30.0) -> list[ToolInfo]:
        """Every tool the server lists (all pages)."""

        async def page_all(client: Client) -> list[ToolInfo]:
            tools: list[ToolInfo] = []
            cursor: str | None = None
            for _ in range(_MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                tools += [_tool_info(t) for t in page.tools]
                if not (cursor := page.next_cursor):
                    break
            return tools

        return await self._use(server, page_all, timeout_s)

    async def call_tool(
        self, server: Server, name: str, arguments: dict[str, Any], timeout_s: float = 60.0
    ) -> CallResult:
        """Run one tool. A tool that fails on its own terms is a result with ``is_error``, not an exception."""

        async def call(client: Client) -> CallResult:
            return call_result(await client.call_tool(name, arguments, read_timeout_seconds=timeout_s))

        return await self._use(server, call, timeout_s)

    async def _use(self, server: Server, work: Callable[[Client], Awaitable[T]], timeout_s: float) -> T:
        for attempt in (1, 2):
            session, fresh = await self._session(server)
            session.users += 1
            try:
                client = await session.connected()
                async with asyncio.timeout(timeout_s):
                    return await work(client)
            except TimeoutError:
                raise McpTimeout(f"The MCP server at {server.url} did not answer within {timeout_s:g} s.") from None
            except Exception as exc:  # every SDK failure becomes an McpError
                error = as_mcp_error(exc, session)
                if not session.alive or _gone(error):
                    self._drop(session)
                if fresh or attempt == 2 or not _gone(error):
                    raise error from None
                log.info("MCP session with %s was gone (%s); opening a new one", server.url, error.message)
            finally:
                session.users -= 1
                session.last_used = time.monotonic()
        raise AssertionError("unreachable")

    async def _session(self, server: Server) -> tuple[_Session, bool]:
        """The pooled session for ``server`` (opened if needed), and whether it is new."""
        self._sweep()
        session = self._pool.get(server)
        if session is not None and session.alive:
            self._pool.move_to_end(server)
            return session, False
        session = self._open(server, "sse" if self._speaks_sse(server) else "streamable_http")
        if server.transport == "auto" and session.transport == "streamable_http":
            try:
                await session.connected()
            except McpError as exc:
                if not (isinstance(exc, McpHttpError) and exc.status in (400, 404, 405)) and not (
                        isinstance(exc, McpProtocolError) and exc.code == METHOD_NOT_FOUND):  # fmt: skip
                    return session, True
                log.info("MCP server at %s does not speak Streamable HTTP (%s); trying HTTP+SSE", server.url, exc)
                self._drop(session)
                self._sse_urls.add(server.url)
                session = self._open(server, "sse")
        return session, True

    def _speaks_sse(self, server: Server) -> bool:
        if server.transport != "auto":
            return server.transport == "sse"
        return server.url in self._sse_urls or server.url.split("?")[0].rstrip("/").endswith("/sse")

    def _open(self, server: Server, transport: Literal["streamable_http", "sse"]) -> _Session:
        session = self._pool[server] = _Session(server, transport)
        self._pool.move_to_end(server)
        while len(self._pool) > self.max_sessions:
            oldest = next((s for s in self._pool.values() if s.users == 0), None)
            if oldest is None:
                break  # every session is in use: over the bound until one is free
            self._drop(oldest)
        return session

    def _sweep(self) -> None:
        """Close sessions idle for ``idle_s`` and forget dead ones."""
        now = time.monotonic()
        for session in list(self._pool.values()):
            if not session.alive or (session.users == 0 and now - session.last_used > self.idle_s):
                self._drop(session)

    def _drop(self, session: _Session) -> None:
        if self._pool.get(session.server) is session:
            del self._pool[session.server]
        session.close()

    def __len__(self) -> int:
        return len(self._pool)

    async def aclose(self) -> None:
        """Close every session (at shutdown)."""
        sessions = list(self._pool.values())
        self._pool.clear()
        for session in sessions:
            session.close()
        if sessions:
            await asyncio.wait([s.task for s in sessions], timeout=5)
