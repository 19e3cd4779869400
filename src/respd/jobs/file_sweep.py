"""The file sweep: a task per replica that removes the bytes of deleted and expired files and of uploads
whose replica died (:func:`respd.store.files.sweep`). A file is gone for the API the moment it is deleted or
expires; this is what frees its space."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from respd.store import files
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
            removed = 0
            try:
                removed = await files.sweep(self.store)
                if removed:
                    log.info("removed %d deleted, expired or abandoned files", removed)
            except Exception:
                log.exception("file sweep failed")
            await asyncio.sleep(0 if removed >= files.SWEEP_FILES else self.interval_s)
