"""Per-request access to the process runtime, the caller's tenant, and JSON responses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from respd.api.auth import TENANT, KeyRing
from respd.engine.runtime import Runtime
from respd.errors import InvalidRequest
from respd.jobs.worker import Worker
from respd.ratelimit.limiter import RateLimiter


def runtime_of(request: HTTPConnection) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def worker_of(request: HTTPConnection) -> Worker:
    worker: Worker = request.app.state.worker
    return worker


def limiter_of(request: HTTPConnection) -> RateLimiter | None:
    """The rate limiter, or None when no key has a limit."""
    limiter: RateLimiter | None = request.app.state.limiter
    return limiter


def tenant_of(request: HTTPConnection) -> str:
    """The tenant of the caller (checked by :class:`~respd.api.auth.Authenticate` before the route ran)."""
    tenant: str | None = request.scope.get(TENANT)
    if tenant is None:
        keys: KeyRing = request.app.state.keys  # no keys configured: the one anonymous tenant
        tenant = keys.tenant(request)
    request.scope.setdefault("state", {})["tenant"] = tenant  # the access log's key label
    return tenant


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def json_body(request: Request) -> bytes:
    """The body of a request that carries JSON. A body sent as anything but ``application/json`` is refused as
    the real API refuses it (parameters such as ``charset`` are fine); an empty body needs no type."""
    body = await request.body()
    if body.strip():
        given = request.headers.get("content-type")
        if given is None or given.partition(";")[0].strip().lower() != "application/json":
            raise InvalidRequest(
                f"Unsupported content type: '{given or ''}'. This API method only accepts 'application/json' "
                f"requests, but you specified the header 'Content-Type: {given or ''}'. Please try again with a "
                "supported content type.",
                code="unsupported_content_type",
            )
    return body


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)
