"""Upstream faults and vanished clients end every response in a true, final, stored state."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.checks import check_event, check_response, sse_events
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer

FAULTS = {
    "http 500": Reply(status=500, error_body={"error": {"message": "boom", "type": "server_error"}}),
    "dropped stream": Reply(text="one two three four", fault="drop"),
    "malformed stream": Reply(text="one two", fault="malformed"),
    "hang (timeout)": Reply(fault="hang"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_upstream_fault_streams_error_then_failed(server: RespdServer, fake: FakeUpstream, fault: str) -> None:
    fake.script(FAULTS[fault])
    r = httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "x", "stream": True}, timeout=30)
    events = [check_event(e) for e in sse_events(r.text)]
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    error = events[-2]
    assert error["message"] and "error" not in error  # flat, so the SDK yields it instead of raising
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    stored = httpx.get(server.url + f"/v1/responses/{failed['id']}").json()
    assert stored == failed


@pytest.mark.parametrize("fault", ["http 500", "hang (timeout)"])
def test_upstream_fault_non_stream_is_a_stored_failed_response(
    client: openai.OpenAI, fake: FakeUpstream, fault: str
) -> None:
    fake.script(FAULTS[fault])
    resp = client.responses.create(model="test-model", input="x")
    assert resp.status == "failed" and resp.error is not None
    assert "500" in resp.error.message or "timed out" in resp.error.message
    assert client.responses.retrieve(resp.id).status == "failed"


def test_upstream_refused(client: openai.OpenAI, server: RespdServer) -> None:
    resp = client.responses.create(model="dead-model", input="x")
    assert resp.status == "failed"
    assert resp.error is not None and "unreachable" in resp.error.message
    check_response(httpx.get(server.url + f"/v1/responses/{resp.id}").json())


def test_sdk_yields_the_error_event(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(FAULTS["http 500"])
    types = [ev.type for ev in client.responses.create(model="test-model", input="x", stream=True)]
    assert types[-2:] == ["error", "response.failed"]


def test_client_disconnect_stops_the_upstream_and_is_recorded(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text=" ".join(["word"] * 200), delay_s=0.05))
    rid = None
    with httpx.stream(
        "POST", server.url + "/v1/responses", json={"model": "test-model", "input": "x", "stream": True}
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"response.created"' in line:
                rid = line.split('"id":"')[1].split('"')[0]
            if "output_text.delta" in line:
                break
    assert rid is not None
    assert fake.wait_for_disconnect(5), "respd kept reading from the upstream after its client left"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body = httpx.get(server.url + f"/v1/responses/{rid}").json()
        if body["status"] != "in_progress":
            break
        time.sleep(0.05)
    assert body["status"] == "cancelled"
    assert body["output"][0]["content"][0]["text"].startswith("word")
    replay = sse_events(httpx.get(server.url + f"/v1/responses/{rid}", params={"stream": "true"}).text)
    assert replay[-1]["type"] == "response.cancelled" and replay[-1]["response"] == body


def test_client_leaving_a_non_streamed_request_stops_the_upstream(server: RespdServer, fake: FakeUpstream) -> None:
    """The JSON answer is made while respd watches the connection: a client that gives up (here, a read
    timeout) cancels the run, the upstream call is dropped and the stored response says so."""
    db = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT coalesce(max(rowid), 0) FROM responses").fetchone()[0]
    fake.script(Reply(text=" ".join(["word"] * 200), delay_s=0.05))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "x"}, timeout=0.5)
    assert fake.wait_for_disconnect(5), "respd kept reading from the upstream after its client left"
    rows: list[tuple[str, str]] = []
    deadline = time.monotonic() + 5
    while not rows and time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT id, status FROM responses WHERE rowid > ?", (before,)).fetchall()
        time.sleep(0.05)
    assert [status for _, status in rows] == ["cancelled"]
    assert httpx.get(f"{server.url}/v1/responses/{rows[0][0]}").json()["status"] == "cancelled"
    fake.script(Reply(text="still here"))  # the connection's task is none the worse for the cancellation
    answer = httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "y"}).json()
    assert answer["output"][0]["content"][0]["text"] == "still here"


def test_a_killed_server_leaves_no_response_running(tmp_path: Path, config_path: str, fake: FakeUpstream) -> None:
    """SIGKILL mid-stream; on restart the response is failed, with its partial output and a terminal event."""
    srv = RespdServer(config=config_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", data_dir=tmp_path)
    srv.start()
    try:
        fake.script(Reply(text=" ".join(["tok"] * 100), delay_s=0.05))
        rid = None
        with httpx.stream("POST", srv.url + "/v1/responses", json={"model": "test-model", "input": "x", "stream": True}) as r:
            for line in r.iter_lines():
                if '"response.created"' in line:
                    rid = line.split('"id":"')[1].split('"')[0]
                if line.count("output_text.delta") and rid:
                    time.sleep(0.1)  # let the writer log a few deltas
                    srv.kill()
                    break
        srv.proc = None
        srv.start()
        body = check_response(httpx.get(srv.url + f"/v1/responses/{rid}").json())
        assert body["status"] == "failed" and "stopped" in body["error"]["message"]
        assert body["output"][0]["status"] == "incomplete" and body["output"][0]["content"][0]["text"].startswith("tok")
        replay = sse_events(httpx.get(srv.url + f"/v1/responses/{rid}", params={"stream": "true"}).text)
        assert [e["type"] for e in replay[-2:]] == ["error", "response.failed"]
        assert [e["sequence_number"] for e in replay] == list(range(len(replay)))
    finally:
        srv.stop()


def test_non_stream_client_that_gives_up_stops_the_upstream(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text=" ".join(["slow"] * 100), delay_s=0.05))
    with httpx.Client(timeout=0.5) as c, pytest.raises(httpx.ReadTimeout):
        c.post(server.url + "/v1/responses", json={"model": "test-model", "input": "x"})
    assert fake.wait_for_disconnect(5), "respd kept waiting on the upstream after its client left"
