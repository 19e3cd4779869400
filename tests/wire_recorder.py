"""A recording reverse proxy for the real-client tests: the client talks to it, it talks to respd.

Every request is forwarded unchanged and every answer streamed back unchanged (SSE frames as they come), so
the client sees respd exactly. What went over the wire is kept as :class:`Exchange` records: the tests
assert on what the client really sent (the history it replays, the ids it sends back), hold every answer to
the specs, and when respd answers a request wrongly the failure names that request.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from tests.checks import check_event, check_response, sse_events

# Per-hop headers, and those aiohttp sets itself for the forwarded body.
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "accept-encoding"}


@dataclass
class Exchange:
    """One request the client made and what respd answered."""

    method: str
    path: str
    body: Any  # the JSON the client sent, or None
    status: int
    headers: dict[str, str]  # of the answer, names in lower case
    text: str  # the whole answer body

    @property
    def streamed(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    def events(self) -> list[dict[str, Any]]:
        """The SSE events of a streamed answer, each held to the specs."""
        assert self.streamed, self.describe()
        return [check_event(e) for e in sse_events(self.text)]

    def response(self) -> dict[str, Any]:
        """The Response this exchange ended with (the object, or a stream's terminal event), checked."""
        assert self.status == 200, self.describe()
        if self.streamed:
            last = self.events()[-1]
            assert last["type"] == "response.completed", self.describe()
            return dict(last["response"])
        return check_response(json.loads(self.text))

    def problem(self) -> str | None:
        """What is wrong with respd's answer, if anything: an error status, or a response that did not complete."""
        if self.status >= 400:
            return f"HTTP {self.status}"
        if self.method != "POST" or self.path != "/v1/responses":
            return None
        if self.streamed:
            frames = [f for f in self.text.strip().split("\n\n") if f.startswith("event: ")]
            last = frames[-1].split("\n", 1)[0].removeprefix("event: ") if frames else "nothing"
            return None if last == "response.completed" else f"the stream ended with {last}"
        try:
            status = json.loads(self.text).get("status")
        except (ValueError, AttributeError):
            return "the answer is not a JSON object"
        return None if status == "completed" else f"the response is {status}"

    def describe(self) -> str:
        sent = json.dumps(self.body)[:3000] if self.body is not None else ""
        answer = "..." + self.text[-2000:] if len(self.text) > 2000 else self.text  # a stream's end says most
        return f"{self.method} {self.path} -> {self.status}\nrequest: {sent}\nanswer: {answer}"


class WireRecorder:
    """A reverse proxy on 127.0.0.1 in front of ``target``, in a background thread; use ``with``."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self._cond = threading.Condition()
        self._in_flight = 0
        self._exchanges: list[Exchange] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wire-recorder", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: give clients ``url + "/v1"`` as their base URL."""
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> WireRecorder:
        self._thread.start()
        self._port = asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result(timeout=10)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._teardown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _setup(self) -> int:
        # No decompression: bytes pass through as respd sent them (and no compression is asked for).
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port: int = self._runner.addresses[0][1]
        return port

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        with self._cond:
            self._in_flight += 1
        try:
            return await self._relay(request)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        raw = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = self.target + request.path_qs
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        received = bytearray()
        async with self._session.request(request.method, url, headers=headers, data=raw or None) as up:
            exchange = Exchange(
                request.method, request.path, body, up.status, {k.lower(): v for k, v in up.headers.items()}, ""
            )
            try:
                out = web.StreamResponse(status=up.status, reason=up.reason,
                                         headers={k: v for k, v in up.headers.items() if k.lower() not in _HOP})  # fmt: skip
                await out.prepare(request)
                async for chunk in up.content.iter_any():
                    received += chunk
                    await out.write(chunk)
                await out.write_eof()
            finally:  # recorded even when the client left before the end
                exchange.text = received.decode(errors="replace")
                with self._cond:
                    self._exchanges.append(exchange)
        return out

    # -- what went over the wire -------------------------------------------------------------------------------

    @property
    def exchanges(self) -> list[Exchange]:
        """Every exchange so far, oldest first (once none is under way: a client may exit before it is recorded)."""
        with self._cond:
            self._cond.wait_for(lambda: self._in_flight == 0, timeout=10)
            return list(self._exchanges)

    def creates(self) -> list[Exchange]:
        """The ``POST /v1/responses`` exchanges: each must have completed (a failure names the request), and its
        answer is held to the specs (every event of a stream, and the Response)."""
        out = [e for e in self.exchanges if e.method == "POST" and e.path == "/v1/responses"]
        for e in out:
            assert e.problem() is None, f"respd answered this client request wrongly ({e.problem()}):\n{e.describe()}"
            e.response()
        return out

    def wrong(self) -> list[Exchange]:
        """The exchanges respd answered with an error or a stream that did not complete."""
        return [e for e in self.exchanges if e.problem() is not None]

    def reset(self) -> None:
        with self._cond:
            self._exchanges.clear()
