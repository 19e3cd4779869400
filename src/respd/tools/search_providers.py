"""Web search providers: where the ``web_search`` tool sends its queries.

A provider turns a :class:`WebQuery` into :class:`WebResult` s, or raises :class:`ToolError` saying why it
could not (the model is told, and the response goes on). The operator picks one in the config::

    [web_search]
    provider = "searxng"                     # a SearXNG instance's JSON API
    base_url = "http://127.0.0.1:8888"

Another provider is a class with the same ``search`` method, added to :data:`PROVIDERS` under its name.
Every provider reaches the network through ``make_client`` (the server's outbound policy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from respd.config import ConfigError
from respd.tools.base import ToolError

ClientFactory = Callable[..., httpx.AsyncClient]


@dataclass(frozen=True, slots=True)
class WebQuery:
    """One search, as the tool asks for it."""

    query: str
    count: int  # results wanted (the provider may return fewer)
    location: Mapping[str, Any] | None = None  # the request's ``user_location`` (country, region, city, timezone)


@dataclass(frozen=True, slots=True)
class WebResult:
    """One page a search found."""

    url: str
    title: str
    snippet: str


class SearchProvider(Protocol):
    """A web search service."""

    name: str

    async def search(self, query: WebQuery) -> list[WebResult]:
        """The results of ``query``, best first; raises :class:`ToolError` when the service fails."""
        ...


class Searxng:
    """A SearXNG instance, through its JSON API (``GET /search?q=…&format=json``; the instance must list
    ``json`` among its ``search.formats``)."""

    name = "searxng"

    def __init__(self, base_url: str, make_client: ClientFactory, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._make_client = make_client
        self._timeout_s = timeout_s

    async def search(self, query: WebQuery) -> list[WebResult]:
        params = {"q": query.query, "format": "json"}
        try:
            async with self._make_client(timeout=self._timeout_s) as client:
                reply = await client.get(self.base_url + "/search", params=params)
        except httpx.TimeoutException:
            raise ToolError("the search service did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"the search service is unreachable ({type(exc).__name__})") from None
        if reply.status_code != 200:
            raise ToolError(f"the search service answered HTTP {reply.status_code}")
        try:
            results = reply.json().get("results")
        except (ValueError, AttributeError):
            raise ToolError("the search service sent a reply that is not its JSON format") from None
        return [_result(r) for r in results or () if isinstance(r, dict) and isinstance(r.get("url"), str)]


def _result(raw: dict[str, Any]) -> WebResult:
    return WebResult(url=raw["url"], title=str(raw.get("title") or raw["url"]), snippet=str(raw.get("content") or ""))


def _searxng(section: Mapping[str, Any], make_client: ClientFactory, timeout_s: float) -> SearchProvider:
    base_url = section.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError("[web_search] provider 'searxng' needs base_url, the instance's http(s) URL")
    return Searxng(base_url, make_client, timeout_s)


PROVIDERS: dict[str, Callable[[Mapping[str, Any], ClientFactory, float], SearchProvider]] = {"searxng": _searxng}


def provider(section: Mapping[str, Any], make_client: ClientFactory, timeout_s: float) -> SearchProvider:
    """The provider the ``[web_search]`` config table names."""
    name = section.get("provider")
    if name not in PROVIDERS:
        raise ConfigError(f"[web_search] provider must be one of {sorted(PROVIDERS)}, not {name!r}")
    return PROVIDERS[str(name)](section, make_client, timeout_s)
