"""After a crash: responses a dead process left running end as ``failed``, with the terminal events logged."""

from __future__ import annotations

import time
from typing import Any

import orjson

from respd.engine.fold import fold
from respd.store.store import Store
from respd.store.writer import Batch

_MESSAGE = "The server stopped while this response was being generated."


def _close_items(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "status": "incomplete"} if item.get("status") == "in_progress" else item for item in output]


async def end_orphans(store: Store) -> int:
    """End every foreground response still marked running; returns how many there were.

    Single-process semantics: at startup, no foreground run of this database can still be alive.
    """
    batch = Batch()
    for rid, body, last in await store.unfinished():
        logged = [orjson.loads(data) for _, data in await store.events_after(rid, -1)]
        current = fold(logged) if logged else body
        final = {**current, "status": "failed", "output": _close_items(current["output"]),
                 "error": {"code": "server_error", "message": _MESSAGE}}  # fmt: skip
        error = {"type": "error", "sequence_number": last + 1, "code": "server_error", "message": _MESSAGE,
                 "param": None}  # fmt: skip
        failed = {"type": "response.failed", "sequence_number": last + 2, "response": final}
        for ev in (error, failed):
            batch.events.append({"response_id": rid, "seq": ev["sequence_number"], "body": orjson.dumps(ev)})
        batch.updates.append({"id": rid, "status": "failed", "updated_at": int(time.time()),
                              "body": orjson.dumps(final).decode()})  # fmt: skip
    if batch.updates:
        await store.writer.commit(batch)
    return len(batch.updates)
