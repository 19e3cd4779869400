"""Per-request access to the process runtime, the caller's tenant, and JSON responses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response

from respd.api.auth import KeyRing
from respd.engine.runtime import Runtime
from respd.jobs.worker import Worker


def runtime_of(request: HTTPConnection) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def worker_of(request: HTTPConnection) -> Worker:
    worker: Worker = request.app.state.worker
    return worker


def tenant_of(request: HTTPConnection) -> str:
    """The tenant of the caller; raises 401 when keys are configured and this one is missing or wrong."""
    keys: KeyRing = request.app.state.keys
    return keys.tenant(request)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)
