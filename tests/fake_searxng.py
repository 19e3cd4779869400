"""A fake SearXNG instance for the web_search tests: its JSON API (``GET /search?q=…&format=json``), in a thread.

It answers every query with scripted results (or three made up from the query), records each query, and can
be told to fail (``status``) or to take its time (``delay_s``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from tests.fake_upstream import serve_until_stopped


def results_for(query: str, n: int = 3) -> list[dict[str, Any]]:
    """What the fake finds for ``query`` unless scripted otherwise."""
    slug = "-".join(query.lower().split()) or "empty"
    return [{"url": f"https://example{i}.com/{slug}", "title": f"Result {i} about {query}",
             "content": f"Snippet {i}: facts about {query}.", "engine": "fake"} for i in range(1, n + 1)]  # fmt: skip


class FakeSearxng:
    """Start with ``start()`` (or ``with``); ``base_url`` is what respd's ``[web_search]`` points at."""

    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}  # lowercase query → results (else results_for(query))
        self.status = 200
        self.delay_s = 0.0
        self._queries: list[str] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def queries(self) -> list[str]:
        with self._cond:
            return list(self._queries)

    def wait_for_queries(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._queries) >= n, timeout)

    def reset(self) -> None:
        with self._cond:
            self._queries.clear()
        self.results.clear()
        self.status, self.delay_s = 200, 0.0

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="fake-searxng", daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop = self._thread = None

    def _serve(self) -> None:
        assert self._loop is not None
        serve_until_stopped(self._loop, lambda: self._runner)

    def __enter__(self) -> FakeSearxng:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _setup(self) -> int:
        app = web.Application()
        app.router.add_get("/search", self._search)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port: int = self._runner.addresses[0][1]
        return port

    async def _search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        with self._cond:
            self._queries.append(query)
            self._cond.notify_all()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.query.get("format") != "json":
            return web.Response(status=403, text="format not allowed")
        if self.status != 200:
            return web.Response(status=self.status, text="search engines failed")
        found = self.results.get(query.lower(), results_for(query))
        return web.json_response({"query": query, "number_of_results": len(found), "results": found,
                                  "answers": [], "suggestions": [], "unresponsive_engines": []})  # fmt: skip
