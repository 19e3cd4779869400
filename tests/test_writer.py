"""The SQLite writer on a real database file: group commit, and a write-ahead log that starts over."""

from __future__ import annotations

import asyncio
from pathlib import Path

from respd.ids import new_id
from respd.store.store import Store
from respd.store.writer import Batch, log_row

BODY = "x" * 6000  # about what one non-streamed response's event log takes


def _response_batch() -> Batch:
    rid = new_id("resp")
    row = {"id": rid, "tenant": "t", "status": "completed", "model": "m", "created_at": 1, "updated_at": 1,
           "previous_response_id": None, "background": False, "owner": None, "body": "{}"}  # fmt: skip
    return Batch(responses=[row], events=[log_row(rid, [(0, BODY.encode())])])


def test_the_wal_starts_over_under_steady_writes(tmp_path: Path) -> None:
    """Once the log is long, a write waits for a checkpoint that nothing writes beside, which copies the whole
    log, and the log starts over: the file stays the size of a few writes however many are made. (A
    checkpoint beside a steady writer never catches up; the log then grows with every write.)"""
    db = tmp_path / "respd.db"
    wal = tmp_path / "respd.db-wal"

    async def main() -> tuple[int, int]:
        store = Store(f"sqlite+aiosqlite:///{db}")
        await store.open()
        sink = store.writer._sink
        sink.CHECKPOINT_S = 0.0  # type: ignore[attr-defined]  # a checkpoint after every write,
        sink.WAL_RESTART_FRAMES = 1  # type: ignore[attr-defined]  # and every log is long enough to restart
        await store.writer.commit(_response_batch())
        one_write = wal.stat().st_size

        async def producer() -> None:
            for _ in range(100):
                await store.writer.commit(_response_batch())

        await asyncio.gather(*(producer() for _ in range(4)))  # the writer is never idle for long
        largest = wal.stat().st_size
        async with store.engine.connect() as conn:
            count = (await conn.exec_driver_sql("SELECT count(*) FROM response_events")).scalar_one()
        await store.close()
        assert count == 401
        return one_write, largest

    one_write, largest = asyncio.run(main())
    assert one_write > len(BODY)
    assert largest < 20 * one_write, (one_write, largest)  # without restarts: ~100 times
