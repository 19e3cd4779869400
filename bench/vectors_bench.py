"""Vector store benchmarks: ingestion with the bundled embedder, search latency at 10k and 100k chunks on
SQLite and PostgreSQL, and the IVF index's recall@10 against exact search on the same embeddings.

    uv run python bench/vectors_bench.py [--sizes 10000,100000] [--queries 200] [--pg postgresql://...]

1. **Ingestion.** A synthetic English text (~24 chunks at the default 800/400 tokens) is chunked and embedded
   with the bundled all-MiniLM-L6-v2 in two ways in the same run: respd's (each segment between chunk
   boundaries embedded once, a chunk the weighted mean of its segments) and the naive one (every chunk
   embedded whole, in 256-token windows). Chunks per second for each.
2. **Search.** For each size, a store of that many chunks is written straight into a fresh database through
   respd's own tables (SQLite file; PostgreSQL database made and dropped here), its IVF lists trained by
   respd's own code (``Retrieval.retrain``), then ``Retrieval.search`` — the code behind the search API and
   the file_search tool, hybrid: IVF probe + keyword index + fusion — is timed over ``--queries`` queries.
   PostgreSQL's table is vacuumed and analyzed first (see ``_vacuum``), as autovacuum leaves it.
   Embeddings are synthetic (clusters on the unit sphere, 384 dimensions like MiniLM: topics), since
   embedding 100k real chunks takes hours on 2 cores; texts are words drawn from a Zipf vocabulary so the
   keyword index has realistic posting lists. The query embedding is precomputed (its cost with MiniLM is
   reported on its own).
3. **Recall@10.** For the same queries, the vector half's top 10 by the IVF index against the exact top 10
   over every chunk of the store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as respd's package sets it; numpy is imported first here
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from respd.retrieval import ivf
from respd.retrieval.chunking import chunk_text, embed_chunks
from respd.retrieval.embedder import LocalEmbedder, normalize
from respd.retrieval.search import Retrieval
from respd.store import vectors as db
from respd.store.schema import vector_store_files, vs_chunks
from respd.store.store import Store

DIM = 384
WORDS = [f"w{i}" for i in range(20_000)]


class FixedEmbedder:
    """Hands the search the query vector the benchmark chose (the query's text is still keyword-searched)."""

    name = "bench"
    max_tokens = 256

    def __init__(self) -> None:
        self.next: Any = None

    async def embed(self, texts: list[str], *, bulk: bool = False) -> Any:
        return np.repeat(self.next[None, :], len(texts), axis=0)

    async def aclose(self) -> None:
        return None


def synthetic(n: int, rng: np.random.Generator, centers: Any) -> tuple[Any, list[str]]:
    topic = rng.integers(0, len(centers), n)
    vectors = normalize(centers[topic] + rng.normal(0, 0.03, (n, DIM)).astype(np.float32))
    # words of a Zipf vocabulary without its 150 commonest (the stop words a query drops): the commonest left
    # is in ~15 % of chunks, like a product's name in its manual
    draws = rng.zipf(1.3, (n, 400))
    texts = [" ".join(WORDS[j] for j in row[(row > 150) & (row < len(WORDS))][:60]) for row in draws]
    return vectors, texts


async def build(url: str, n: int, rng: np.random.Generator, centers: Any) -> tuple[Store, Retrieval, Any]:
    store = Store(url)
    await store.open()
    embedder = FixedEmbedder()
    retrieval = Retrieval(store, embedder)
    row = db.StoreRow("vs_bench", "", "bench", 0, 0, {}, None, None, embedder.name, 0, 0, 0)
    await db.save_store(store, row)
    files = [db.file_values("", "vs_bench", f"file-{i}", {"i": i}, {}) for i in range(n // 100)]
    for f in files:
        f["status"], f["filename"] = "completed", f["file_id"] + ".txt"

    def insert_files(conn: Any) -> None:
        conn.execute(vector_store_files.insert(), files)

    await store.transact(insert_files)
    vectors, texts = synthetic(n, rng, centers)
    step = 5000
    for start in range(0, n, step):
        rows = [
            {
                "vector_store_id": "vs_bench",
                "file_id": f"file-{i // 100}",
                "position": i % 100,
                "list_no": 0,
                "text": texts[i],
                "embedding": ivf.to_blob(vectors[i]),
            }
            for i in range(start, min(n, start + step))
        ]

        def insert_chunks(conn: Any, rows: list[dict[str, Any]] = rows) -> None:
            conn.execute(vs_chunks.insert(), rows)

        await store.transact(insert_chunks)
    t = time.perf_counter()
    found = await db.get_store(store, "", "vs_bench")
    assert found is not None
    await retrieval.retrain(found)
    print(f"  trained {ivf.list_count(n)} lists on {n} chunks in {time.perf_counter() - t:.1f} s", flush=True)
    if not store.is_sqlite:
        await _vacuum(url)
    return store, retrieval, vectors


async def _vacuum(url: str) -> None:
    """What autovacuum does to a table some time after a bulk write, done at once: the visibility map set
    (the IVF probe reads its covering index only, no table pages), GIN's pending list merged into the index
    (until then every keyword search reads the list through) and statistics for the planner. Measured just
    after the load without it, PostgreSQL 100k searched in ~190 ms instead of the figures below."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("VACUUM ANALYZE vs_chunks")
    finally:
        await conn.close()


async def search_run(url: str, n: int, queries: int, label: str) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    centers = normalize(rng.normal(0, 1, (max(100, n // 50), DIM)).astype(np.float32))  # ~50 chunks a topic
    store, retrieval, vectors = await build(url, n, rng, centers)
    try:
        qv, qt = synthetic(queries, rng, centers)
        embedder = retrieval.embedder
        assert isinstance(embedder, FixedEmbedder)
        row = await db.get_store(store, "", "vs_bench")
        assert row is not None
        baseline = []
        for _ in range(queries):  # the database's round trip alone, for the ratio on a shared machine
            t = time.perf_counter()
            await store.ping()
            baseline.append((time.perf_counter() - t) * 1000)
        times, recalls = [], []
        for i in range(queries):
            embedder.next = qv[i]
            words = " ".join(qt[i].split()[:4])
            t = time.perf_counter()
            await retrieval.search("", ["vs_bench"], [words], max_num_results=10)
            times.append((time.perf_counter() - t) * 1000)
            exact = set(np.argsort(-(vectors @ qv[i]))[:10].tolist())
            ranked = await retrieval._store_vectors(row, qv[i], None)
            ids = [cid for cid, _ in sorted(ranked, key=lambda r: -r[1])[:10]]
            recalls.append(len({c - 1 for c in ids} & exact) / 10)  # chunk ids are 1-based, in insert order
        times.sort()
        return {"label": label, "n": n, "lists": row.lists, "nprobe": ivf.nprobe(row.lists),
                "p50": statistics.median(times), "p99": times[int(len(times) * 0.99) - 1],
                "ping": statistics.median(baseline),
                "recall": statistics.mean(recalls)}  # fmt: skip
    finally:
        await store.close()


async def ingestion() -> dict[str, float]:
    rng = np.random.default_rng(1)
    vocab = [
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "for",
        "that",
        "router",
        "password",
        "reset",
        "network",
        "device",
        "label",
        "factory",
        "button",
        "press",
        "hold",
        "seconds",
        "restart",
        "admin",
        "page",
        "sign",
        "access",
        "wireless",
        "support",
        "contact",
        "manual",
        "warranty",
    ]
    text = ". ".join(" ".join(rng.choice(vocab, 12)) for _ in range(300))
    chunks, starts = chunk_text(text)
    embedder = LocalEmbedder()
    await embedder.embed(["warm up"], bulk=True)
    t = time.perf_counter()
    await embed_chunks(embedder, text, chunks, starts, 800)
    segments = time.perf_counter() - t
    t = time.perf_counter()
    await embedder.embed([c.text for c in chunks], bulk=True)
    whole = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(20):
        await embedder.embed(["how do I reset the router password?"])
    query_ms = (time.perf_counter() - t) / 20 * 1000
    await embedder.aclose()
    return {"chunks": len(chunks), "segments_cps": len(chunks) / segments, "whole_cps": len(chunks) / whole,
            "query_ms": query_ms}  # fmt: skip


async def pg_database(admin: str) -> str:
    import asyncpg

    name = f"respd_bench_{os.getpid()}_{int(time.time())}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name


async def drop_pg(admin: str, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-ingestion", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if not args.skip_ingestion:
        ing = await ingestion()
        print(
            f"ingestion ({ing['chunks']} chunks of 800/400 tokens, bundled MiniLM, 2 threads): "
            f"{ing['segments_cps']:.2f} chunks/s by segments, {ing['whole_cps']:.2f} chunks/s whole "
            f"(x{ing['segments_cps'] / ing['whole_cps']:.2f}); a query embeds in {ing['query_ms']:.1f} ms",
            flush=True,
        )
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            res = await search_run(f"sqlite+aiosqlite:///{tmp}/bench.db", n, args.queries, "SQLite")
            _report(res)
        url = await pg_database(args.pg)
        try:
            _report(await search_run(url, n, args.queries, "PostgreSQL"))
        finally:
            await drop_pg(args.pg, url)
    print(f"load average at end: {os.getloadavg()}", flush=True)


def _report(r: dict[str, Any]) -> None:
    print(
        f"{r['label']:<10} {r['n']:>7} chunks  lists {r['lists']:>4} nprobe {r['nprobe']:>3}  "
        f"search p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  recall@10 {r['recall']:.3f}  "
        f"(SELECT 1: p50 {r['ping']:.2f} ms; search/SELECT 1 = {r['p50'] / r['ping']:.0f}x)",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
