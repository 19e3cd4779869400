"""``/v1/models``, ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from respd.api.context import json_response, runtime_of, tenant_of, worker_of
from respd.errors import NotFound
from respd.store.migrate import current_revision, head_revision
from respd.telemetry.metrics import CONTENT_TYPE_LATEST

_STARTED = int(time.time())  # a model without a configured `created` shows when this server started


def _model(route_name: str, created: int) -> dict[str, object]:
    return {"id": route_name, "object": "model", "created": created or _STARTED, "owned_by": "respd"}


async def list_models(request: Request) -> Response:
    tenant_of(request)
    models = runtime_of(request).settings.models
    return json_response({"object": "list", "data": [_model(m.name, m.created) for m in models]})


async def get_model(request: Request) -> Response:
    tenant_of(request)
    name = request.path_params["model"]
    for m in runtime_of(request).settings.models:
        if m.name == name:
            return json_response(_model(m.name, m.created))
    raise NotFound(f"The model '{name}' does not exist.", param="model", code="model_not_found")


async def healthz(request: Request) -> Response:
    """200 when the server and its database answer, 503 otherwise."""
    try:
        await runtime_of(request).store.ping()
    except Exception as exc:
        return json_response({"status": "unavailable", "database": str(exc)}, status=503)
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when this replica should get traffic: its database answers, the schema is at this code's newest
    revision, and it is not shutting down; 503 (with what is wrong) otherwise. ``/healthz`` is liveness."""
    rt = runtime_of(request)
    checks: dict[str, str] = {}
    try:
        current = await current_revision(rt.store.engine)
        head = head_revision()
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == head else f"at {current}, expected {head}"
    except Exception as exc:
        checks["database"] = f"unreachable: {exc}"
    checks["accepting"] = "no: shutting down" if worker_of(request).stopping else "ok"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"status": "ready" if ready else "unavailable", **checks}, status=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """The Prometheus text format (``metrics = false``: 404)."""
    m = runtime_of(request).metrics
    if m is None:
        raise NotFound("Metrics are turned off (metrics = false).")
    return Response(await m.exposition(), media_type=CONTENT_TYPE_LATEST)
