"""A JSON answer that is computed after the request is read, and abandoned if the client leaves first.

Non-streamed responses can wait a long time (a local model's queue, a slow upstream); a client that gives
up must not leave its request queued or generating. The producer runs as a task beside a watcher on the
connection: whichever ends first decides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from respd.api.sse import wait_disconnect


class DeferredJSONResponse(Response):
    """Sends the JSON bytes ``producer`` returns, unless the client disconnects first (then cancels it)."""

    def __init__(self, producer: Coroutine[Any, Any, bytes], headers: dict[str, str] | None = None) -> None:
        # Not Response.__init__: the body does not exist yet.
        self.producer = producer
        self.status_code = 200
        self.background = None
        self.extra_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        work = asyncio.create_task(self.producer)
        watcher = asyncio.create_task(wait_disconnect(receive))
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if work not in done:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            return
        watcher.cancel()
        body = work.result()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + self.extra_headers})
        await send({"type": "http.response.body", "body": body})
