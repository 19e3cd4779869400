"""Server-sent events: the frame format, obfuscation padding, and a streaming ASGI response that stops its
producer the moment the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

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
    return data[:-1] + b',"obfuscation":"' + _PADDING.take(max(2, 16 - len(data) % 16)) + b'"}'


class _Padding:
    """Random URL-safe characters, drawn from the OS in 4 KB at a time (one ``secrets`` call per delta was a
    visible share of the event loop's work per streamed token)."""

    def __init__(self) -> None:
        self._pool, self._at = b"", 0

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._pool):
            self._pool, self._at = secrets.token_urlsafe(3072).encode(), 0
        self._at += n
        return self._pool[self._at - n : self._at]


_PADDING = _Padding()


class _Prefixes(dict[str, bytes]):
    """``event: <type>\\ndata: `` for each event type, encoded once."""

    def __missing__(self, event_type: str) -> bytes:
        self[event_type] = prefix = b"event: " + event_type.encode() + b"\ndata: "
        return prefix


_PREFIXES = _Prefixes()


def frame(event_type: str, data: bytes, *, obfuscate: bool = False) -> bytes:
    """One event as one write: ``event: <type>\\ndata: <json>\\n\\n`` (see :func:`obfuscated`)."""
    if obfuscate:
        data = obfuscated(event_type, data)
    return _PREFIXES[event_type] + data + b"\n\n"


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
        with contextlib.suppress(ClientGone):
            await while_connected(receive, self._pump(send))

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


class ClientGone(Exception):
    """The client went away before the work it asked for was done (the work was cancelled)."""


async def while_connected(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` in this task, cancelling it if the client goes away first (then raise :class:`ClientGone`).

    In this task, not a task of its own: one watcher task per request instead of two, and no ``asyncio.wait``
    (measurable on the hot path).
    """
    me = asyncio.current_task()
    assert me is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await wait_disconnect(receive)
        gone = True
        me.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise  # cancelled from outside (shutdown): not ours to swallow
        me.uncancel()
        raise ClientGone from None
    finally:
        watcher.cancel()
