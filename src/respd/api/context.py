"""Per-request access to the process runtime, the caller's tenant, and JSON responses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response

from respd.api.auth import KeyRing
from respd.engine.runtime import Runtime
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
    """The tenant of the caller; raises 401 when keys are configured and this one is missing or wrong."""
    keys: KeyRing = request.app.state.keys
    tenant = keys.tenant(request)
    request.scope.setdefault("state", {})["tenant"] = tenant  # the access log's key label
    return tenant


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)
