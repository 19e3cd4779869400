"""``/v1/responses`` routes: create, retrieve (JSON or replayed/followed stream), delete, input items."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from respd.api.context import json_response, runtime_of, tenant_of, worker_of
from respd.api.deferred import DeferredJSONResponse
from respd.api.pagination import check_include, paginate
from respd.api.sse import EventStreamResponse, frame
from respd.engine import context
from respd.engine.fold import fold
from respd.engine.follow import follow
from respd.engine.prepare import prepare
from respd.engine.run import Run
from respd.engine.runtime import Runtime
from respd.errors import InvalidRequest
from respd.store.writer import Batch
from respd.wire.request import CreateResponse
from respd.wire.response import TERMINAL_STATUSES
from respd.wire.validation import parse_body

OMITTED_TOOLS_HEADER = "respd-omitted-tools"  # built-in tools left out because nothing here can run them
CANCEL_WAIT_S = 10.0  # how long a cancel waits for the run to stop before answering with what is stored


async def create_response(request: Request) -> Response:
    rt = runtime_of(request)
    tenant = tenant_of(request)
    body = await request.body()
    req = parse_body(CreateResponse, body)
    run = await prepare(rt, req, tenant)
    headers = {OMITTED_TOOLS_HEADER: ",".join(run.tools.omitted)} if run.tools.omitted else {}
    if req.background:
        # a durable job now; the client may watch it (and drop off) or come back for it later
        await worker_of(request).accept(run, body)
        if req.stream:
            return EventStreamResponse(_followed_frames(request, run.id, -1, req.obfuscate), headers=headers)
        return Response(run.snapshot_json, media_type="application/json", headers=headers)
    if req.stream:
        return EventStreamResponse(_live_frames(run, req.obfuscate), headers=headers)
    return DeferredJSONResponse(_final_json(run), headers=headers)


async def _final_json(run: Run) -> bytes:
    async with contextlib.aclosing(run.events()) as events:
        async for _ in events:
            pass
    return run.snapshot_json


async def _live_frames(run: Run, obfuscate: bool) -> AsyncGenerator[bytes, None]:
    async with contextlib.aclosing(run.events()) as events:
        async for batch in events:
            yield b"".join(frame(ev["type"], data, obfuscate=obfuscate) for ev, data in batch)


def _flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidRequest(f"Invalid value for '{name}': expected a boolean.", param=name, code="invalid_type")


def _int_param(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid type for '{name}': expected an integer, but got a string instead.",
            param=name,
            code="invalid_type",
        ) from None


async def _stored(request: Request) -> tuple[str, dict[str, Any]]:
    rid = request.path_params["response_id"]
    return rid, await context.stored_response(runtime_of(request).store, tenant_of(request), rid)


async def get_response(request: Request) -> Response:
    rt = runtime_of(request)
    check_include(request)
    rid, row = await _stored(request)
    if _flag(request, "stream"):
        after = _int_param(request, "starting_after", -1)
        assert after is not None
        obfuscate = _flag(request, "include_obfuscation") is not False
        return EventStreamResponse(_followed_frames(request, rid, after, obfuscate))
    if row["status"] in TERMINAL_STATUSES:
        return json_response(row["body"])
    # Still running: the log is ahead of the cached row.
    events = [orjson.loads(data) for _, data in await rt.store.events_after(rid, -1)]
    return json_response(fold(events) if events else row["body"])


async def _followed_frames(request: Request, rid: str, after: int, obfuscate: bool) -> AsyncGenerator[bytes, None]:
    """The logged events after ``after``, then the live ones until the terminal event (see engine.follow)."""
    async for kind, data in follow(runtime_of(request), tenant_of(request), rid, after):
        yield frame(kind, data, obfuscate=obfuscate)


async def delete_response(request: Request) -> Response:
    rt = runtime_of(request)
    rid, row = await _stored(request)
    if row["background"] and row["status"] not in TERMINAL_STATUSES:
        # stop its run first, so that nothing is written for it after it is gone
        await worker_of(request).cancel(tenant_of(request), rid)
        await _wait_terminal(rt, tenant_of(request), rid, row)
    batch = Batch()
    batch.delete_response(tenant_of(request), rid)
    await rt.store.writer.commit(batch)
    return json_response({"id": rid, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> Response:
    rt = runtime_of(request)
    rid, _ = await _stored(request)
    items = await rt.store.input_items(rid)
    return json_response(paginate(request, items))


async def cancel_response(request: Request) -> Response:
    """Stop a background response (queued or running) and answer with it; a finished one comes back as is."""
    rt = runtime_of(request)
    tenant = tenant_of(request)
    rid, row = await _stored(request)
    if not row["background"]:
        raise InvalidRequest("Cannot cancel a synchronous response.", param="response_id")
    if row["status"] not in TERMINAL_STATUSES:
        await worker_of(request).cancel(tenant, rid)
        row = await _wait_terminal(rt, tenant, rid, row)
    return json_response(row["body"])


async def _wait_terminal(rt: Runtime, tenant: str, rid: str, row: dict[str, Any]) -> dict[str, Any]:
    """The stored response once it has ended (a cancelled run ends within moments), or as it stands."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_WAIT_S
    while row["status"] not in TERMINAL_STATUSES and loop.time() < deadline:
        with rt.store.signals.events_of(rid) as woke:
            current = await rt.store.get_response(tenant, rid)
            if current is None:
                break
            row = current
            if row["status"] in TERMINAL_STATUSES:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woke.wait(), 0.1)
    return row
