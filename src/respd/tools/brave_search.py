"""The Brave Search API, a hosted web search service, as a ``web_search`` provider (``provider = "brave"``).

::

    [web_search]
    provider = "brave"
    api_key_env = "BRAVE_SEARCH_API_KEY"              # the variable holding the subscription token
    base_url = "https://api.search.brave.com/res/v1"  # the default; a proxy or a test may point elsewhere

Each search is ``GET {base_url}/web/search?q=…&count=…`` with the token in ``X-Subscription-Token`` (read from
the environment at each search, so it rotates without a restart). The request's ``user_location`` goes along
as Brave's ``country`` parameter and ``X-Loc-*`` headers. Snippets lose the ``<strong>`` highlighting Brave
puts in them. Like every provider it reaches the network through the outbound policy.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from typing import Any

import httpx

from respd.config import ConfigError
from respd.outbound import OutboundPolicy, OutboundRefused
from respd.tools.base import ToolError
from respd.tools.search_providers import ClientFactory, SearchProvider, WebQuery, WebResult, fetch

DEFAULT_BASE_URL = "https://api.search.brave.com/res/v1"
MAX_COUNT = 20  # the most results Brave gives for one query
_TAGS = re.compile(r"<[^>]+>")
_LOCATION_HEADERS = {"city": "X-Loc-City", "region": "X-Loc-State-Name", "country": "X-Loc-Country",
                     "timezone": "X-Loc-Timezone"}  # fmt: skip


class BraveSearch:
    """Brave's web search endpoint."""

    name = "brave"

    def __init__(self, base_url: str, api_key_env: str, make_client: ClientFactory, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._make_client = make_client
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None  # one pool, made at the first search

    async def search(self, query: WebQuery) -> list[WebResult]:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ToolError(f"the search service has no API key (the server's {self.api_key_env} is not set)")
        params: dict[str, Any] = {"q": query.query, "count": max(1, min(query.count, MAX_COUNT))}
        headers = {"Accept": "application/json", "X-Subscription-Token": key}
        location = query.location or {}
        if isinstance(location.get("country"), str) and len(location["country"]) == 2:
            params["country"] = location["country"].upper()
        headers |= {h: str(location[k]) for k, h in _LOCATION_HEADERS.items() if location.get(k)}
        reply = await self._get(params, headers)
        if reply.status_code in (401, 403):
            raise ToolError(f"the search service refused the server's API key (HTTP {reply.status_code})")
        if reply.status_code == 429:
            raise ToolError("the search service's rate limit was reached (HTTP 429)")
        if reply.status_code != 200:
            raise ToolError(f"the search service answered HTTP {reply.status_code}")
        try:
            results = (reply.json().get("web") or {}).get("results") or []
        except (ValueError, AttributeError):
            raise ToolError("the search service sent a reply that is not its JSON format") from None
        return [_result(r) for r in results if isinstance(r, dict) and isinstance(r.get("url"), str)]

    async def _get(self, params: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        if self._client is None:
            self._client = self._make_client(timeout=self._timeout_s)
        return await fetch(self._client, self.base_url + "/web/search", params, headers)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _text(raw: Any) -> str:
    return html.unescape(_TAGS.sub("", str(raw or "")))


def _result(raw: dict[str, Any]) -> WebResult:
    snippet = " ".join([_text(raw.get("description")), *(_text(s) for s in raw.get("extra_snippets") or ())])
    return WebResult(url=raw["url"], title=_text(raw.get("title")) or raw["url"], snippet=snippet.strip())


def brave(section: Mapping[str, Any], outbound: OutboundPolicy, timeout_s: float) -> SearchProvider:
    """The provider for a ``[web_search]`` table with ``provider = "brave"``."""
    key_env = section.get("api_key_env")
    if not isinstance(key_env, str) or not key_env:
        raise ConfigError("[web_search] provider 'brave' needs api_key_env, the variable holding its API key")
    base_url = section.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError("[web_search] base_url must be an http(s) URL")
    try:
        outbound.check_url(base_url)
    except OutboundRefused as exc:
        raise ConfigError(f"[web_search] base_url: {exc.message} Add it to outbound_allow.") from None
    return BraveSearch(base_url, key_env, outbound.httpx_client, timeout_s)
