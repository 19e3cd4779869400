"""What respd's operations layer costs per request, in CPU time of this process (robust on a busy machine):
the access middleware (request id, processing time, HTTP metrics, access-log check) around a trivial ASGI app,
and the instrumented backend (time to first token, span hooks) around a 64-delta stream.

    uv run python bench/ops_overhead.py [--n 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

from respd.api.access import AccessMiddleware
from respd.backends.base import Finish, ModelRequest, TextDelta, Usage
from respd.config import ModelRoute, OpsSettings
from respd.telemetry import logs
from respd.telemetry.instrumented import InstrumentedBackend
from respd.telemetry.metrics import Metrics


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Any) -> None:
    pass


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/responses", "headers": [(b"content-type", b"json")],
            "state": {}}  # fmt: skip


async def per_request_us(app: Any, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await app(_scope(), _receive, _send)
    return (time.process_time() - start) / n * 1e6


class _Stream:
    """A backend yielding 64 text deltas one at a time, then usage and finish."""

    async def generate(self, request: ModelRequest, admission: Any = None) -> AsyncGenerator[Any, None]:
        for _ in range(64):
            yield [TextDelta("x")]
        yield [Usage(5, 64), Finish("stop")]


async def per_stream_us(backend: Any, n: int) -> float:
    request = ModelRequest(model="m", instructions=None, items=[])
    start = time.process_time()
    for _ in range(n):
        async for _ in backend.generate(request):
            pass
    return (time.process_time() - start) / n * 1e6


def _log_to_devnull() -> None:
    """The access log on, at info, formatted as respd formats it, written to /dev/null."""
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (open for the whole run)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logs.access.addHandler(handler)
    logs.access.setLevel(logging.INFO)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=50_000)
    n = p.parse_args().n
    on, off = OpsSettings(), OpsSettings(metrics=False)
    rows = [
        ("no middleware", await per_request_us(_app, n)),
        ("middleware, metrics off", await per_request_us(AccessMiddleware(_app, off, None), n)),
        ("middleware, metrics on", await per_request_us(AccessMiddleware(_app, on, Metrics()), n)),
    ]
    _log_to_devnull()
    rows.append(("middleware, metrics on, access log at info (to /dev/null)",
                 await per_request_us(AccessMiddleware(_app, on, Metrics()), n)))  # fmt: skip
    route = ModelRoute(name="m", base_url="http://x")
    streams = n // 50
    rows += [
        ("64-delta stream, plain backend", await per_stream_us(_Stream(), streams)),
        ("64-delta stream, instrumented (metrics on)",
         await per_stream_us(InstrumentedBackend(_Stream(), route, Metrics()), streams)),  # type: ignore[arg-type]
    ]
    m = Metrics()
    usage = {"input_tokens": 5, "output_tokens": 64}
    start = time.process_time()
    for _ in range(n):
        m.finished("m", "completed", 0.1, usage)  # type: ignore[arg-type]
    rows.append(("a response's end counted (status, duration, tokens)", (time.process_time() - start) / n * 1e6))
    for name, us in rows:
        print(f"| {name} | {us:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
