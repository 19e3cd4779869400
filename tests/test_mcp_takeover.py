"""A replica killed (SIGKILL) right after a response asked for an MCP approval: the ``mcp_approval_request``
is durable, the response ends as it would have (no model turn past the step that asked), and the approval
sent on the next request is honoured by whichever replica serves it.

The step that asks may also run calls that need no approval: the test kills the replica while such a call
(the test server's ``slow``) is in flight, so the log ends with the approval request done and a call open.
Background mode on PostgreSQL (another replica takes the job over), and a streamed foreground response on
SQLite (respd restarted on the same database ends it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.mcp_server import TestMcpServer
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config
from tests.test_replicas import LEASE_S

TERMINAL = {"completed", "failed", "incomplete", "cancelled"}


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[TestMcpServer]:
    with TestMcpServer() as srv:
        yield srv


def config(tmp: Path, fake: FakeUpstream) -> str:
    return write_config(tmp / "respd.toml", fake.base_url, f'outbound_allow = ["127.0.0.1:*"]\nlease_s = {LEASE_S}\n')


def guarded(mcp_server: TestMcpServer) -> dict[str, Any]:
    """Only ``delete_file`` asks (only ``always`` is given: the tools it does not name run unasked)."""
    return {"type": "mcp", "server_label": "srv", "server_url": mcp_server.url,
            "require_approval": {"always": {"tool_names": ["delete_file"]}}}  # fmt: skip


def ask_and_slow() -> Reply:
    """One model turn: a call that asks, and a call that runs (for a while) in the same step."""
    return Reply(tool_calls=[{"id": "c1", "name": "srv__delete_file", "arguments": '{"path": "a.txt"}'},
                             {"id": "c2", "name": "srv__slow", "arguments": '{"seconds": 3}'}])  # fmt: skip


def wait_for(check: Any, timeout: float = 60.0, *servers: RespdServer) -> None:
    """Until ``check()``; on a timeout the servers' logs say where the response stood (a loaded CI host once
    took longer than 20 s here)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out:\n" + "\n".join(s.log()[-4000:] for s in servers)
        time.sleep(0.05)


def wait_terminal(server: RespdServer, rid: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = httpx.get(f"{server.url}/v1/responses/{rid}", timeout=10).json()
        if body.get("status") in TERMINAL:
            return body
        assert time.monotonic() < deadline, (body, server.log()[-5000:])
        time.sleep(0.1)


def approve_and_check(server: RespdServer, first: dict[str, Any], mcp_server: TestMcpServer,
                      fake: FakeUpstream) -> None:  # fmt: skip
    """The approval, on the next request through ``previous_response_id``, runs the call and the model answers."""
    request = next(i for i in first["output"] if i["type"] == "mcp_approval_request")
    before = mcp_server.calls["delete_file"]
    fake.script(Reply(text="Deleted a.txt."))
    answer = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    r = httpx.post(
        f"{server.url}/v1/responses",
        timeout=30,
        json={
            "model": "test-model",
            "previous_response_id": first["id"],
            "input": [answer],
            "tools": [guarded(mcp_server)],
        },
    )
    assert r.status_code == 200, r.text
    second = r.json()
    assert [i["type"] for i in second["output"]] == ["mcp_call", "message"] and second["status"] == "completed"
    assert second["output"][0]["approval_request_id"] == request["id"]
    assert second["output"][0]["output"] == "deleted a.txt" and mcp_server.calls["delete_file"] == before + 1


def test_background_taken_over_after_an_approval_request(tmp_path: Path, fake: FakeUpstream,
                                                         mcp_server: TestMcpServer) -> None:  # fmt: skip
    url = create_pg_database()
    cfg = config(tmp_path, fake)
    a = start_server(tmp_path / "a", cfg, url)
    b = start_server(tmp_path / "b", cfg, url)
    try:
        fake.script(ask_and_slow(), Reply(text="a second turn that must not run"))
        slow, deleted = mcp_server.calls["slow"], mcp_server.calls["delete_file"]
        r = httpx.post(
            f"{a.url}/v1/responses",
            timeout=30,
            json={"model": "test-model", "input": "delete a.txt", "tools": [guarded(mcp_server)], "background": True},
        )
        rid = r.json()["id"]
        wait_for(lambda: mcp_server.calls["slow"] == slow + 1, 60.0, a, b)  # the request is logged; the call runs
        a.kill()
        done = wait_terminal(b, rid, timeout=LEASE_S * 15)
        assert done["status"] == "completed", done.get("error")
        assert [i["type"] for i in done["output"]] == ["mcp_list_tools", "mcp_approval_request", "mcp_call"]
        assert done["output"][2]["name"] == "slow" and done["output"][2]["status"] == "failed"  # not run again
        assert len(fake.requests) == 1  # the loop ended with the step that asked: no second model turn
        assert mcp_server.calls["slow"] == slow + 1 and mcp_server.calls["delete_file"] == deleted
        approve_and_check(b, done, mcp_server, fake)
    finally:
        a.stop()
        b.stop()
        drop_pg_database(url)


def test_streamed_response_ended_after_restart_keeps_its_approval_request(tmp_path: Path, fake: FakeUpstream,
                                                                          mcp_server: TestMcpServer) -> None:  # fmt: skip
    cfg = config(tmp_path, fake)
    db = f"sqlite:///{tmp_path / 'respd.db'}"
    a = start_server(tmp_path / "a", cfg, db)
    try:
        fake.script(ask_and_slow())
        slow = mcp_server.calls["slow"]
        seen: list[dict[str, Any]] = []
        body = {"model": "test-model", "input": "delete a.txt", "tools": [guarded(mcp_server)], "stream": True}
        with httpx.stream("POST", f"{a.url}/v1/responses", json=body, timeout=30) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["type"] == "response.mcp_call.in_progress":
                        wait_for(lambda: mcp_server.calls["slow"] == slow + 1, 60.0, a)
                        a.kill()  # the client saw the approval request; its replica dies mid-step
                        break
    finally:
        a.stop()
    asked = [e["item"] for e in seen if e["type"] == "response.output_item.done"
             and e["item"]["type"] == "mcp_approval_request"]  # fmt: skip
    assert len(asked) == 1
    rid = seen[0]["response"]["id"]
    b = start_server(tmp_path / "b", cfg, db)  # the same database: it ends the dead replica's response
    try:
        ended = wait_terminal(b, rid)
        assert ended["status"] == "failed"  # a call was cut off in flight
        assert ended["output"][1] == asked[0]  # what the client saw was durable, as it saw it
        approve_and_check(b, ended, mcp_server, fake)
    finally:
        b.stop()
