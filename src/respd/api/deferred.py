"""A JSON answer that is computed after the request is read, and abandoned if the client leaves first.

Non-streamed responses can wait a long time (a local model's queue, a slow upstream); a client that gives
up must not leave its request queued or generating: the producer is cancelled when the connection closes.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from respd.api.sse import ClientGone, while_connected


class DeferredJSONResponse(Response):
    """Sends the JSON bytes ``producer`` returns, unless the client disconnects first (then cancels it)."""

    def __init__(self, producer: Coroutine[Any, Any, bytes], headers: dict[str, str] | None = None) -> None:
        # Not Response.__init__: the body does not exist yet.
        self.producer = producer
        self.status_code = 200
        self.background = None
        self.extra_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await while_connected(receive, self.producer)
        except ClientGone:
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + self.extra_headers})
        await send({"type": "http.response.body", "body": body})
