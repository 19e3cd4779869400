"""Per-request bookkeeping around every HTTP request: its ids, ``openai-processing-ms``, the access log line,
the HTTP metrics and the request's span.

Every answer carries ``x-request-id`` (``req_…``, new per request) and echoes the client's
``X-Client-Request-Id``; ``openai-processing-ms`` is the time from the request's arrival to its answer's
headers (for a stream: to its start), as the real API reports it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from respd.config import OpsSettings
from respd.telemetry import logs, tracing
from respd.telemetry.metrics import Metrics

_CLIENT_ID_MAX = 512


class AccessMiddleware:
    """The pure ASGI middleware (no per-request objects beyond a closure: respd's overhead is measured)."""

    def __init__(self, app: ASGIApp, ops: OpsSettings, metrics: Metrics | None) -> None:
        self.app = app
        self.ops = ops
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = "req_" + os.urandom(16).hex()
        extra = [(b"x-request-id", request_id.encode())]
        for name, value in scope["headers"]:
            if name == b"x-client-request-id" and len(value) <= _CLIENT_ID_MAX and value.isascii():
                extra.append((b"x-client-request-id", value))
        status = 500
        span = token = None
        if tracing.tracer() is not None:
            span, token = tracing.server_span(scope["method"], scope["path"], scope["headers"])

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ms = str(int((time.perf_counter() - start) * 1000)).encode()
                message["headers"] = [*message.get("headers", ()), *extra, (b"openai-processing-ms", ms)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            self._done(scope, status, time.perf_counter() - start, request_id, span, token)

    def _done(self, scope: Scope, status: int, seconds: float, request_id: str, span: Any, token: Any) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if self.metrics is not None:
            self.metrics.observe_http(scope["method"], template or "unmatched", status, seconds)
        if span is not None:
            tracing.end_server_span(span, token, scope["method"], template, status)
        if self.ops.access_log and logs.access.isEnabledFor(logging.INFO):
            state = scope.get("state") or {}
            response_id = state.get("response_id") or (scope.get("path_params") or {}).get("response_id")
            key = self.ops.label(state["tenant"]) if "tenant" in state else "-"
            logs.access_line(scope["method"], scope["path"], status, seconds * 1000, response_id, key, request_id)


def note_response(conn: HTTPConnection, response_id: str, model: str, conversation_id: str | None) -> None:
    """The response this request runs: for the access log line and the request's span."""
    conn.scope.setdefault("state", {})["response_id"] = response_id
    tracing.annotate_response(response_id, model, conversation_id)
