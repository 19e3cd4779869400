"""A lean HTTP/1.1 client for model upstreams: pooled keep-alive connections, one request at a time each.

Why not a general-purpose client: respd's overhead target is a millisecond per request, and an upstream's
streamed reply is dozens of tiny chunks. aiohttp spent ~230 µs of CPU on each non-streamed call and ran
Python code for every chunk of a stream (~8 µs each, a quarter of a 64-token stream's cost in respd). Here
the parsing is httptools (llhttp, the parser Node.js uses; uvicorn's too), a response is read in whatever
pieces the network delivers (one wake-up per read, not per chunk), and what is left is a small
``asyncio.Protocol``. What it supports is what an upstream needs: ``http``/``https``, POST with a body,
``Content-Length`` or chunked replies, keep-alive, a connect timeout and a timeout per read.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

IDLE_S = 4.0  # a pooled connection idle longer may have been closed by the server (uvicorn's default is 5 s)
HIGH_WATER = 1 << 20  # bytes buffered before the socket stops being read


class HttpError(Exception):
    """The exchange with the upstream failed (before or during the reply)."""


class ConnectFailed(HttpError):
    """No connection could be made."""


class ReadTimeout(HttpError):
    """The upstream sent nothing for longer than the read timeout."""


class _Connection(asyncio.Protocol):
    """One socket to the upstream and the reply being read on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.read_timeout = 0.0
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.received = False  # any byte of the reply has arrived
        self.complete = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self._head = False
        self._until_eof = False  # a reply with neither a length nor chunks ends when the connection does
        self._body: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and self.error is None

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed HTTP reply ({exc})"))
            return
        if self._buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._until_eof and self.error is None:
            self.complete, self.keep_alive = True, False
            self._wake()
        elif not self.complete:
            self._fail(HttpError("the connection closed before the reply was complete"))

    # -- httptools callbacks --------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self._head = True
        names = {name for name, _ in self.headers}
        self._until_eof = b"content-length" not in names and b"transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # -- the reader's side ------------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.abort()
        self._wake()

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(self.read_timeout, self._fail, ReadTimeout("the upstream sent nothing in time"))
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None:
            raise self.error

    async def head(self) -> None:
        while not self._head:
            await self._wait()

    async def next_body(self) -> bytes | None:
        """What has arrived of the body since the last call (waiting for some); None once it is complete."""
        while not self._body:
            if self.complete:
                return None
            await self._wait()
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        if self._buffered > HIGH_WATER and self.transport is not None:
            self.transport.resume_reading()
        self._buffered = 0
        return data

    def send(self, request: bytes, read_timeout: float) -> None:
        assert self.transport is not None
        self._reset()
        self.read_timeout = read_timeout  # the longest wait for the next bytes of the reply
        self.transport.write(request)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Reply:
    """A reply being read. Read it whole with :meth:`read` or in pieces with :meth:`chunks`, then
    :meth:`close` it (``async with`` does): a reply read to its end gives its connection back to the pool."""

    def __init__(self, client: HttpClient, conn: _Connection) -> None:
        self._client = client
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers

    async def read(self) -> bytes:
        parts = [piece async for piece in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything received since the last piece."""
        while (piece := await self._conn.next_body()) is not None:
            yield piece

    def close(self) -> None:
        self._client._release(self._conn)

    async def __aenter__(self) -> Reply:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class HttpClient:
    """Requests to one upstream (``scheme://host:port``) over pooled keep-alive connections."""

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self._host_header = url.netloc.rsplit("@", 1)[-1].encode()
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if url.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list[_Connection] = []

    def _request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {self.prefix}{path} HTTP/1.1".encode(), b"Host: " + self._host_header,
                 b"Content-Length: " + str(len(body)).encode()]  # fmt: skip
        lines += [f"{k}: {v}".encode() for k, v in headers.items()]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """Send a POST and return once the reply's status and headers are in (its body is read from the
        :class:`Reply`). A reused connection that the server had closed is retried once on a new one."""
        request = self._request(path, body, headers)
        while True:
            conn, reused = await self._acquire()
            try:
                conn.send(request, self.read_timeout)
                await conn.head()
            except HttpError:
                conn.abort()
                if reused and not conn.received and not isinstance(conn.error, ReadTimeout):
                    continue  # the server closed it while it sat in the pool; nothing was processed
                raise
            except BaseException:
                conn.abort()  # cancelled while waiting: the upstream sees the client go
                raise
            return Reply(self, conn)

    async def _acquire(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable and now - conn.idle_since < IDLE_S:
                return conn, True
            conn.abort()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port, ssl=self._ssl), self.connect_timeout
            )
        except TimeoutError:
            raise ConnectFailed(f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s") \
                from None  # fmt: skip
        except OSError as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        return conn, False

    def _release(self, conn: _Connection) -> None:
        if conn.complete and conn.keep_alive and conn.usable:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.abort()  # a reply left unread: the upstream sees the client go

    def close(self) -> None:
        for conn in self._idle:
            conn.abort()
        self._idle.clear()
