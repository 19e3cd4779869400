"""Ingestion of vector store files, as durable jobs of kind ``ingest`` on the job queue.

Adding a file to a vector store commits the file's row (``in_progress``) and its job in one transaction.
Any replica's :class:`Ingestor` claims the job, reads the file's bytes from the database, extracts its
text, chunks and embeds it (off the event loop) and, in one transaction, writes the chunks, marks the file
``completed`` and ends the job. A file that cannot be read ends ``failed`` with a ``last_error`` saying why;
no file is left ``in_progress`` for good and none completes empty. A replica killed mid-way leaves its
job owned by a dead lease: another replica (or the same one restarted) claims it and starts the file over
(nothing of a half-done ingestion was committed). A file whose ingestion killed its replica
:data:`MAX_ATTEMPTS` times fails instead of taking down the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from respd.engine.runtime import Runtime
from respd.errors import UnreadableFile
from respd.files.extract import extract_text
from respd.jobs.queue import Job, JobQueue
from respd.retrieval import ivf
from respd.retrieval.chunking import chunk_text, embed_chunks
from respd.retrieval.embedder import EmbeddingError
from respd.store import files
from respd.store import vectors as db
from respd.store.signals import JOBS

log = logging.getLogger("respd.ingest")

MAX_ATTEMPTS = 3
SLICE = 64  # chunks embedded per step: the file's progress is not one long call


class Ingestor:
    """Claims ingestion jobs and runs up to ``settings.ingest_workers`` of them in this process."""

    def __init__(self, rt: Runtime, queue: JobQueue) -> None:
        self.rt = rt
        self.queue = queue
        self.capacity = rt.settings.ingest_workers
        self.poll_s = min(2.0, rt.settings.lease_s / 4)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.rt.store.signals.on(JOBS, lambda _payload: self._wake.set())
        self._loop = asyncio.create_task(self._claim_loop(), name="respd-ingest")

    def wake(self) -> None:
        """New files were added here: look for work now (other replicas hear the ``respd_jobs`` notice)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming and abandon running ingestions (the queue's retire gives their jobs back)."""
        tasks = [t for t in (self._loop, *self.tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _claim_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                room = self.capacity - len(self.tasks)
                if room > 0:
                    for job in await self.queue.claim(room, kind=db.INGEST):
                        task = asyncio.create_task(self._take(job), name=f"respd-ingest-{job.response_id}")
                        self.tasks[job.response_id] = task
                        task.add_done_callback(self._finished_callback(job.response_id))
            except Exception:
                log.exception("claiming ingestion jobs failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    def _finished_callback(self, key: str) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._finished(key)

    def _finished(self, key: str) -> None:
        self.tasks.pop(key, None)
        self._wake.set()

    async def _take(self, job: Job) -> None:
        vsid, file_id = db.split_key(job.response_id)
        store = self.rt.store
        try:
            if job.attempts > MAX_ATTEMPTS:
                await db.fail_file(
                    store,
                    vsid,
                    file_id,
                    "server_error",
                    f"The server stopped {MAX_ATTEMPTS} times while indexing this file; gave up.",
                )
                return
            if job.attempts > 1:
                log.warning("taking over the ingestion of %s into %s (attempt %d)", file_id, vsid, job.attempts)
            await self._ingest(job.tenant, vsid, file_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("ingesting %s into %s failed", file_id, vsid)
            await db.fail_file(store, vsid, file_id, "server_error", f"The file could not be indexed: {exc!r}")

    async def _ingest(self, tenant: str, vsid: str, file_id: str) -> None:
        store = self.rt.store
        row = await db.get_file(store, tenant, vsid, file_id)
        vs = await db.get_store(store, tenant, vsid)
        if row is None or vs is None or row["status"] != "in_progress":  # removed or cancelled meanwhile
            await db.drop_job(store, vsid, file_id)
            return
        embedder = self.rt.retrieval.embedder
        if vs.embedder != embedder.name:
            await db.fail_file(
                store,
                vsid,
                file_id,
                "server_error",
                f"The vector store embeds with '{vs.embedder}', but the server that took this file "
                f"embeds with '{embedder.name}': replicas must share their [embeddings] config.",
            )
            return
        record = await files.get(store, tenant, file_id)
        if record is None:
            await db.fail_file(
                store, vsid, file_id, "invalid_file", f"The file '{file_id}' was deleted before it could be indexed."
            )
            return
        try:
            text = await extract_text(record.filename, record.mime, files.read(store, record))
        except UnreadableFile as exc:
            await db.fail_file(store, vsid, file_id, "unsupported_file", exc.message)
            return
        except files.FileGone:
            await db.fail_file(
                store, vsid, file_id, "invalid_file", f"The file '{file_id}' was deleted while it was being indexed."
            )
            return
        strategy = orjson.loads(row["chunking_strategy"])["static"]
        size, overlap = strategy["max_chunk_size_tokens"], strategy["chunk_overlap_tokens"]
        chunks, starts = await asyncio.to_thread(chunk_text, text, size, overlap)
        if not chunks:
            await db.fail_file(
                store,
                vsid,
                file_id,
                "invalid_file",
                f"The file '{record.filename}' has no text to index (it is empty or only whitespace).",
            )
            return
        try:
            vectors = await self._embed(text, chunks, starts, size)
        except EmbeddingError as exc:
            await db.fail_file(store, vsid, file_id, "server_error", f"The file could not be embedded: {exc}")
            return
        lists = await self._lists(vs, vectors)
        rows: list[dict[str, Any]] = [
            {
                "vector_store_id": vsid,
                "file_id": file_id,
                "position": i,
                "list_no": int(lists[i]),
                "text": c.text,
                "embedding": ivf.to_blob(vectors[i]),
            }
            for i, c in enumerate(chunks)
        ]
        used = sum(len(r["text"].encode()) + len(r["embedding"]) for r in rows)

        def relist(centroids: list[bytes]) -> list[int]:
            matrix = np.frombuffer(b"".join(centroids), dtype=np.float32).reshape(len(centroids), -1)
            return [int(n) for n in ivf.assign(vectors, matrix)] if centroids else [0] * len(rows)

        if await db.finish_file(store, vsid, file_id, record.filename, rows, used, vs.index_version, relist):
            await self._maybe_train(tenant, vsid)

    async def _embed(self, text: str, chunks: list[Any], starts: list[int], size: int) -> Any:
        parts = []
        for i in range(0, len(chunks), SLICE):
            parts.append(
                await embed_chunks(self.rt.retrieval.embedder, text, chunks[i : i + SLICE], starts, size, bulk=True)
            )
        return np.concatenate(parts)

    async def _lists(self, vs: db.StoreRow, vectors: Any) -> Any:
        if vs.lists == 0:
            return np.zeros(len(vectors), dtype=np.int64)
        centroids = await self.rt.retrieval.centroids(vs)
        return ivf.assign(vectors, centroids)

    async def _maybe_train(self, tenant: str, vsid: str) -> None:
        """Retrain the store's lists once it has outgrown exact search, or doubled since its training."""
        store = self.rt.store
        vs = await db.get_store(store, tenant, vsid)
        n = await db.chunk_count(store, vsid)
        if vs is None or not ivf.needs_training(n, vs.lists, vs.trained_chunks):
            return
        await self.rt.retrieval.retrain(vs)
