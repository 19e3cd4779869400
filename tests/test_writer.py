"""The SQLite writer on a real database file: group commit, and a write-ahead log that starts over."""

from __future__ import annotations

import asyncio
from pathlib import Path

from respd.ids import new_id
from respd.store.batch import Batch, ResponseHead
from respd.store.store import Store

BODY = "x" * 6000  # about what one non-streamed response's event log takes


def _response_batch() -> Batch:
    rid = new_id("resp")
    batch = Batch()
    batch.new_response(ResponseHead(rid, "t", "m", 1, None, False, None), "completed", b"{}", [])
    batch.log(rid, [(0, BODY.encode())])
    return batch


def test_the_wal_starts_over_under_steady_writes(tmp_path: Path) -> None:
    """Once the log is long, a write waits for a checkpoint that nothing writes beside, which copies the whole
    log, and the log starts over. (A checkpoint beside a steady writer never catches up: without the restart,
    the log file ends 3.2 to 3.4 times the size of the bodies written, every page a write touches included; with
    it, 0.25 to 0.55 times here: the longest stretch between two restarts, which depends on thread timing.)"""
    db = tmp_path / "respd.db"
    wal = tmp_path / "respd.db-wal"
    writes = 2000

    async def main() -> int:
        store = Store(f"sqlite+aiosqlite:///{db}")
        await store.open()
        sink = store.writer._sink
        sink.CHECKPOINT_S = 0.0  # type: ignore[attr-defined]  # a checkpoint after every write,
        sink.WAL_RESTART_FRAMES = 1  # type: ignore[attr-defined]  # and every log is long enough to restart

        async def producer() -> None:
            for _ in range(writes // 4):
                await store.writer.commit(_response_batch())

        await asyncio.gather(*(producer() for _ in range(4)))  # the writer is never idle for long
        async with store.engine.connect() as conn:
            count = (await conn.exec_driver_sql("SELECT count(*) FROM response_events")).scalar_one()
        largest = wal.stat().st_size  # the log file's high-water mark
        await store.close()
        assert count == writes
        return largest

    written = writes * len(BODY)
    largest = asyncio.run(main())
    assert largest < written, (largest, written)
