"""Background responses on one server (SQLite and PostgreSQL): create, poll, stream, resume, cancel, restart."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.checks import check_error, check_event, check_response
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer, write_config

TERMINAL = {"completed", "failed", "incomplete", "cancelled"}


def wait_status(client: openai.OpenAI, rid: str, statuses: set[str], timeout: float = 15.0) -> Any:
    """Poll ``retrieve`` like a client of background mode does, until the status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        resp = client.responses.retrieve(rid)
        if resp.status in statuses or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def sse(url: str, timeout: float = 20.0, stop_after: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """The events of one SSE request (all of them, or the first ``stop_after``, then hang up)."""
    events: list[dict[str, Any]] = []
    method = "POST" if "json" in kwargs else "GET"
    with httpx.stream(method, url, timeout=timeout, **kwargs) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events


def stored_json(client: openai.OpenAI, rid: str) -> dict[str, Any]:
    """The stored response as the server sent it (SDK models would add the fields they know as null)."""
    body: dict[str, Any] = client.responses.with_raw_response.retrieve(rid).http_response.json()
    return body


def assert_continuous(events: list[dict[str, Any]], start: int = 0) -> None:
    assert [e["sequence_number"] for e in events] == list(range(start, start + len(events)))


def test_background_create_then_poll(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Otters float in space.", delay_s=0.05))
    raw = any_client.responses.with_raw_response.create(model="test-model", input="write", background=True)
    body = check_response(raw.http_response.json())
    created = raw.parse()
    # started on accept: in_progress at once (queued only while a job really waits), so the common loop
    # `while status == "in_progress": poll` waits for the result
    assert body["status"] == "in_progress" and body["background"] is True and body["output"] == []
    polled = created
    while polled.status == "in_progress":
        time.sleep(0.05)
        polled = any_client.responses.retrieve(created.id)
    done = wait_status(any_client, created.id, TERMINAL)
    assert polled.status == done.status == "completed", done
    assert done.output_text == "Otters float in space."
    check_response(stored_json(any_client, created.id))
    assert [i.model_dump()["content"][0]["text"] for i in any_client.responses.input_items.list(created.id).data] == [
        "write"
    ]
    # the whole stored log replays, ending in the completed response
    events = [e.model_dump(mode="json") for e in any_client.responses.retrieve(created.id, stream=True)]
    assert [e["type"] for e in events[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert events[0]["response"]["status"] == "queued" and events[-1]["type"] == "response.completed"
    assert_continuous(events)
    # and it chains like any stored response
    fake.script(Reply(text="Second."))
    nxt = any_client.responses.create(model="test-model", input="more", previous_response_id=created.id)
    assert nxt.output_text == "Second."
    sent = fake.requests[-1]["body"]["messages"]
    assert [m["content"] for m in sent] == ["write", "Otters float in space.", "more"]


def test_background_stream_drop_and_resume(any_server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(chunks=[f"w{i} " for i in range(12)], delay_s=0.05))
    body = {"model": "test-model", "input": "count", "background": True, "stream": True}
    first = sse(any_server.url + "/v1/responses", json=body, stop_after=6)
    for ev in first:
        check_event(ev)
    assert [e["type"] for e in first[:3]] == ["response.created", "response.queued", "response.in_progress"]
    rid = first[0]["response"]["id"]
    # the client left; the response goes on without it, and the client comes back where it left off
    with openai.OpenAI(base_url=any_server.url + "/v1", api_key="k", max_retries=0) as client:
        via_sdk = [e.sequence_number for e in client.responses.retrieve(rid, stream=True, starting_after=5)]
        rest = sse(f"{any_server.url}/v1/responses/{rid}?stream=true&starting_after=5")
        assert via_sdk == [e["sequence_number"] for e in rest]
        assert_continuous(first + rest)
        assert rest[-1]["type"] == "response.completed"
        final = stored_json(client, rid)
    assert "".join(p["text"] for p in final["output"][0]["content"]) == "".join(f"w{i} " for i in range(12))
    assert rest[-1]["response"] == final


def test_cancel_running_background(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(chunks=[f"t{i} " for i in range(200)], delay_s=0.05))
    created = any_client.responses.create(model="test-model", input="long", background=True)
    running = wait_status(any_client, created.id, {"in_progress"} | TERMINAL)
    assert running.status == "in_progress"
    assert fake.wait_for_requests(1)
    time.sleep(0.3)  # some output first
    raw = any_client.responses.with_raw_response.cancel(created.id)
    check_response(raw.http_response.json())
    cancelled = raw.parse()
    assert cancelled.status == "cancelled"
    assert fake.wait_for_disconnect(timeout=2.0)  # generation stopped
    text = cancelled.output_text
    assert text.startswith("t0 ") and len(text) < len("".join(f"t{i} " for i in range(200)))
    # cancelling again answers with the same final response; the stored one agrees
    again = any_client.responses.cancel(created.id)
    assert again.status == "cancelled" and again.output_text == text
    assert any_client.responses.retrieve(created.id).status == "cancelled"
    events = [e.model_dump(mode="json") for e in any_client.responses.retrieve(created.id, stream=True)]
    assert_continuous(events)
    assert events[-1]["type"] == "response.cancelled"


def test_cancel_errors(any_server: RespdServer, any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="done"))
    fg = any_client.responses.create(model="test-model", input="hi")
    r = httpx.post(f"{any_server.url}/v1/responses/{fg.id}/cancel")
    check_error(r, 400, "response_id")
    assert any_client.responses.retrieve(fg.id).status == "completed"  # changed nothing
    r = httpx.post(f"{any_server.url}/v1/responses/resp_nope/cancel")
    check_error(r, 404, "response_id")
    # a finished background response: cancel answers with it as it is
    fake.script(Reply(text="quick"))
    bg = any_client.responses.create(model="test-model", input="hi", background=True)
    assert wait_status(any_client, bg.id, TERMINAL).status == "completed"
    assert any_client.responses.cancel(bg.id).status == "completed"


def test_queue_full_is_429(tmp_path: Path, fake: FakeUpstream) -> None:
    config = write_config(tmp_path / "respd.toml", fake.base_url, extra="max_background = 1\nmax_queued = 1\n")
    server = start_server(tmp_path, config, f"sqlite:///{tmp_path / 'q.db'}")
    try:
        fake.script(*[Reply(fault="hang")] * 3)
        with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as client:
            a = client.responses.create(model="test-model", input="a", background=True)  # runs
            b = client.responses.create(model="test-model", input="b", background=True)  # waits
            assert b.status == "queued"
            r = httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "c", "background": True})
            check_error(r, 429)
            assert r.headers["retry-after"] == "5"
            # cancelling the queued one ends it without ever running it; the running one too
            assert client.responses.cancel(b.id).status == "cancelled"
            assert client.responses.cancel(a.id).status == "cancelled"
    finally:
        server.stop()


def test_restart_sqlite_resumes_background_job(tmp_path: Path, fake: FakeUpstream) -> None:
    """Single process on SQLite: a job running when the process was killed runs again on restart."""
    config = write_config(tmp_path / "respd.toml", fake.base_url)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    server = start_server(tmp_path, config, url)
    fake.script(Reply(fault="hang"), Reply(text="after restart"))
    with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as client:
        created = client.responses.create(model="test-model", input="go", background=True)
        assert fake.wait_for_requests(1)
        time.sleep(0.2)  # its in_progress event is committed within milliseconds
    server.kill()
    again = start_server(tmp_path, config, url)
    try:
        with openai.OpenAI(base_url=again.url + "/v1", api_key="k", max_retries=0) as client:
            done = wait_status(client, created.id, TERMINAL)
            assert done.status == "completed" and done.output_text == "after restart"
            events = [e.model_dump(mode="json") for e in client.responses.retrieve(created.id, stream=True)]
            assert_continuous(events)
            kinds = [e["type"] for e in events]
            assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"]
            assert kinds.count("response.in_progress") == 2  # started, then started over
    finally:
        again.stop()


def test_restart_sqlite_fails_foreground_orphan(tmp_path: Path, fake: FakeUpstream) -> None:
    """A foreground stream cut by a crash ends as failed when the server comes back."""
    config = write_config(tmp_path / "respd.toml", fake.base_url)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    server = start_server(tmp_path, config, url)
    fake.script(Reply(chunks=["a ", "b ", "c "], delay_s=5))
    body = {"model": "test-model", "input": "go", "stream": True}
    with httpx.stream("POST", server.url + "/v1/responses", json=body, timeout=20) as r:
        lines = r.iter_lines()  # kept referenced: a dropped iterator would close the stream
        first = next(line for line in lines if line.startswith("data: "))
        rid = json.loads(first[6:])["response"]["id"]
        time.sleep(0.2)  # the first events are committed within milliseconds
        server.kill()  # while the client is still connected
    again = start_server(tmp_path, config, url)
    try:
        with openai.OpenAI(base_url=again.url + "/v1", api_key="k", max_retries=0) as client:
            ended = wait_status(client, rid, TERMINAL)
            assert ended.status == "failed" and ended.error is not None
            assert "stopped" in ended.error.message
    finally:
        again.stop()


@pytest.mark.parametrize("body", [{"stream": True}, {}])
def test_background_on_dead_upstream_fails(any_client: openai.OpenAI, body: dict[str, Any]) -> None:
    created = any_client.responses.create(model="dead-model", input="x", background=True, **body)
    rid = created.id if hasattr(created, "id") else next(iter(created)).response.id  # type: ignore[attr-defined]
    done = wait_status(any_client, rid, TERMINAL)
    assert done.status == "failed" and done.error is not None


def test_delete_running_background_stops_it(any_server: RespdServer, any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(chunks=[f"d{i} " for i in range(200)], delay_s=0.05))
    created = any_client.responses.create(model="test-model", input="long", background=True)
    assert wait_status(any_client, created.id, {"in_progress"} | TERMINAL).status == "in_progress"
    deleted = any_client.responses.delete(created.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    assert fake.wait_for_disconnect(timeout=2.0)
    check_error(httpx.get(f"{any_server.url}/v1/responses/{created.id}"), 404, "response_id")
    time.sleep(0.3)  # nothing of it is written after the delete
    check_error(httpx.get(f"{any_server.url}/v1/responses/{created.id}?stream=true"), 404, "response_id")
