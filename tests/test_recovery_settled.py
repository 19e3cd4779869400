"""Ending a dead replica's foreground response from its log (:func:`respd.engine.recovery.end_logged`), on a
real store: a log whose last step asked the client (an MCP approval request, nothing left open) ends
``completed``, as its run would have; one with a call cut off in flight still ends ``failed``.

The SIGKILL tests (tests/test_mcp_takeover.py) cannot land a kill between the approval request's commit and
the response's end (nothing waits there), so the log such a kill leaves is written here directly.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from respd.config import load_settings
from respd.engine.recovery import STOPPED, end_logged
from respd.engine.runtime import Runtime
from respd.ids import new_id
from respd.store.batch import Batch, ResponseHead
from respd.store.store import Store

TENANT = "tenant_recovery"


def logged(rid: str, items: list[tuple[dict[str, Any], bool]]) -> list[dict[str, Any]]:
    """The events a run logs: created, in_progress, then each item added (and done, if ``True``)."""
    snapshot = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "in_progress",
                "model": "test-model", "output": [], "error": None, "completed_at": None}  # fmt: skip
    events: list[dict[str, Any]] = [{"type": "response.created", "response": snapshot},
                                    {"type": "response.in_progress", "response": snapshot}]  # fmt: skip
    for index, (item, done) in enumerate(items):
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        if done:
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return [{**ev, "sequence_number": n} for n, ev in enumerate(events)]


async def end_after_crash(rt: Runtime, items: list[tuple[dict[str, Any], bool]]) -> tuple[dict[str, Any], str]:
    rid = new_id("resp")
    events = logged(rid, items)
    batch = Batch()
    head = ResponseHead(id=rid, tenant=TENANT, model="test-model", created_at=int(time.time()),
                        previous_response_id=None, background=False, owner="replica_dead")  # fmt: skip
    batch.new_response(head, "in_progress", orjson.dumps(events[1]["response"]), [])
    batch.log(rid, [(ev["sequence_number"], orjson.dumps(ev)) for ev in events])
    store = rt.store
    await store.writer.commit(batch)
    await end_logged(rt, TENANT, rid, "failed", STOPPED)
    row = await store.get_response(TENANT, rid)
    assert row is not None
    last = orjson.loads((await store.events_after(rid, -1))[-1][1])
    return row, last["type"]


LISTING = {"id": "mcpl_1", "type": "mcp_list_tools", "server_label": "srv", "tools": []}
ASKED = {"id": "mcpr_1", "type": "mcp_approval_request", "server_label": "srv", "name": "delete_file",
         "arguments": '{"path": "a.txt"}'}  # fmt: skip
CALL = {"id": "mcp_1", "type": "mcp_call", "status": "in_progress", "server_label": "srv", "name": "slow",
        "arguments": "", "approval_request_id": None}  # fmt: skip


def test_a_log_that_ends_with_an_approval_request_ends_completed(own_database: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = load_settings(database_url=own_database, env={"RESPD_DATA_DIR": str(tmp_path)})
        store = Store(own_database)
        rt = Runtime(settings, store)
        await store.open()
        try:
            row, last = await end_after_crash(rt, [(LISTING, True), (ASKED, True)])
            assert (row["status"], last) == ("completed", "response.completed")
            assert row["body"]["error"] is None and row["body"]["completed_at"] is not None
            assert [i["type"] for i in row["body"]["output"]] == ["mcp_list_tools", "mcp_approval_request"]
            # a call of the same step cut off in flight: the response did not end as its run would have
            row, last = await end_after_crash(rt, [(LISTING, True), (ASKED, True), (CALL, False)])
            assert (row["status"], last) == ("failed", "response.failed")
            assert row["body"]["output"][2]["status"] == "incomplete"
            # nothing that asked the client: failed, as before
            row, _ = await end_after_crash(rt, [(LISTING, True)])
            assert row["status"] == "failed" and row["body"]["error"]["message"] == STOPPED
        finally:
            await store.close()

    asyncio.run(scenario())
