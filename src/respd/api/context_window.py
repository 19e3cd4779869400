"""Context routes: input token counts and compaction, for a request body or a stored response.

Answers are deferred (:class:`DeferredJSONResponse`): a client that leaves stops the model call it waits on
(a summary being written, an upstream asked for a count).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from respd.api.context import json_body, runtime_of, tenant_of
from respd.api.deferred import DeferredJSONResponse
from respd.api.openapi import operation
from respd.engine import context, standalone
from respd.engine.runtime import Runtime
from respd.errors import InvalidRequest
from respd.wire.context import CompactBody, ResponseCompactBody, TokenCountsBody
from respd.wire.request import CreateResponse
from respd.wire.validation import parse_body


async def _count(rt: Runtime, tenant: str, req: CreateResponse) -> bytes:
    count = await standalone.count_input(rt, tenant, req)
    return orjson.dumps({"object": "response.input_tokens", "input_tokens": count.tokens})


async def _compact(rt: Runtime, tenant: str, req: CreateResponse) -> bytes:
    return orjson.dumps(await standalone.compact(rt, tenant, req))


@operation("Count the input tokens of a request", body=TokenCountsBody)
async def count_input_tokens(request: Request) -> Response:
    req = parse_body(TokenCountsBody, await json_body(request)).as_create()
    return DeferredJSONResponse(_count(runtime_of(request), tenant_of(request), req))


@operation("Count the input tokens of a stored response")
async def count_stored_input_tokens(request: Request) -> Response:
    rt, tenant = runtime_of(request), tenant_of(request)
    req = await standalone.stored_request(rt, tenant, request.path_params["response_id"])
    return DeferredJSONResponse(_count(rt, tenant, req))


@operation("Compact a conversation", body=CompactBody)
async def compact(request: Request) -> Response:
    body = parse_body(CompactBody, await json_body(request))
    if body.model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    return DeferredJSONResponse(_compact(runtime_of(request), tenant_of(request), body.as_create()))


@operation("Compact the conversation that ends with a response", body=ResponseCompactBody, body_optional=True)
async def compact_response(request: Request) -> Response:
    """Compacts the conversation that ends with the response: as ``/compact`` with ``previous_response_id``,
    its model and instructions unless the body names others."""
    rt, tenant = runtime_of(request), tenant_of(request)
    rid = request.path_params["response_id"]
    row = await context.stored_response(rt.store, tenant, rid)
    body = parse_body(ResponseCompactBody, await json_body(request) or b"{}")
    defaults = {"model": row["body"]["model"], "instructions": row["body"]["instructions"]}
    given = {name: value for name in defaults if (value := getattr(body, name)) is not None}
    req = body.as_create(**(defaults | given), previous_response_id=rid)
    return DeferredJSONResponse(_compact(rt, tenant, req))
