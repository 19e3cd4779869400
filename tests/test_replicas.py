"""Two real respd processes on one PostgreSQL database acting as one service.

Resume on B a stream that A runs; cancel on B what A runs; kill A mid-run and see B finish its work once
A's lease runs out (starting over, or continuing its partial output); SIGTERM A and see it drain.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from respd.engine.fold import fold
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config
from tests.test_background import TERMINAL, assert_continuous, sse, stored_json, wait_status

LEASE_S = 2.0


@contextlib.contextmanager
def replicas(tmp_path: Path, fake: FakeUpstream, timeout_s: float = 5) -> Iterator[tuple[RespdServer, RespdServer]]:
    """Replicas A and B on a fresh database, with a short lease and a prefill-capable model (its upstream
    timeout ``timeout_s``); a replica left stopped (SIGSTOP) is resumed first, or it could not be ended."""
    config = write_config(tmp_path / "respd.toml", fake.base_url, extra=f"lease_s = {LEASE_S}\ndrain_s = 1\n")
    with open(config, "a") as f:
        f.write(
            f'\n[[models]]\nname = "prefill-model"\nbackend = "openai"\nbase_url = "{fake.base_url}"\n'
            f'upstream_model = "fake-upstream-model"\nprefill = true\ntimeout_s = {timeout_s:g}\n'
        )
    url = create_pg_database()
    a = start_server(tmp_path / "a", config, url)
    b = start_server(tmp_path / "b", config, url)
    try:
        yield a, b
    finally:
        for server in (a, b):
            if server.proc is not None and server.proc.poll() is None:
                server.proc.send_signal(signal.SIGCONT)
        a.stop()
        b.stop()
        drop_pg_database(url)


@pytest.fixture
def pair(tmp_path: Path, fake: FakeUpstream) -> Iterator[tuple[RespdServer, RespdServer]]:
    with replicas(tmp_path, fake) as servers:
        yield servers


def client_of(server: RespdServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, timeout=20)


def test_resume_on_other_replica(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    a, b = pair
    fake.script(Reply(chunks=[f"p{i} " for i in range(20)], delay_s=0.05))
    body = {"model": "test-model", "input": "go", "background": True, "stream": True}
    first = sse(a.url + "/v1/responses", json=body, stop_after=7)
    rid = first[0]["response"]["id"]
    # B follows A's run live: what is logged, then each event as A commits it
    with client_of(b) as cb:
        via_sdk = [e.sequence_number for e in cb.responses.retrieve(rid, stream=True, starting_after=6)]
        rest = sse(f"{b.url}/v1/responses/{rid}?stream=true&starting_after=6")
        final = stored_json(cb, rid)
    assert via_sdk == [e["sequence_number"] for e in rest]
    assert_continuous(first + rest)
    assert rest[-1]["type"] == "response.completed" and rest[-1]["response"] == final
    assert final["output"][0]["content"][0]["text"] == "".join(f"p{i} " for i in range(20))
    # and a chain through B on a response made on A
    fake.script(Reply(text="next"))
    with client_of(b) as cb:
        nxt = cb.responses.create(model="test-model", input="again", previous_response_id=rid)
    assert nxt.output_text == "next"
    assert len(fake.requests[-1]["body"]["messages"]) == 3


def test_cancel_on_other_replica(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    a, b = pair
    fake.script(Reply(chunks=[f"c{i} " for i in range(400)], delay_s=0.05))
    with client_of(a) as ca, client_of(b) as cb:
        created = ca.responses.create(model="test-model", input="long", background=True)
        assert wait_status(ca, created.id, {"in_progress"} | TERMINAL).status == "in_progress"
        time.sleep(0.3)
        cancelled = cb.responses.cancel(created.id)
        assert cancelled.status == "cancelled"
        assert fake.wait_for_disconnect(timeout=10.0)  # A stopped generating (how fast: bench/)
        assert ca.responses.retrieve(created.id).status == "cancelled"
        events = sse(f"{a.url}/v1/responses/{created.id}?stream=true")
        assert_continuous(events)
        assert events[-1]["type"] == "response.cancelled"


def _kill_mid_run(a: RespdServer, model: str) -> str:
    """Start a background response on A, wait until some text is logged, SIGKILL A; the response id."""
    body = {"model": model, "input": "story", "background": True, "stream": True}
    with httpx.stream("POST", a.url + "/v1/responses", json=body, timeout=20) as r:
        lines = r.iter_lines()
        rid = ""
        for line in lines:
            if not line.startswith("data: "):
                continue
            ev = json.loads(line[6:])
            rid = rid or ev["response"]["id"]
            if ev["type"] == "response.output_text.delta" and ev["delta"] == "two ":
                break
        time.sleep(0.3)  # the deltas so far are committed within milliseconds
        a.kill()
    return rid


def test_sigkill_continues_on_other_replica(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    a, b = pair
    fake.script(Reply(chunks=["one ", "two ", "three ", "four ", "five "], delay_s=0.3), Reply(text="3 4 5"))
    rid = _kill_mid_run(a, "prefill-model")
    with client_of(b) as cb:
        done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 15)
        assert done.status == "completed", done
        assert done.output_text == "one two 3 4 5"
        events = sse(f"{b.url}/v1/responses/{rid}?stream=true")
    assert_continuous(events)
    # the continuation asked the upstream to go on from the partial message
    cont = next(r["body"] for r in fake.requests if r["body"].get("continue_final_message"))
    assert cont["messages"][-1] == {"role": "assistant", "content": "one two "}
    assert cont["continue_final_message"] is True and cont["add_generation_prompt"] is False
    # usage counts the whole answer: the fake upstream counts words, so "story" is 1 input token, and the 2
    # words carried over are output (the upstream counted them as prompt), with the 3 new ones
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (1, 5), done.usage
    # one message item, its deltas numbered on from where A stopped
    assert [e["type"] for e in events].count("response.output_item.added") == 1
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "one two 3 4 5"


def test_sigkill_without_prefill_fails_clearly(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    a, b = pair
    fake.script(Reply(chunks=["one ", "two ", "three ", "four "], delay_s=0.3))
    rid = _kill_mid_run(a, "test-model")
    with client_of(b) as cb:
        done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 15)
    assert done.status == "failed" and done.error is not None
    assert "cannot continue" in done.error.message
    assert done.output_text == "one two "  # what was made is kept


def test_sigkill_before_output_starts_over(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    a, b = pair
    fake.script(Reply(fault="hang"), Reply(text="fresh start"))
    with client_of(a) as ca:
        created = ca.responses.create(model="test-model", input="go", background=True)
        assert fake.wait_for_requests(1)
        time.sleep(0.2)
    a.kill()
    with client_of(b) as cb:
        done = wait_status(cb, created.id, TERMINAL, timeout=LEASE_S * 15)
    assert done.status == "completed" and done.output_text == "fresh start"


def test_sigkill_fails_foreground_stream(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    a, b = pair
    fake.script(Reply(chunks=["x ", "y ", "z "], delay_s=5))
    body = {"model": "test-model", "input": "go", "stream": True}
    with httpx.stream("POST", a.url + "/v1/responses", json=body, timeout=20) as r:
        lines = r.iter_lines()
        rid = json.loads(next(line for line in lines if line.startswith("data: "))[6:])["response"]["id"]
        time.sleep(0.2)
        a.kill()
    with client_of(b) as cb:
        done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 15)
    assert done.status == "failed" and done.error is not None and "stopped" in done.error.message


def test_sigterm_drains(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    """SIGTERM: a foreground stream finishes within the grace period; a long job goes back to the queue
    and B takes it at once (no lease wait)."""
    a, b = pair
    fake.script(
        Reply(chunks=["f1 ", "f2 "], delay_s=0.2),  # foreground, finishes inside the grace period
        Reply(fault="hang"),  # background job on A: cut by the drain, released
        Reply(text="taken over"),  # B starts it over
    )
    got: list[dict[str, Any]] = []
    with client_of(a) as ca, httpx.stream("POST", a.url + "/v1/responses", timeout=20,
                      json={"model": "test-model", "input": "fg", "stream": True}) as r:  # fmt: skip
        lines = r.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        job = ca.responses.create(model="test-model", input="bg", background=True)
        assert fake.wait_for_requests(2)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        got = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert got[-1]["type"] == "response.completed"
    assert a.proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert "Application shutdown complete" in a.log()
    with client_of(b) as cb:
        done = wait_status(cb, job.id, TERMINAL, timeout=10)
    assert done.status == "completed" and done.output_text == "taken over"


def test_recovered_end_is_the_fold_of_its_log(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    """A foreground stream whose replica died is ended by the other through the emitter a run uses: its open
    message is closed with its own events (``output_text.done`` … ``output_item.done``, incomplete), then
    ``error`` and ``response.failed``; the stored response is the fold of that log."""
    a, b = pair
    fake.script(Reply(chunks=["x "] + ["y "] * 20, delay_s=1))
    body = {"model": "test-model", "input": "go", "stream": True}
    with httpx.stream("POST", a.url + "/v1/responses", json=body, timeout=20) as r:
        rid = ""
        lines = r.iter_lines()  # held: a dropped iterator would close the stream, and A would cancel
        for line in lines:
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                rid = rid or ev["response"]["id"]
                if ev["type"] == "response.output_text.delta":
                    break
        time.sleep(0.3)  # the delta is committed within milliseconds
        a.kill()
    with client_of(b) as cb:
        done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 15)
        stored = stored_json(cb, rid)
    assert done.status == "failed"
    rows = b.sql(f"SELECT body FROM response_events WHERE response_id = '{rid}' ORDER BY seq")
    events = [json.loads(line) for (text,) in rows for line in text.split("\n")]
    assert_continuous(events)
    assert [e["type"] for e in events[-5:]] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    closed = next(e for e in events if e["type"] == "response.output_item.done")
    assert closed["item"]["status"] == "incomplete" and closed["item"]["content"][0]["text"] == "x "
    assert fold(events) == stored
