"""The ``file_search`` hosted tool: the model searches the request's vector stores and cites the chunks it uses.

Per request tool ``{"type": "file_search", "vector_store_ids": [...], "max_num_results", "filters",
"ranking_options"}`` the model is offered one function, ``file_search(queries)``. Each call is a
``file_search_call`` item (``fs_…``) with the model's ``queries``, streamed as
``response.file_search_call.in_progress`` → ``.searching`` → ``.completed``; its ``results`` (``file_id``,
``filename``, ``score``, ``text``, ``attributes``) are in the item only with ``include:
["file_search_call.results"]``, while the model always reads them, numbered, and cites a chunk as ``[n]``:
that marker becomes a ``file_citation`` annotation (``file_id``, ``filename``, ``index``) on the answer.

The search is the vector stores' own (:class:`respd.retrieval.search.Retrieval`, the same hybrid ranking as
``POST /v1/vector_stores/{id}/search``), over the stores of the request's API key only. A store id that is
unknown or another key's is a 404 before the response is created (:meth:`FileSearch.check`); a search that
fails later (the store deleted meanwhile, the embedding upstream down) is a failed call the model is told
about, never an empty result. A search has no side effects: one in flight when its server died is run
again by the server that takes the response over.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from respd.errors import InvalidRequest, RespdError
from respd.retrieval import filters as flt
from respd.retrieval.search import Hit
from respd.store import vectors as db
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

FUNCTION = "file_search"
RESULTS = "file_search_call.results"
DEFAULT_RESULTS = 10  # as the search endpoint: ten 800-token chunks already fill a small model's window
MAX_QUERIES = 5  # more than a model needs; each query is embedded and ranked
MAX_STORES = 100  # respd's bound (the API states none): every store is ranked for every query
DESCRIPTION = (
    "Search the files the user has provided. Give one or more search queries (several phrasings, or the "
    "distinct questions you need answered); the best matching excerpts are returned, numbered, with the "
    "names of their files. Use it whenever the answer may be in the user's files. " + CITE_HINT
)
PARAMETERS = {
    "type": "object",
    "properties": {
        "queries": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_QUERIES,
                    "description": "Search queries: keywords or questions, in the language of the files."},
    },
    "required": ["queries"],
    "additionalProperties": False,
}  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HybridSearch(_Strict):
    embedding_weight: Annotated[float, Field(ge=0)]
    text_weight: Annotated[float, Field(ge=0)]


class RankingOptions(_Strict):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.0
    hybrid_search: HybridSearch | None = None


class FileSearchConfig(_Strict):
    type: Literal["file_search"]
    vector_store_ids: Annotated[list[str], Field(min_length=1, max_length=MAX_STORES)]
    max_num_results: Annotated[int, Field(ge=1, le=50)] = DEFAULT_RESULTS
    filters: dict[str, Any] | None = None  # checked by respd.retrieval.filters (it nests)
    ranking_options: RankingOptions | None = None


class FileSearch:
    """Search over the request's vector stores, with the server's retrieval."""

    types: ClassVar[frozenset[str]] = frozenset({"file_search"})
    item_type: ClassVar[str] = "file_search_call"
    id_prefix: ClassVar[str] = "fs"
    rerunnable: ClassVar[bool] = True
    interrupted_status: ClassVar[str] = "incomplete"
    checked: ClassVar[bool] = True  # its stores are the API key's: :meth:`check` 404s before anything runs
    timeout_s = 60.0  # a query is embedded first: an embeddings upstream may be slow

    def __init__(self, host: ToolHost) -> None:
        self.host = host  # read at call time: the retrieval service is the process's

    # -- the request ----------------------------------------------------------------------------------------
    def configure(self, raw: Mapping[str, Any], param: str) -> dict[str, Any]:
        cfg = check_config(FileSearchConfig, raw, param)
        if cfg.filters is not None:
            flt.check(cfg.filters, f"{param}.filters")
        ranking = cfg.ranking_options or RankingOptions()
        hybrid = ranking.hybrid_search
        if hybrid is not None and hybrid.embedding_weight + hybrid.text_weight <= 0:
            raise InvalidRequest("At least one of the hybrid_search weights must be above 0.",
                                 param=f"{param}.ranking_options.hybrid_search")  # fmt: skip
        return {"type": "file_search", "vector_store_ids": list(dict.fromkeys(cfg.vector_store_ids)),
                "filters": cfg.filters, "max_num_results": cfg.max_num_results,
                "ranking_options": ranking.model_dump(exclude_none=True)}  # fmt: skip

    async def check(self, config: Mapping[str, Any], tenant: str, param: str) -> None:
        """A 404 for a store that is unknown or not ``tenant``'s, a 400 for an expired one; the stores are
        marked active (their expiry moves on), as a search through the API does."""
        ids, where = list(config["vector_store_ids"]), f"{param}.vector_store_ids"
        rows = await self.host.retrieval.stores(tenant, ids, where)  # a NUL id names nothing there too
        now = int(time.time())
        for row in rows:
            if row.expires_at is not None and row.expires_at <= now:
                raise InvalidRequest(f"Vector store '{row.id}' has expired.", param=where, code="expired")
            if now - row.last_active_at >= 60:  # written at most once a minute, like the search endpoint
                expires_at = now + row.expires_after["days"] * 86_400 if row.expires_after else None
                await db.touch_store(self.host.store, row.id, now, expires_at)

    def functions(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "function", "name": FUNCTION, "namespace": None, "description": DESCRIPTION,
                 "parameters": PARAMETERS, "strict": None}]  # fmt: skip

    async def prepare(self, config: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return dict(config)  # the stores were checked with the request (:meth:`check`)

    # -- a call ---------------------------------------------------------------------------------------------
    def start(self, call: Call) -> tuple[Item, list[Progress]]:
        item = {"id": call.item_id, "type": self.item_type, "status": "in_progress", "queries": _queries(call),
                "results": None}  # fmt: skip
        return item, [("response.file_search_call.in_progress", {}), ("response.file_search_call.searching", {})]

    async def run(self, call: Call, ctx: ToolContext) -> Outcome:
        queries = _queries(call)
        if not queries:
            raise ToolError("the call gave no query")
        ranking = call.config.get("ranking_options") or {}
        try:
            hits = await self.host.retrieval.search(
                ctx.tenant, list(call.config["vector_store_ids"]), queries, filters=call.config.get("filters"),
                max_num_results=int(call.config["max_num_results"]),
                score_threshold=float(ranking.get("score_threshold", 0.0)), ranker=str(ranking.get("ranker", "auto")),
                hybrid_search=ranking.get("hybrid_search"),
            )  # fmt: skip
        except RespdError as exc:  # a store deleted since the request, the query not embeddable: say so
            raise ToolError(exc.message) from None
        numbered = [(ctx.cite(Source("file", h.filename, file_id=h.file_id, filename=h.filename, text=h.text)), h)
                    for h in hits]  # fmt: skip
        results = [_result(h) for h in hits] if RESULTS in ctx.include else None
        item = {"id": call.item_id, "type": self.item_type, "status": "completed", "queries": queries,
                "results": results}  # fmt: skip
        return Outcome(item, _output(queries, numbered), [("response.file_search_call.completed", {})])

    def failed(self, call: Call, message: str) -> Outcome:
        item = {"id": call.item_id, "type": self.item_type, "status": "failed", "queries": _queries(call),
                "results": None}  # fmt: skip
        return Outcome(item, f"The file search failed: {message}. Answer without it, and say that it failed.")

    async def aclose(self) -> None:
        """Nothing of its own: the runtime closes the retrieval service."""

    def recall(self, item: Item) -> tuple[str, Any, str]:
        queries = [q for q in item.get("queries") or () if isinstance(q, str)]
        found = [r for r in item.get("results") or () if isinstance(r, dict)]
        if found:
            output = "\n\n".join(f"{r.get('filename') or r.get('file_id')}:\n{r.get('text') or ''}" for r in found)
        else:
            output = "(The results of this search are no longer available.)"
        return FUNCTION, {"queries": queries}, output


def _queries(call: Call) -> list[str]:
    """The model's queries; a lone ``query`` string (small models pick the common name) counts too."""
    args = call.arguments
    if isinstance(args, str):  # not JSON: the model wrote its query bare
        raw: Any = [args]
    elif isinstance(args, dict):
        raw = args.get("queries", args.get("query"))
        raw = [raw] if isinstance(raw, str) else raw
    else:
        raw = None
    if not isinstance(raw, list):
        return []
    return [q.strip() for q in raw if isinstance(q, str) and q.strip()][:MAX_QUERIES]


def _result(hit: Hit) -> dict[str, Any]:
    return {"file_id": hit.file_id, "filename": hit.filename, "score": hit.score, "text": hit.text,
            "attributes": hit.attributes}  # fmt: skip


def _output(queries: list[str], numbered: list[tuple[int, Hit]]) -> str:
    asked = ", ".join(f'"{q}"' for q in queries)
    if not numbered:
        return f"The file search for {asked} found nothing in the files."
    lines = [f"File search results for {asked}:", ""]
    for n, hit in numbered:
        lines += [f"[{n}] {hit.filename}", hit.text, ""]
    lines.append(CITE_HINT)
    return "\n".join(lines)


def hosted_tool(host: ToolHost) -> HostedTool | None:
    """The file search tool: always there, since every server has vector stores."""
    return FileSearch(host)
