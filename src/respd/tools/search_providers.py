"""Web search providers: where the ``web_search`` tool sends its queries.

A provider turns a :class:`WebQuery` into :class:`WebResult` s, or raises :class:`ToolError` saying why it
could not (the model is told, and the response goes on). The operator picks one in the config::

    [web_search]
    provider = "searxng"                     # a SearXNG instance's JSON API
    base_url = "http://127.0.0.1:8888"

Another provider is a class with the same ``search`` method, added to :data:`PROVIDERS` under its name.
Every provider reaches the network through the server's outbound policy (its ``httpx_client``): a provider
on a private or loopback address must be listed in ``outbound_allow``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from respd.config import ConfigError
from respd.outbound import OutboundPolicy, OutboundRefused, refusal
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

    async def aclose(self) -> None:
        """Close pooled connections (at shutdown)."""
        ...


class Searxng:
    """A SearXNG instance, through its JSON API (``GET /search?q=…&format=json``; the instance must list
    ``json`` among its ``search.formats``)."""

    name = "searxng"

    def __init__(self, base_url: str, make_client: ClientFactory, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._make_client = make_client
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None  # one pool, made at the first search (a new client
        # costs tens of milliseconds: its TLS context loads the CA store)

    async def search(self, query: WebQuery) -> list[WebResult]:
        params = {"q": query.query, "format": "json"}
        if self._client is None:
            self._client = self._make_client(timeout=self._timeout_s)
        try:
            reply = await self._client.get(self.base_url + "/search", params=params)
        except httpx.TimeoutException:
            raise ToolError("the search service did not answer in time") from None
        except httpx.HTTPError as exc:
            refused = refusal(exc)
            if refused is not None:
                raise ToolError(f"the search service may not be reached: {refused.message}") from None
            raise ToolError(f"the search service is unreachable ({type(exc).__name__})") from None
        if reply.status_code != 200:
            raise ToolError(f"the search service answered HTTP {reply.status_code}")
        try:
            results = reply.json().get("results")
        except (ValueError, AttributeError):
            raise ToolError("the search service sent a reply that is not its JSON format") from None
        return [_result(r) for r in results or () if isinstance(r, dict) and isinstance(r.get("url"), str)]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _result(raw: dict[str, Any]) -> WebResult:
    return WebResult(url=raw["url"], title=str(raw.get("title") or raw["url"]), snippet=str(raw.get("content") or ""))


def _searxng(section: Mapping[str, Any], outbound: OutboundPolicy, timeout_s: float) -> SearchProvider:
    base_url = section.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError("[web_search] provider 'searxng' needs base_url, the instance's http(s) URL")
    try:
        outbound.check_url(base_url)  # a literal address the policy refuses: say so now, not at every search
    except OutboundRefused as exc:
        raise ConfigError(f"[web_search] base_url: {exc.message} Add it to outbound_allow.") from None
    return Searxng(base_url, outbound.httpx_client, timeout_s)


PROVIDERS: dict[str, Callable[[Mapping[str, Any], OutboundPolicy, float], SearchProvider]] = {"searxng": _searxng}


def provider(section: Mapping[str, Any], outbound: OutboundPolicy, timeout_s: float) -> SearchProvider:
    """The provider the ``[web_search]`` config table names, reaching out through ``outbound``."""
    name = section.get("provider")
    if name not in PROVIDERS:
        raise ConfigError(f"[web_search] provider must be one of {sorted(PROVIDERS)}, not {name!r}")
    return PROVIDERS[str(name)](section, outbound, timeout_s)
