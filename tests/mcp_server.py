"""A real MCP server for the tests: the ``mcp`` SDK's server over Streamable HTTP (or only HTTP+SSE) on a free
port, run by uvicorn in a background thread. It stands for a remote MCP server outside respd.

Tools: ``add`` (read-only), ``echo`` (read-only), ``slow`` (sleeps), ``fail`` (the tool reports an error),
``delete_file`` (destructive: the one approvals guard). It records the headers of every HTTP request and
how often each tool ran, so tests can tell what reached it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send

READ_ONLY = ToolAnnotations(readOnlyHint=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1:``port`` in a background thread (the tests' stand-ins for
    outside services)."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class TestMcpServer:
    """Start with ``start()`` (or ``with``); ``url`` is the endpoint to give respd."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, sse_only: bool = False, name: str = "respd-test") -> None:
        self.sse_only = sse_only
        self.calls: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.port = free_port()
        self._thread: ServerThread | None = None
        self.mcp = self._tools(MCPServer(name))

    @property
    def url(self) -> str:
        # An SSE-only server whose path does not say so: respd must find out by trying.
        return f"http://127.0.0.1:{self.port}/" + ("events" if self.sse_only else "mcp")

    def _tools(self, srv: MCPServer) -> MCPServer:
        @srv.tool(annotations=READ_ONLY)
        def add(a: int, b: int) -> int:
            """Add two integers."""
            self.calls["add"] += 1
            return a + b

        @srv.tool(annotations=READ_ONLY)
        def echo(text: str) -> str:
            """Say the text back."""
            self.calls["echo"] += 1
            return text

        @srv.tool()
        async def slow(seconds: float) -> str:
            """Wait, then answer."""
            self.calls["slow"] += 1
            await asyncio.sleep(seconds)
            return "finally"

        @srv.tool()
        def fail(reason: str) -> str:
            """Always fails."""
            self.calls["fail"] += 1
            raise ValueError(reason)

        @srv.tool(annotations=ToolAnnotations(destructiveHint=True))
        def delete_file(path: str) -> str:
            """Delete a file."""
            self.calls["delete_file"] += 1
            return f"deleted {path}"

        return srv

    def _app(self) -> ASGIApp:
        inner = self.mcp.sse_app(sse_path="/events") if self.sse_only else self.mcp.streamable_http_app()

        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
            await inner(scope, receive, send)

        return recording

    def start(self) -> None:
        self._thread = ServerThread(self._app(), self.port)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
        self._thread = None

    def __enter__(self) -> TestMcpServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main() -> None:
    """``python -m tests.mcp_server [--port N] [--sse-only]``: serve until killed (the benchmark's server)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sse-only", action="store_true")
    args = parser.parse_args()
    srv = TestMcpServer(sse_only=args.sse_only)
    if args.port:
        srv.port = args.port
    uvicorn.run(srv._app(), host="127.0.0.1", port=srv.port, log_level="warning")


if __name__ == "__main__":
    main()
