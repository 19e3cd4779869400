"""Server-sent events: the frame format, obfuscation padding, and a streaming ASGI response that stops its
producer the moment the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncGenerator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def obfuscated(event_type: str, data: bytes) -> bytes:
    """``data`` with an ``obfuscation`` field of random characters if it is a delta event, as the API adds
    (``stream_options.include_obfuscation``) so payload sizes do not reveal token lengths.
    """
    if not event_type.endswith(".delta"):
        return data
    pad = secrets.token_urlsafe(12)[: max(2, 16 - len(data) % 16)]
    return data[:-1] + b',"obfuscation":"' + pad.encode() + b'"}'


def frame(event_type: str, data: bytes, *, obfuscate: bool = False) -> bytes:
    """One event as one write: ``event: <type>\\ndata: <json>\\n\\n`` (see :func:`obfuscated`)."""
    if obfuscate:
        data = obfuscated(event_type, data)
    return b"event: " + event_type.encode() + b"\ndata: " + data + b"\n\n"


class EventStreamResponse(Response):
    """Streams the frames of ``source``; a client disconnect cancels the producer (and so the run)."""

    def __init__(self, source: AsyncGenerator[bytes, None], headers: dict[str, str] | None = None) -> None:
        # Not Response.__init__: there is no body to measure; the frames are written as they come.
        self.source = source
        self.status_code = 200
        self.background = None
        self.frame_headers = _HEADERS + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.frame_headers})
        producer = asyncio.create_task(self._pump(send))
        watcher = asyncio.create_task(wait_disconnect(receive))
        done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if producer in done:
            watcher.cancel()
            producer.result()
            return
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await producer

    async def _pump(self, send: Send) -> None:
        async with contextlib.aclosing(self.source):  # a cancelled pump closes the chain that feeds it
            async for chunk in self.source:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client has gone away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
