"""respd's upstream HTTP client against real sockets: small asyncio servers that stand in for an upstream
and misbehave on purpose (pieces with pauses, idle connections closed, silence, garbage)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from respd.backends.http_client import ConnectFailed, HttpClient, HttpError, ReadTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Upstream:
    """A TCP server running ``handler`` per connection; counts connections, records requests."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.lost = asyncio.Event()  # set when a handler saw the client close its connection
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.lost.set()
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def client(url: str, read_timeout: float = 5.0) -> HttpClient:
    return HttpClient(url, connect_timeout=2.0, read_timeout=read_timeout)


def fixed(body: bytes, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_keep_alive_reuses_one_connection_and_sends_the_request() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await up.read_request(reader)
                writer.write(fixed(b'{"ok":true}'))

        async with Upstream(handler) as up:
            http = client(up.url)
            for _ in range(3):
                async with await http.post("/chat/completions", b'{"a":1}', {"Content-Type": "application/json"}) as r:
                    assert r.status == 200 and await r.read() == b'{"ok":true}'
            assert up.connections == 1
            head, body = up.requests[0].split(b"\r\n\r\n")
            assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            assert b"Content-Type: application/json" in head and b"Content-Length: 7" in head
            assert body == b'{"a":1}'
            http.close()

    run(main())


def test_chunks_arrive_as_they_are_sent() -> None:
    """Each piece reaches the reader before the upstream sends the next (no buffering of a stream)."""

    async def main() -> None:
        go_on = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"data: 1\n\n"))
            await go_on.wait()
            writer.write(chunk(b"data: 2\n\n") + chunk(b"data: 3\n\n") + b"0\r\n\r\n")

        async with Upstream(handler) as up:
            http = client(up.url)
            got = []
            async with await http.post("/x", b"{}", {}) as r:
                async for piece in r.chunks():
                    got.append(piece)
                    go_on.set()
            assert got == [b"data: 1\n\n", b"data: 2\n\ndata: 3\n\n"]  # the second read holds both chunks

    run(main())


def test_a_reply_without_length_ends_with_the_connection() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
            await writer.drain()

        async with Upstream(handler) as up:
            http = client(up.url)
            for _ in range(2):  # not pooled: the second request opens a new connection
                async with await http.post("/x", b"{}", {}) as r:
                    assert await r.read() == b"all of it"
            assert up.connections == 2

    run(main())


def test_a_pooled_connection_the_server_closed_is_retried_on_a_new_one() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            writer.write(fixed(b"one"))  # keep-alive promised, then the server closes the idle connection
            await writer.drain()

        async with Upstream(handler) as up:
            http = client(up.url)
            async with await http.post("/x", b"{}", {}) as r:
                assert await r.read() == b"one"
            await asyncio.sleep(0.1)
            async with await http.post("/x", b"{}", {}) as r:
                assert await r.read() == b"one"
            assert up.connections == 2 and len(up.requests) == 2

    run(main())


def test_silence_is_a_read_timeout() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            if len(up.requests) == 1:
                await asyncio.sleep(5)  # silence before the head
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"first"))
            await asyncio.sleep(5)  # silence in the middle of the body

        async with Upstream(handler) as up:
            http = client(up.url, read_timeout=0.3)
            with pytest.raises(ReadTimeout):
                await http.post("/x", b"{}", {})
            async with await http.post("/x", b"{}", {}) as r:
                pieces = r.chunks()
                assert await anext(pieces) == b"first"
                with pytest.raises(ReadTimeout):
                    await anext(pieces)

    run(main())


def test_refused_connection() -> None:
    async def main() -> None:
        async with Upstream(lambda r, w: asyncio.sleep(0)) as up:
            url = up.url
        with pytest.raises(ConnectFailed):
            await client(url).post("/x", b"{}", {})

    run(main())


def test_closing_a_reply_early_drops_the_connection() -> None:
    """The upstream sees the client go: a model stops generating for a client that left."""

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                writer.write(chunk(b"data: token\n\n"))
                await writer.drain()
                await asyncio.sleep(0.02)

        async with Upstream(handler) as up:
            http = client(up.url)
            async with await http.post("/x", b"{}", {}) as r:
                async for _ in r.chunks():
                    break
            await asyncio.wait_for(up.lost.wait(), 5)

    run(main())


def test_cancelled_while_waiting_for_the_head_drops_the_connection() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            await reader.read()  # returns at EOF: the client closed
            up.lost.set()

        async with Upstream(handler) as up:
            task = asyncio.create_task(client(up.url).post("/x", b"{}", {}))
            await asyncio.sleep(0.2)
            task.cancel()
            await asyncio.wait_for(up.lost.wait(), 5)

    run(main())


def test_garbage_is_an_error() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(1)

        async with Upstream(handler) as up:
            with pytest.raises(HttpError):
                await client(up.url).post("/x", b"{}", {})

    run(main())


def test_only_http_urls() -> None:
    with pytest.raises(ValueError):
        HttpClient("unix:///tmp/sock", connect_timeout=1, read_timeout=1)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "respd test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_verifies_the_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS with the system's trust store, which ``SSL_CERT_FILE`` extends (an upstream with a private CA)."""
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await up.read_request(reader)
            writer.write(fixed(b'{"over":"tls"}'))
            await writer.drain()

        async with Upstream(handler, tls=server_tls) as up:
            with pytest.raises(ConnectFailed, match="certificate"):  # not trusted: refused before any request
                await client(up.url).post("/x", b"{}", {})
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))
            async with await client(up.url).post("/x", b"{}", {}) as r:
                assert r.status == 200 and await r.read() == b'{"over":"tls"}'
            assert len(up.requests) == 1

    run(main())
