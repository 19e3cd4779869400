"""A fake hosted search API for the tests: the Brave Search API's web search (``GET /res/v1/web/search``), on a
free port in a background thread. It stands for the hosted service outside respd.

It checks the subscription token (``X-Subscription-Token``; 401 otherwise, as Brave answers), answers each query
with three results made up from it (their ``description`` highlighted with ``<strong>`` as Brave's are),
records every request, and can be told to fail (``status``).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.mcp_server import ServerThread, free_port


def brave_results(query: str, n: int = 3) -> list[dict[str, Any]]:
    slug = "-".join(query.lower().split()) or "empty"
    return [{"type": "search_result", "title": f"Hosted result {i} on {query}", "url": f"https://hosted{i}.example/{slug}",
             "description": f"Page {i} says <strong>{query}</strong> matters.", "language": "en"}
            for i in range(1, n + 1)]  # fmt: skip


class FakeSearchApi:
    """Start with ``start()`` (or ``with``); point respd's ``[web_search]`` ``base_url`` at ``base_url``."""

    def __init__(self, token: str = "brave-test-token") -> None:
        self.token = token
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self._thread: ServerThread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/res/v1"

    @property
    def queries(self) -> list[str]:
        return [r["params"].get("q", "") for r in self.requests]

    async def _search(self, request: Request) -> JSONResponse:
        self.requests.append({"params": dict(request.query_params), "headers": dict(request.headers)})
        if request.headers.get("x-subscription-token") != self.token:
            return JSONResponse({"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID",
                                                                    "status": 401}}, status_code=401)  # fmt: skip
        if self.status != 200:
            return JSONResponse({"type": "ErrorResponse", "error": {"status": self.status}}, status_code=self.status)
        query = request.query_params.get("q", "")
        count = int(request.query_params.get("count", "20"))
        return JSONResponse({"type": "search", "query": {"original": query},
                             "web": {"type": "search", "results": brave_results(query)[:count]}})  # fmt: skip

    def start(self) -> None:
        self._thread = ServerThread(Starlette(routes=[Route("/res/v1/web/search", self._search)]), self.port)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
        self._thread = None

    def __enter__(self) -> FakeSearchApi:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
