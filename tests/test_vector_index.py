"""The IVF index and keyword search on a real database (SQLite and PostgreSQL), for a store large enough to
have lists: the packed read of the probed lists scores exactly what a row-by-row read would, filters reach
past the first lists probed, keyword matches stay inside the stores searched, and searches go through
:class:`respd.retrieval.search.Retrieval` with query vectors from a fake embeddings upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from respd.config import EmbeddingsConfig
from respd.retrieval import ivf, keywords
from respd.retrieval.embedder import UpstreamEmbedder, normalize
from respd.retrieval.search import Retrieval
from respd.store import vectors as db
from respd.store.schema import vector_store_files, vs_chunks
from respd.store.store import Store
from tests.fake_embeddings import FakeEmbeddings, vector

CHUNKS = 3000  # past ivf.EXACT_MAX: the store is trained with lists
WORDS = [f"term{i}" for i in range(400)]


@pytest.fixture(scope="module")
def embeddings() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    fake.start()
    yield fake
    fake.stop()


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 12)) for _ in range(n)]


async def _fill(store: Store, vsid: str, texts: list[str], files: int) -> None:
    """A completed store of ``texts`` in ``files`` files (``part`` attribute a, b, …), written through
    respd's tables as ingestion leaves them."""
    await db.save_store(store, db.StoreRow(vsid, "t", vsid, 0, 0, {}, None, None, "hash-64", 0, 0, 0))
    rows = []
    for i in range(files):
        row = db.file_values("t", vsid, f"file-{vsid}-{i}", {"part": "abcdefgh"[i]}, {})
        rows.append({**row, "status": "completed", "filename": f"{i}.txt", "usage_bytes": 10})
    vectors = normalize(np.asarray([vector(t) for t in texts], dtype=np.float32))
    chunks = [{"vector_store_id": vsid, "file_id": f"file-{vsid}-{i % files}", "position": i, "list_no": 0,
               "text": t, "embedding": ivf.to_blob(v)} for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]  # fmt: skip

    def work(conn: Any) -> None:
        conn.execute(vector_store_files.insert(), rows)
        conn.execute(vs_chunks.insert(), chunks)

    await store.transact(work)


async def _scenario(url: str, embeddings: FakeEmbeddings) -> None:
    store = Store(url)
    await store.open()
    embedder = UpstreamEmbedder(EmbeddingsConfig(base_url=embeddings.base_url, model="hash-64"))
    retrieval = Retrieval(store, embedder)
    try:
        await _fill(store, "vs_big", _texts(CHUNKS, 1), files=4)
        await _fill(store, "vs_small", ["term7 term8 unique", "term7 other words"], files=1)
        row = await db.get_store(store, "t", "vs_big")
        assert row is not None
        await retrieval.retrain(row)
        row = await db.get_store(store, "t", "vs_big")
        assert row is not None and row.lists == ivf.list_count(CHUNKS) > 0

        # the packed read: every chunk of the probed lists, ids and vectors in step, scored as row by row
        query = normalize(np.asarray([vector("term1 term2 term3")], dtype=np.float32))[0]
        lists = ivf.probe(query, await retrieval.centroids(row), ivf.nprobe(row.lists))
        rows = await db.embeddings(store, "vs_big", lists=lists)
        packed = await db.packed(store, "vs_big", lists, with_files=True)
        assert sorted(packed.ids) == sorted(r[0] for r in rows) and 0 < len(rows) < CHUNKS
        by_id = {r[0]: r for r in rows}
        assert packed.file_ids == [by_id[i][1] for i in packed.ids]
        decoded = ivf.decode(packed.embeddings, len(packed.ids))
        expected = np.frombuffer(b"".join(by_id[i][2] for i in packed.ids), dtype=np.float16).astype(np.float32)
        assert np.array_equal(decoded.ravel(), expected)
        found = dict(await retrieval._store_vectors(row, query, None))
        best = sorted(by_id, key=lambda i: -float(decoded[packed.ids.index(i)] @ query))[:10]
        assert set(best) <= set(found)

        # a filter that one file in four passes: the probe reads on until it has enough of that file's chunks
        only_b = await retrieval._store_vectors(row, query, {"file-vs_big-1"})
        assert len(only_b) >= 50 and all((cid - 1) % 4 == 1 for cid, _ in only_b)
        hits = await retrieval.search("t", ["vs_big"], ["term1 term2 term3"], max_num_results=20,
                                      filters={"type": "eq", "key": "part", "value": "b"})  # fmt: skip
        assert len(hits) == 20 and {h.file_id for h in hits} == {"file-vs_big-1"}
        assert all(h.attributes == {"part": "b"} and h.filename == "1.txt" for h in hits)

        # keywords: matches of the stores searched only, best first
        small = await keywords.search(store, ["vs_small"], "term7 unique", 10)
        assert [r[2] for r in small] == ["vs_small", "vs_small"] and small[0][3] > small[1][3]
        big = await keywords.search(store, ["vs_big"], "term7", 50)
        assert len(big) == 50 and {r[2] for r in big} == {"vs_big"}
        both = await retrieval.search("t", ["vs_big", "vs_small"], ["unique"], max_num_results=5)
        assert both[0].vector_store_id == "vs_small" and "unique" in both[0].text
    finally:
        await embedder.aclose()
        await store.close()


def test_index_reads_filters_and_keywords(own_database: str, embeddings: FakeEmbeddings) -> None:
    asyncio.run(_scenario(own_database, embeddings))


async def _common_words(url: str) -> None:
    store = Store(url)
    await store.open()
    try:
        # "alpha" in every chunk but one: a common word; "ERR-4471" in two, one of them without "alpha"
        texts = [f"alpha filler{i % 30} more{i}" for i in range(300)]
        texts[10], texts[20] = "alpha ERR-4471 shown", "beta ERR-4471 shown"
        await _fill(store, "vs_words", texts, files=1)
        if not store.is_sqlite:
            async with store.engine.begin() as conn:
                await conn.exec_driver_sql("ANALYZE vs_chunks")  # the statistics the common words come from
        # the common word's matches are not looked up: the identifier's chunks are all that is found
        found = await keywords.search(store, ["vs_words"], "alpha ERR-4471", 10)
        assert sorted(r[0] for r in found) == [11, 21]
        if not store.is_sqlite:  # and it still ranks them: a chunk with both words first
            assert found[0][0] == 11 and found[0][3] > found[1][3]
        # a query of common words only keeps the rarest of them: it still matches
        assert len(await keywords.search(store, ["vs_words"], "alpha", 10)) == 10
        assert await keywords.search(store, ["vs_words"], "the of", 10) == []  # stop words only
        filler = await keywords.search(store, ["vs_words"], "the filler7 of", 50)
        assert sorted(r[0] for r in filler) == list(range(8, 300, 30))
    finally:
        await store.close()


def test_common_words_are_not_looked_up(own_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keywords, "COMMON_DOCS", 100)
    asyncio.run(_common_words(own_database))
