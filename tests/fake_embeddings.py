"""A fake OpenAI-compatible ``/v1/embeddings`` upstream: a real aiohttp server in a background thread.

Vectors are hashed bags of words (the same words give the same direction, shared words make texts close),
so search over them is meaningful; ``delay_s`` slows every request (to catch an ingestion mid-way), and
``fail_status`` makes it refuse.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from typing import Any

from aiohttp import web

DIMENSIONS = 64


def vector(text: str) -> list[float]:
    out = [0.0] * DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        out[h % DIMENSIONS] += 1.0 if h & 1 << 31 else -1.0
    if not any(out):
        out[0] = 1.0
    return out


class FakeEmbeddings:
    def __init__(self) -> None:
        self.delay_s = 0.0
        self.fail_status: int | None = None
        self.requests = 0
        self.inputs = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-embeddings", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _setup(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port: int = self._runner.addresses[0][1]
        return port

    async def _embeddings(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status is not None:
            return web.json_response({"error": {"message": "refused", "type": "server_error"}},
                                     status=self.fail_status)  # fmt: skip
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.inputs += len(inputs)
        data = [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(inputs)]
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 0, "total_tokens": 0}})  # fmt: skip
