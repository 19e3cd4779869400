"""``/v1/models`` and ``/healthz``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from respd.api.context import json_response, runtime_of, tenant_of
from respd.errors import NotFound

_STARTED = int(time.time())  # a model without a configured `created` shows when this server started


def _model(route_name: str, created: int) -> dict[str, object]:
    return {"id": route_name, "object": "model", "created": created or _STARTED, "owned_by": "respd"}


async def list_models(request: Request) -> Response:
    tenant_of(request)
    models = runtime_of(request).settings.models
    # an alias is listed as a model of its own: clients that check the list find the name they use
    data = [_model(name, m.created) for m in models for name in (m.name, *m.aliases)]
    return json_response({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    tenant_of(request)
    name = request.path_params["model"]
    for m in runtime_of(request).settings.models:
        if m.name == name or name in m.aliases:
            return json_response(_model(name, m.created))
    raise NotFound(f"The model '{name}' does not exist.", param="model", code="model_not_found")


async def healthz(request: Request) -> Response:
    """200 when the server and its database answer, 503 otherwise."""
    try:
        await runtime_of(request).store.ping()
    except Exception as exc:
        return json_response({"status": "unavailable", "database": str(exc)}, status=503)
    return json_response({"status": "ok"})
