"""Hybrid search over vector stores: the one entry point for ``POST /v1/vector_stores/{id}/search`` and
the ``file_search`` tool.

Use::

    retrieval = runtime.retrieval
    stores = await retrieval.stores(tenant, vector_store_ids)   # NotFound (404) for an unknown/foreign id
    hits = await retrieval.search(tenant, vector_store_ids, ["how do I reset it?"],
                                  filters=None, max_num_results=10, score_threshold=0.0, ranker="auto")
    for hit in hits: hit.file_id, hit.filename, hit.score, hit.text, hit.attributes

Each query is embedded with the stores' model and ranked two ways — by vector similarity (the IVF index
of :mod:`respd.retrieval.ivf`: only the lists nearest the query are read) and by keywords (the database's
full-text index, :mod:`respd.retrieval.keywords`) — and the ranked lists of every query are fused by
reciprocal rank fusion (k = 60), weighted by ``hybrid_search`` (``embedding_weight``, ``text_weight``;
1 and 1 by default). A hit's ``score`` is its fused score divided by the best a chunk could get (first in
every list), so it lies in (0, 1]: 1.0 is a chunk ranked first by meaning and by words for every query.
``score_threshold`` applies to that score.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from respd.errors import InvalidRequest, NotFound
from respd.retrieval import filters as flt
from respd.retrieval import ivf, keywords
from respd.retrieval.embedder import Embedder, EmbeddingError
from respd.store import vectors as db
from respd.store.store import Store

RRF_K = 60
CANDIDATES = 50  # per ranked list: enough that fusion finds what either half ranks near the top


@dataclass(frozen=True, slots=True)
class Hit:
    """One chunk found: the file it is from, its score in (0, 1], its text and the file's attributes."""

    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any]
    vector_store_id: str = ""

    def result(self) -> dict[str, Any]:
        """The ``VectorStoreSearchResultItem`` of the search API."""
        return {"file_id": self.file_id, "filename": self.filename, "score": self.score,
                "attributes": self.attributes, "content": [{"type": "text", "text": self.text}]}  # fmt: skip


@dataclass
class _Index:
    version: int
    centroids: Any


@dataclass
class Retrieval:
    """Search (and the index's centroids, cached per store and version) for this process."""

    store: Store
    embedder: Embedder
    _centroids: dict[str, _Index] = field(default_factory=dict)

    async def stores(self, tenant: str, ids: list[str], param: str = "vector_store_ids") -> list[db.StoreRow]:
        """The stores ``ids`` of ``tenant``, in order; a 404 naming the first that is unknown or not theirs."""
        found = await db.get_stores(self.store, tenant, ids)
        for vsid in ids:
            if vsid not in found:
                raise NotFound(f"Vector store with id '{vsid}' not found.", param=param)
        return [found[v] for v in ids]

    async def search(self, tenant: str, vector_store_ids: list[str], queries: list[str], *,
                     filters: dict[str, Any] | None = None, max_num_results: int = 10, score_threshold: float = 0.0,
                     ranker: str = "auto", hybrid_search: dict[str, float] | None = None) -> list[Hit]:  # fmt: skip
        """The best ``max_num_results`` chunks for ``queries`` in the stores (see the module docstring)."""
        del ranker  # the fusion is the ranking; "none" and "auto" are accepted alike
        stores = await self.stores(tenant, vector_store_ids)
        queries = [q for q in queries if q.strip()]
        if not queries:
            return []
        if filters is not None:
            flt.check(filters)
        for row in stores:
            if row.embedder != self.embedder.name:
                raise InvalidRequest(f"Vector store '{row.id}' was indexed with the embedding model "
                                     f"'{row.embedder}', but this server embeds with '{self.embedder.name}'.",
                                     param="vector_store_ids")  # fmt: skip
        # with a filter, the files that pass it (a store has far fewer files than chunks); else None: all
        files = {row.id: await self._files(row.id, filters) if filters is not None else None for row in stores}
        try:
            vectors = await self.embedder.embed(queries)  # the query context: never behind an ingestion
        except EmbeddingError as exc:
            raise InvalidRequest(f"The query could not be embedded: {exc}") from None
        weights = hybrid_search or {}
        w_vec = float(weights.get("embedding_weight", 1.0))
        w_text = float(weights.get("text_weight", 1.0))
        fused: dict[int, float] = {}
        where: dict[int, str] = {}
        best = 0.0
        # the vector half's reads and the hits' on one checkout (each checkout pings PostgreSQL)
        async with self.store.engine.connect() as conn:
            for query, vector in zip(queries, vectors, strict=True):
                # the two halves read on two connections at once (SQLite: two driver threads)
                ranked, words = await asyncio.gather(self._vector_ranked(stores, files, vector, conn),
                                                     self._keyword_ranked(stores, files, query))  # fmt: skip
                for weight, ranking in ((w_vec, ranked), (w_text, words)):
                    best += weight / (RRF_K + 1)
                    for rank, (cid, vsid) in enumerate(ranking):
                        fused[cid] = fused.get(cid, 0.0) + weight / (RRF_K + 1 + rank)
                        where[cid] = vsid
            if best <= 0:
                return []
            order = sorted(fused, key=lambda c: -fused[c])
            top = [(c, fused[c] / best) for c in order if fused[c] / best >= score_threshold][:max_num_results]
            return await self._hits(top, where, conn)

    async def _files(self, vsid: str, filters: dict[str, Any]) -> set[str]:
        """The ids of the store's completed files that pass ``filters``."""
        rows = await db.list_files(self.store, vsid, status="completed")
        return {f["file_id"] for f in rows if flt.matches(filters, orjson.loads(f["attributes"]))}

    async def _vector_ranked(self, stores: list[db.StoreRow], files: dict[str, set[str] | None], vector: Any,
                             conn: AsyncConnection | None = None) -> list[tuple[int, str]]:  # fmt: skip
        scored: list[tuple[float, int, str]] = []
        for row in stores:
            allowed = files[row.id]
            if allowed is not None and not allowed:
                continue
            for cid, score in await self._store_vectors(row, vector, allowed, conn):
                scored.append((score, cid, row.id))
        scored.sort(key=lambda s: -s[0])
        return [(cid, vsid) for _, cid, vsid in scored[:CANDIDATES]]

    async def _store_vectors(self, row: db.StoreRow, vector: Any, allowed: set[str] | None,
                             conn: AsyncConnection | None = None) -> list[tuple[int, float]]:  # fmt: skip
        # the scoring (1-3 ms of numpy, which lets go of the GIL) in a worker thread: the event loop meanwhile
        # takes the keyword half's replies and sends its next statement (-1.2 ms at 100k on PostgreSQL)
        with_files = allowed is not None
        if row.lists == 0:
            chunks = await db.packed(self.store, row.id, None, with_files=with_files, conn=conn)
            return await asyncio.to_thread(_top, chunks, vector, allowed)
        centroids = await self.centroids(row)
        n = ivf.nprobe(row.lists)
        while True:
            lists = ivf.probe(vector, centroids, n)
            chunks = await db.packed(self.store, row.id, lists, with_files=with_files, conn=conn)
            found = await asyncio.to_thread(_top, chunks, vector, allowed)
            # a filter that leaves few chunks in the probed lists: read more lists (all, at worst)
            if len(found) >= CANDIDATES or n >= row.lists:
                return found
            n = min(row.lists, n * 4)

    async def centroids(self, row: db.StoreRow) -> Any:
        """The store's IVF centroids (float32 rows), cached until its index is retrained."""
        cached = self._centroids.get(row.id)
        if cached is None or cached.version != row.index_version:
            blobs = await db.centroids(self.store, row.id)
            matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
            cached = self._centroids[row.id] = _Index(row.index_version, matrix)
        return cached.centroids

    async def retrain(self, row: db.StoreRow) -> None:
        """Train the store's lists anew on all its chunks (k-means off the event loop) and relist every chunk."""
        rows = await db.embeddings(self.store, row.id)
        if not rows:
            return
        matrix = ivf.from_blobs([r[2] for r in rows], 0)
        lists = ivf.list_count(len(rows))
        centroids = await asyncio.to_thread(ivf.train, matrix, lists)
        labels = await asyncio.to_thread(ivf.assign, matrix, centroids)

        def relabel(late: list[tuple[int, bytes]]) -> dict[int, int]:
            if not late:
                return {}
            found = ivf.assign(ivf.from_blobs([b for _, b in late], 0), centroids)
            return {cid: int(n) for (cid, _), n in zip(late, found, strict=True)}

        version = random.randrange(1, 2**31)  # unique, not a count: two replicas retraining at once differ
        await db.save_index(self.store, row.id, version, [c.tobytes() for c in centroids], len(rows),
                            {r[0]: int(n) for r, n in zip(rows, labels, strict=True)}, relabel)  # fmt: skip
        self._centroids[row.id] = _Index(version, centroids)

    async def _keyword_ranked(self, stores: list[db.StoreRow], files: dict[str, set[str] | None],
                              query: str) -> list[tuple[int, str]]:  # fmt: skip
        ids = [row.id for row in stores if files[row.id] is None or files[row.id]]
        if not ids:
            return []
        filtered = any(files[v] is not None for v in ids)
        hits = await keywords.search(self.store, ids, query, CANDIDATES * 4 if filtered else CANDIDATES)
        passing = [(cid, vsid) for cid, fid, vsid, _ in hits if _passes(files[vsid], fid)]
        return passing[:CANDIDATES]

    async def _hits(self, top: list[tuple[int, float]], where: dict[int, str], conn: AsyncConnection) -> list[Hit]:
        found = await db.found_chunks(self.store, [c for c, _ in top], conn)
        out = []
        for cid, score in top:
            if cid not in found:  # removed since it was ranked
                continue
            file_id, text, filename, attributes = found[cid]
            out.append(Hit(file_id, filename, round(score, 6), text, attributes, where[cid]))
        return out


def _passes(allowed: set[str] | None, file_id: str) -> bool:
    return allowed is None or file_id in allowed


def _top(chunks: db.Packed, vector: Any, allowed: set[str] | None) -> list[tuple[int, float]]:
    """The :data:`CANDIDATES` chunks most similar to ``vector`` among those of ``allowed`` files (None: all)."""
    if not chunks.ids:
        return []
    scores = ivf.decode(chunks.embeddings, len(chunks.ids)) @ vector
    ids = np.asarray(chunks.ids)
    if allowed is not None and chunks.file_ids is not None:
        keep = np.fromiter((f in allowed for f in chunks.file_ids), dtype=bool, count=len(ids))
        scores, ids = scores[keep], ids[keep]
    n = min(CANDIDATES, len(ids))
    if n == 0:
        return []
    best = np.argpartition(-scores, n - 1)[:n]
    return [(int(ids[i]), float(scores[i])) for i in best]
