"""The ``web_search`` hosted tool (also ``web_search_preview`` and their dated types), on a search provider.

Enabled by the config's ``[web_search]`` table (see :mod:`respd.tools.search_providers`)::

    [web_search]
    provider = "searxng"
    base_url = "http://127.0.0.1:8888"
    timeout_s = 20          # a search that takes longer fails (the model is told)

The model is offered one function, ``web_search(query)``. Each call is a ``web_search_call`` item
(``ws_…``) with ``action: {"type": "search", "query"}`` (and ``sources`` with
``include: ["web_search_call.action.sources"]``), streamed as ``response.web_search_call.in_progress``,
``.searching``, ``.completed``. The model reads the results numbered (``[3] title, URL, snippet``) and cites
them as ``[3]``; those markers become ``url_citation`` annotations (:mod:`respd.tools.citations`).

``search_context_size`` sets how much the model reads (low 3 results of up to 300 characters, medium 5 of
600, high 8 of 1,200); ``filters.allowed_domains`` keeps only results on those domains and their
subdomains; ``user_location`` is passed to the provider (SearXNG has no use for it).
``external_web_access: false`` asks for cached results only, which a live provider cannot give: such a call
fails and says so. A search is side-effect free: one in flight when its server died is run
again by the server that takes the response over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from respd.config import ConfigError
from respd.tools.base import (
    Call,
    HostedTool,
    Item,
    Outcome,
    Progress,
    Source,
    ToolContext,
    ToolError,
    ToolHost,
    check_config,
)
from respd.tools.citations import CITE_HINT
from respd.tools.search_providers import SearchProvider, WebQuery, WebResult, provider

FUNCTION = "web_search"
SOURCES = "web_search_call.action.sources"
# search_context_size → (results the model reads, characters of each snippet)
CONTEXT_SIZES = {"low": (3, 300), "medium": (5, 600), "high": (8, 1200)}
DESCRIPTION = (
    "Search the web for current information. Returns numbered results with their titles, addresses and "
    "snippets. " + CITE_HINT
)
PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to search for, as a search engine query."}},
    "required": ["query"],
    "additionalProperties": False,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Location(_Strict):
    type: Literal["approximate"] = "approximate"
    country: str | None = None
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


class Filters(_Strict):
    allowed_domains: list[str] | None = None


class WebSearchConfig(_Strict):
    type: str
    search_context_size: Literal["low", "medium", "high"] = "medium"
    user_location: Location | None = None
    filters: Filters | None = None
    external_web_access: bool = True
    search_content_types: list[str] | None = None  # web_search_preview's; only text is searched


class WebSearch:
    """Web search through one provider."""

    types: ClassVar[frozenset[str]] = frozenset(
        {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
    )
    item_type: ClassVar[str] = "web_search_call"
    id_prefix: ClassVar[str] = "ws"
    rerunnable: ClassVar[bool] = True
    interrupted_status: ClassVar[str] = "failed"  # the item has no "incomplete"

    def __init__(self, search: SearchProvider, timeout_s: float) -> None:
        self.provider = search
        self.timeout_s = timeout_s

    def configure(self, raw: Mapping[str, Any], param: str) -> dict[str, Any]:
        cfg = check_config(WebSearchConfig, raw, param)
        location = cfg.user_location.model_dump() if cfg.user_location else None
        echo: dict[str, Any] = {"type": cfg.type, "search_context_size": cfg.search_context_size,
                                "user_location": location}  # fmt: skip
        if not cfg.type.startswith("web_search_preview"):
            domains = [_domain(d) for d in (cfg.filters.allowed_domains or ())] if cfg.filters else None
            echo["filters"] = {"allowed_domains": domains} if domains else None
            echo["external_web_access"] = cfg.external_web_access
        return echo

    def functions(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "function", "name": FUNCTION, "namespace": None, "description": DESCRIPTION,
                 "parameters": PARAMETERS, "strict": None}]  # fmt: skip

    def start(self, call: Call) -> tuple[Item, list[Progress]]:
        item = {"id": call.item_id, "type": self.item_type, "status": "in_progress",
                "action": {"type": "search", "query": _query(call)}}  # fmt: skip
        return item, [("response.web_search_call.in_progress", {}), ("response.web_search_call.searching", {})]

    async def run(self, call: Call, ctx: ToolContext) -> Outcome:
        query = _query(call)
        if not query:
            raise ToolError("the call gave no query")
        if call.config.get("external_web_access") is False:
            raise ToolError("live web access is off for this request, and this server has no cached results")
        count, chars = CONTEXT_SIZES[call.config["search_context_size"]]
        domains = ((call.config.get("filters") or {}).get("allowed_domains")) or []
        location = call.config.get("user_location")
        found = await self.provider.search(WebQuery(query, count, location))
        results = [r for r in found if _allowed(r.url, domains)][:count]
        numbered = [(ctx.cite(Source("url", r.title, url=r.url, text=r.snippet[:chars])), r) for r in results]
        action: dict[str, Any] = {"type": "search", "query": query}
        if SOURCES in ctx.include:
            action["sources"] = [{"type": "url", "url": r.url} for r in results]
        item = {"id": call.item_id, "type": self.item_type, "status": "completed", "action": action}
        return Outcome(item, _output(query, numbered, chars), [("response.web_search_call.completed", {})])

    def failed(self, call: Call, message: str) -> Outcome:
        item = {"id": call.item_id, "type": self.item_type, "status": "failed",
                "action": {"type": "search", "query": _query(call)}}  # fmt: skip
        return Outcome(item, f"The web search failed: {message}. Answer without it, and say that it failed.")

    async def aclose(self) -> None:
        await self.provider.aclose()

    def recall(self, item: Item) -> tuple[str, Any, str]:
        action = item.get("action") or {}
        sources = [s.get("url") for s in action.get("sources") or () if isinstance(s, dict)]
        listing = "\n".join(f"- {url}" for url in sources if url)
        output = f"Sources found:\n{listing}" if listing else "(The results of this search are no longer available.)"
        return FUNCTION, {"query": action.get("query") or ""}, output


def _query(call: Call) -> str:
    args = call.arguments
    query = args.get("query") if isinstance(args, dict) else None
    return query.strip() if isinstance(query, str) else ""


def _output(query: str, numbered: list[tuple[int, WebResult]], chars: int) -> str:
    if not numbered:
        return f'The web search for "{query}" found nothing.'
    lines = [f'Web search results for "{query}":', ""]
    for n, r in numbered:
        lines += [f"[{n}] {r.title}", f"URL: {r.url}", r.snippet[:chars], ""]
    lines.append(CITE_HINT)
    return "\n".join(lines)


def _domain(raw: str) -> str:
    text = raw.strip().lower()
    host = urlsplit(text if "://" in text else "//" + text).hostname or text
    return host.removeprefix("www.")


def _allowed(url: str, domains: list[str]) -> bool:
    if not domains:
        return True
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in domains)


def hosted_tool(host: ToolHost) -> HostedTool | None:
    """The web search tool, when the config has a ``[web_search]`` table."""
    settings = host.settings
    section = settings.section("web_search")
    if not section:
        return None
    timeout_s = section.get("timeout_s", 20.0)
    if not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ConfigError("[web_search] timeout_s must be a number of seconds > 0")
    return WebSearch(provider(section, settings.outbound, float(timeout_s)), float(timeout_s))
