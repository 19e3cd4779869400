"""A minimal, very fast OpenAI-compatible Chat Completions server for benchmarking respd.

Raw asyncio Protocol on uvloop (falls back to the default loop), HTTP/1.1 keep-alive, pipelining-safe.
Every response is precomputed bytes, so the upstream costs next to nothing per request:

* ``POST .../chat/completions`` without ``"stream": true``: one fixed ``chat.completion`` JSON with usage.
* with ``"stream": true``: ``--tokens`` (default 64) one-token content chunks, a finish chunk, a usage chunk
  (``choices: []``) and ``data: [DONE]``, each SSE event one HTTP chunk (chunked transfer encoding), all
  written at once, no sleeps.
* ``GET /healthz`` and ``GET /v1/models``: small JSON.

Run: ``python bench/fast_upstream.py --port 9100 [--tokens 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

CREATED = 1_700_000_000
MODEL = "bench-model"


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: bytes, ctype: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body
    )  # fmt: skip


def build_completion(tokens: int) -> bytes:
    text = "".join(f"tok{i} " for i in range(tokens)).rstrip()
    body = _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens},
        }
    )
    return _response(b"200 OK", b"application/json", body)


def build_stream(tokens: int) -> bytes:
    def chunk(choices: list[object], **extra: object) -> dict[str, object]:
        return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
                "choices": choices, **extra}  # fmt: skip

    events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    for i in range(tokens):
        piece = f"tok{i}" if i == tokens - 1 else f"tok{i} "
        events.append(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(chunk([], usage={"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}))
    out = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    ]
    sse = [b"data: " + _json(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    for event in sse:
        out.append(f"{len(event):x}\r\n".encode() + event + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)


class Upstream(asyncio.Protocol):
    completion = b""
    stream = b""
    health = _response(b"200 OK", b"application/json", b'{"status":"ok"}')
    models = _response(
        b"200 OK", b"application/json",
        _json({"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]}),
    )  # fmt: skip
    not_found = _response(b"404 Not Found", b"application/json", b'{"error":{"message":"not found"}}')

    __slots__ = ("buf", "transport")
    transport: asyncio.Transport
    buf: bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a uvloop TCPTransport is not a subclass
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"\ncontent-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 1)
                length = int(lower[i + 16 : j if j >= 0 else None])
            total = end + 4 + length
            if len(buf) < total:
                break
            body = buf[end + 4 : total]
            buf = buf[total:]
            line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
            if line.startswith(b"POST ") and b"/chat/completions" in line:
                streaming = b'"stream":true' in body or b'"stream": true' in body
                out.append(self.stream if streaming else self.completion)
            elif line.startswith(b"GET /healthz"):
                out.append(self.health)
            elif line.startswith(b"GET ") and b"/models" in line:
                out.append(self.models)
            else:
                out.append(self.not_found)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.buf = b""


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fast upstream listening on http://{host}:{port}/v1", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--tokens", type=int, default=64, help="content tokens per response (default 64)")
    args = p.parse_args()
    Upstream.completion = build_completion(args.tokens)
    Upstream.stream = build_stream(args.tokens)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
