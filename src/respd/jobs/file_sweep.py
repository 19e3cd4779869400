"""The sweep: a task per replica that removes the bytes of deleted and expired files and of uploads whose
replica died (:func:`respd.store.files.sweep`), and empties expired vector stores of their chunks and index
(:func:`respd.store.vectors.sweep_expired`). A file or store is gone (expired) for the API the moment it is
deleted or expires; this is what frees its space."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from respd.store import files, vectors
from respd.store.store import Store

log = logging.getLogger("respd.files")


class FileSweep:
    """Sweeps every ``interval_s`` seconds, and again at once while a sweep finds a full batch."""

    def __init__(self, store: Store, interval_s: float = 60.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="respd-file-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            removed = emptied = 0
            try:
                removed = await files.sweep(self.store)
                if removed:
                    log.info("removed %d deleted, expired or abandoned files", removed)
            except Exception:
                log.exception("file sweep failed")
            try:
                emptied = await vectors.sweep_expired(self.store)
                if emptied:
                    log.info("emptied %d expired vector stores", emptied)
            except Exception:
                log.exception("vector store sweep failed")
            more = removed >= files.SWEEP_FILES or emptied >= vectors.SWEEP_STORES
            await asyncio.sleep(0 if more else self.interval_s)
