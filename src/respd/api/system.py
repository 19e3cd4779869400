"""``/v1/models``, ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` and ``/openapi.json``."""

from __future__ import annotations

import importlib.metadata
import time

from starlette.requests import Request
from starlette.responses import Response

from respd.api import openapi
from respd.api.context import json_response, runtime_of, tenant_of, worker_of
from respd.api.openapi import operation
from respd.errors import NotFound
from respd.store.migrate import current_revision, head_revision
from respd.telemetry.metrics import CONTENT_TYPE_LATEST

_STARTED = int(time.time())  # a model without a configured `created` shows when this server started


def _model(route_name: str, created: int) -> dict[str, object]:
    return {"id": route_name, "object": "model", "created": created or _STARTED, "owned_by": "respd"}


@operation("List the models this server serves")
async def list_models(request: Request) -> Response:
    tenant_of(request)
    models = runtime_of(request).settings.models
    # an alias is listed as a model of its own: clients that check the list find the name they use
    data = [_model(name, m.created) for m in models for name in (m.name, *m.aliases)]
    return json_response({"object": "list", "data": data})


@operation("Retrieve a model")
async def get_model(request: Request) -> Response:
    tenant_of(request)
    name = request.path_params["model"]
    for m in runtime_of(request).settings.models:
        if m.name == name or name in m.aliases:
            return json_response(_model(name, m.created))
    raise NotFound(f"The model '{name}' does not exist.", param="model", code="model_not_found")


@operation("Whether the server and its database answer")
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


@operation("This description: the routes this server serves, in OpenAPI 3.1")
async def openapi_json(request: Request) -> Response:
    """The OpenAPI document of this server's routes, built once from its routing table."""
    doc = getattr(request.app.state, "openapi", None)
    if doc is None:
        settings = runtime_of(request).settings
        doc = openapi.document(request.app.routes, models=[m.name for m in settings.models], title="respd",
                               version=_version())  # fmt: skip
        request.app.state.openapi = doc
    return json_response(doc)


def _version() -> str:
    try:
        return importlib.metadata.version("respd")
    except importlib.metadata.PackageNotFoundError:
        return "0"
