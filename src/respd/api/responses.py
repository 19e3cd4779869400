"""``/v1/responses`` routes: create, retrieve (JSON or replayed/followed stream), delete, input items."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from respd.api.access import note_response
from respd.api.context import json_body, json_response, limiter_of, runtime_of, tenant_of, worker_of
from respd.api.deferred import DeferredJSONResponse
from respd.api.openapi import Param, operation
from respd.api.pagination import INCLUDE, PAGE, check_include, paginate
from respd.api.sse import EventStreamResponse, frame
from respd.engine import context
from respd.engine.durability import TAKEN_OVER, UNSTORED
from respd.engine.fold import fold
from respd.engine.follow import follow
from respd.engine.prepare import prepare
from respd.engine.run import Run
from respd.engine.runtime import Runtime
from respd.errors import InvalidRequest, ServerError
from respd.store.writer import Batch
from respd.wire.numbers import INT64_MAX
from respd.wire.request import CreateResponse
from respd.wire.response import TERMINAL_STATUSES
from respd.wire.validation import parse_body

OMITTED_TOOLS_HEADER = "respd-omitted-tools"  # built-in tools left out because nothing here can run them
CANCEL_WAIT_S = 10.0  # how long a cancel waits for the run to stop before answering with what is stored

REPLAY = (
    INCLUDE,
    Param("stream", {"type": "boolean"}, "Replay the stored events (and follow a running response) as a stream."),
    Param("starting_after", {"type": "integer", "minimum": -1, "maximum": INT64_MAX},
          "With `stream`: the sequence number after which to start."),
    Param("include_obfuscation", {"type": "boolean"}, "With `stream`: pad delta events (default true)."),
)  # fmt: skip


@operation("Create a model response", body=CreateResponse, streams=True)
async def create_response(request: Request) -> Response:
    rt = runtime_of(request)
    tenant = tenant_of(request)
    body = await json_body(request)
    req = parse_body(CreateResponse, body)
    limiter = limiter_of(request)
    headers: dict[str, str] = {}
    slot = None
    if limiter is None:
        run = await prepare(rt, req, tenant)
    else:
        admitted = await limiter.admit(tenant, stream=bool(req.stream))
        headers, slot = admitted.headers, admitted.slot
        try:
            run = await prepare(rt, req, tenant)
        except BaseException:
            limiter.release(slot)
            raise
    note_response(request, run.id, run.route.name, req.conversation_id)
    if run.tools.omitted:
        headers[OMITTED_TOOLS_HEADER] = ",".join(run.tools.omitted)
    frames: AsyncGenerator[bytes, None]
    if req.background:
        # a durable job now; the client may watch it (and drop off) or come back for it later
        try:
            await worker_of(request).accept(run, body)
        except BaseException:
            if limiter is not None:
                limiter.release(slot)
            raise
        if not req.stream:
            return Response(run.snapshot_json, media_type="application/json", headers=headers)
        frames = _followed_frames(request, run.id, -1, req.obfuscate)
    elif req.stream:
        frames = _live_frames(run, req.obfuscate)
    else:
        return DeferredJSONResponse(_final_json(run), headers=headers)
    if limiter is not None and slot is not None:
        frames = limiter.guard(slot, frames)  # the key's stream slot is held until the stream ends
    return EventStreamResponse(frames, headers=headers)


async def _final_json(run: Run) -> bytes:
    async with contextlib.aclosing(run.events()) as events:
        async for _ in events:
            pass
    if run.final is None:  # its end could not be stored (respd.engine.durability): it is not kept
        raise ServerError(TAKEN_OVER if run.taken_over else UNSTORED)
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


def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
    """An integer query parameter, at least ``minimum`` and within 64 bits."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid type for '{name}': expected an integer, but got a string instead.",
            param=name,
            code="invalid_type",
        ) from None
    if value < minimum:
        raise InvalidRequest(f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, but "
                             f"got {value} instead.", param=name, code="integer_below_min_value")  # fmt: skip
    if value > INT64_MAX:
        raise InvalidRequest(f"Invalid '{name}': integer above maximum value. Expected a value <= {INT64_MAX}.",
                             param=name, code="integer_above_max_value")  # fmt: skip
    return value


async def _stored(request: Request) -> tuple[str, dict[str, Any]]:
    rid = request.path_params["response_id"]
    return rid, await context.stored_response(runtime_of(request).store, tenant_of(request), rid)


@operation("Retrieve a model response (as JSON, or its events as a stream)", query=REPLAY, streams=True)
async def get_response(request: Request) -> Response:
    rt = runtime_of(request)
    check_include(request)
    rid, row = await _stored(request)
    if _flag(request, "stream"):
        after = _int_param(request, "starting_after", -1, minimum=-1)  # beyond the last event: nothing to replay
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


@operation("Delete a model response")
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


@operation("List the input items of a response", query=(*PAGE, INCLUDE))
async def list_input_items(request: Request) -> Response:
    rt = runtime_of(request)
    check_include(request)
    rid, _ = await _stored(request)
    items = await rt.store.input_items(rid)
    return json_response(paginate(request, items))


@operation("Cancel a background response")
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
