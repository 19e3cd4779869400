"""``/v1/responses`` over a WebSocket: the API's WebSocket mode.

The client sends ``{"type": "response.create", …}`` messages whose other fields are a create body. Each
message gets, in the order sent, either its response's events (one text message each, the same JSON as the
SSE ``data:`` lines, plus ``stream_id`` when the message named one) or one ``error`` event
``{"type": "error", "status", "error": {"type", "code", "message", "param"}}``; the connection stays open
either way. Responses run one at a time: a create that arrives while one runs waits its turn, as the API
processes a lane first in, first out (``stream_id`` lanes are accepted and echoed, and share that one turn).

``stream`` is implicit (any value is accepted); ``background`` cannot be honoured here and is refused;
``generate: false`` (WebSocket only) warms up: the response records its input and completes with no output.
``previous_response_id`` also finds the ``store: false`` responses this connection ran (see
:mod:`respd.engine.connection_memory`). A client that goes away cancels the running response exactly as an
SSE client's disconnect does; the messages still waiting are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from respd.api.context import json_response, limiter_of, runtime_of, tenant_of
from respd.api.sse import obfuscated
from respd.engine.connection_memory import ConnectionMemory
from respd.engine.prepare import prepare
from respd.engine.run import Run
from respd.engine.runtime import Runtime
from respd.errors import InvalidRequest, RateLimited, RespdError, ServerError, Unsupported, envelope
from respd.telemetry import tracing
from respd.wire.request import CreateResponse
from respd.wire.validation import parse_body, to_invalid_request

log = logging.getLogger("respd.websocket")

MAX_WAITING = 64  # messages queued behind the running response; more get an error event at once
CLIENT_EVENTS = ("response.create",)
# Client events of the API (or its betas) that nothing here can serve: refused by name, not as unknown.
UNSUPPORTED_EVENTS = frozenset({"response.steer", "response.inject"})


class _Envelope(BaseModel):
    """The WebSocket-only fields of a client message; the rest is the create body."""

    model_config = ConfigDict(extra="ignore", strict=True)
    type: str
    stream_id: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    generate: bool = True


_WS_ONLY = frozenset(_Envelope.model_fields)


@dataclass
class Create:
    """One valid ``response.create`` message."""

    req: CreateResponse
    obfuscate: bool
    generate: bool  # False: a warm-up that records the context for a later turn and asks no model


def _json_object(raw: str | bytes) -> dict[str, Any]:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON of your message; each message must be one JSON object, "
            'e.g. {"type": "response.create", "model": …, "input": …}.',
            code="invalid_json",
        ) from None
    if not isinstance(msg, dict):
        raise InvalidRequest("Each message must be a JSON object.", code="invalid_type")
    return msg


def _envelope(msg: dict[str, Any]) -> _Envelope:
    try:
        return _Envelope.model_validate(msg)
    except ValidationError as exc:
        raise to_invalid_request(exc) from None


def _check_type(env: _Envelope) -> None:
    if env.type in UNSUPPORTED_EVENTS:
        raise Unsupported(f"Client event '{env.type}' is not supported by this server.", param="type")
    if env.type not in CLIENT_EVENTS:
        supported = ", ".join(f"'{t}'" for t in CLIENT_EVENTS)
        raise InvalidRequest(
            f"Invalid value: '{env.type}'. Supported values are: {supported}.", param="type", code="invalid_value"
        )


def _create(msg: dict[str, Any], env: _Envelope) -> Create:
    """The create body of a ``response.create`` message, validated exactly as ``POST /v1/responses``'s."""
    body = {k: v for k, v in msg.items() if k not in _WS_ONLY}
    req = parse_body(CreateResponse, orjson.dumps(body))
    if req.background:
        raise Unsupported(
            "Background mode is not supported over a WebSocket connection; responses stream on the socket.",
            param="background",
        )
    return Create(req=req.model_copy(update={"stream": True}), obfuscate=req.obfuscate, generate=env.generate)


def error_event(exc: RespdError, stream_id: str | None = None) -> bytes:
    """The ``error`` event (``S:ResponseWsError``) for a message that could not become a response."""
    error: dict[str, Any] = envelope(exc)["error"]
    if exc.headers():
        error["headers"] = {k.lower(): v for k, v in exc.headers().items()}
    event: dict[str, Any] = {"type": "error", "status": exc.status, "error": error}
    if stream_id is not None:
        event["stream_id"] = stream_id
    return orjson.dumps(event)


async def responses_socket(ws: WebSocket) -> None:
    """A WebSocket on ``/v1/responses``: the handshake needs the same API key as HTTP calls."""
    try:
        tenant = tenant_of(ws)
    except RespdError as exc:
        # Refused before the upgrade, with the HTTP status and body a POST would get.
        await ws.send_denial_response(json_response(envelope(exc), status=exc.status, headers=exc.headers()))
        return
    await ws.accept()
    await Session(ws, runtime_of(ws), tenant).serve()


class Session:
    """One accepted connection: a reader that queues messages (and notices the client leave), and a worker
    that answers them in order."""

    def __init__(self, ws: WebSocket, rt: Runtime, tenant: str) -> None:
        self.ws = ws
        self.rt = rt
        self.tenant = tenant
        self.memory = ConnectionMemory(rt.store, tenant)
        self.inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._sending = asyncio.Lock()  # the reader's overflow errors and the worker's events

    async def serve(self) -> None:
        reader = asyncio.create_task(self._read())
        worker = asyncio.create_task(self._work())
        done, pending = await asyncio.wait({reader, worker}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()  # a running response ends cancelled, as when an SSE client leaves
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError):
                await task
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, OSError)):
                log.error("WebSocket session failed", exc_info=exc)
                with contextlib.suppress(Exception):
                    await self.ws.close(code=1011)

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            raw: str | bytes = text if text is not None else message.get("bytes") or b""
            if self.inbox.qsize() >= MAX_WAITING:
                busy = RateLimited(
                    f"Too many messages are waiting on this connection (at most {MAX_WAITING}); "
                    "wait for responses to finish before sending more."
                )
                await self._send(error_event(busy))
                continue
            self.inbox.put_nowait(raw)

    async def _work(self) -> None:
        while True:
            await self._answer(await self.inbox.get())

    async def _answer(self, raw: str | bytes) -> None:
        """One message's outcome: its response's events, or one error event."""
        stream_id = None
        try:
            msg = _json_object(raw)
            env = _envelope(msg)
            stream_id = env.stream_id  # from here on, errors too carry the lane
            _check_type(env)
            create = _create(msg, env)
            limiter = limiter_of(self.ws)
            if limiter is not None:
                await limiter.admit(self.tenant, stream=False)  # a request; the connection is not a stream slot
            run = await prepare(self.rt, create.req, self.tenant, local=self.memory.chain)
            tracing.annotate_response(run.id, run.route.name, create.req.conversation_id)
            run.generate = create.generate
        except RespdError as exc:
            await self._send(error_event(exc, stream_id))
            return
        except Exception:
            log.exception("response.create failed inside respd")
            bug = ServerError("The server had an error while processing your request.")
            await self._send(error_event(bug, stream_id))
            return
        await self._stream(run, create.obfuscate, stream_id)
        self.memory.remember(run)

    async def _stream(self, run: Run, obfuscate: bool, stream_id: str | None) -> None:
        tail = b',"stream_id":' + orjson.dumps(stream_id) + b"}" if stream_id is not None else None
        async with contextlib.aclosing(run.events()) as events:  # leaving early closes the run: cancelled
            async for batch in events:
                for ev, data in batch:
                    if obfuscate:
                        data = obfuscated(ev["type"], data)
                    if tail is not None:
                        data = data[:-1] + tail
                    await self._send(data)

    async def _send(self, data: bytes) -> None:
        async with self._sending:
            await self.ws.send_text(data.decode())
