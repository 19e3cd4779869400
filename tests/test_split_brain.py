"""Split brain: a replica paused past its lease while it runs a response, taken over by another, then resumed.

Two real respd processes on one PostgreSQL database. Replica A runs a background response; A is stopped
(SIGSTOP) long enough for its lease to run out; B takes the response over (bumping its lease epoch) and ends
it; A is resumed (SIGCONT) with the model's stream still coming in. A's writes carry the old epoch and are
refused in their own transaction, so the log has exactly one writer from the takeover on; and A checks its
epoch before it shows anything more to a client following the response there.
"""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from respd.engine.fold import TERMINAL_EVENTS, fold
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer
from tests.test_background import TERMINAL, sse, stored_json, wait_status
from tests.test_replicas import LEASE_S, client_of, replicas

FENCED = "this replica stops its run"  # what A logs when its writes are refused


@pytest.fixture
def pair(tmp_path: Path, fake: FakeUpstream) -> Iterator[tuple[RespdServer, RespdServer]]:
    with replicas(tmp_path, fake, timeout_s=60) as servers:
        yield servers


def _logged(server: RespdServer, rid: str) -> list[tuple[int, int, list[dict[str, Any]]]]:
    """The event-log rows of ``rid``: ``(seq, last_seq, events)``, in order."""
    rows = server.sql(f"SELECT seq, last_seq, body FROM response_events WHERE response_id = '{rid}' ORDER BY seq")
    return [(seq, last, [json.loads(line) for line in body.split("\n")]) for seq, last, body in rows]


def _wait_for_text(server: RespdServer, rid: str, words: int, timeout: float = 20.0) -> str:
    """Poll until ``rid``'s stored output has at least ``words`` words; its text then (or what there is)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/v1/responses/{rid}", timeout=5).json()
        output = body["output"]
        text = "".join(p.get("text", "") for p in output[0]["content"]) if output and output[0]["content"] else ""
        if len(text.split()) >= words:
            break
        time.sleep(0.01)
    return text


def _wait_for_log(server: RespdServer, needle: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in server.log():
            return True
        time.sleep(0.1)
    return False


def test_paused_replica_is_fenced_after_takeover(pair: tuple[RespdServer, RespdServer], fake: FakeUpstream) -> None:
    a, b = pair
    assert a.proc is not None
    # A's answer streams on while A is stopped (it is read from the socket once A resumes); B goes on from
    # what A had logged with the second reply
    fake.script(Reply(chunks=[f"a{i} " for i in range(30)], delay_s=0.3), Reply(text="b1 b2"))
    with client_of(a) as ca:
        rid = ca.responses.create(model="prefill-model", input="story", background=True).id
    # a client following the response on A: what it is shown must be what is stored, whoever wrote it
    followed: list[dict[str, Any]] = []
    url = f"{a.url}/v1/responses/{rid}?stream=true&include_obfuscation=false"
    follower = threading.Thread(target=lambda: followed.extend(sse(url, timeout=120)))
    follower.start()
    # stop A just after a commit (the next one is ~0.3 s away), so that it holds no transaction open
    before = _wait_for_text(b, rid, 3)
    assert len(before.split()) >= 3, before
    a.proc.send_signal(signal.SIGSTOP)
    try:
        with client_of(b) as cb:
            done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 20)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert done.status == "completed", done
    # A wakes with the model's stream still coming: it tries to write, is refused, and stops its run
    assert _wait_for_log(a, FENCED), a.log()[-3000:]
    assert fake.wait_for_disconnect(timeout=10.0)  # A stopped reading its model
    with client_of(b) as cb:
        stored = stored_json(cb, rid)
    rows = _logged(b, rid)
    events = [ev for _, _, evs in rows for ev in evs]
    # exactly one writer: rows follow each other with no overlap or gap, and number their events in order
    for (seq, last, evs), (nxt, _, _) in itertools.pairwise(rows):
        assert nxt == last + 1
        assert [e["sequence_number"] for e in evs] == list(range(seq, last + 1))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    terminals = [e for e in events if e["type"] in TERMINAL_EVENTS]
    assert len(terminals) == 1 and events[-1] is terminals[0]
    assert fold(events) == stored
    follower.join(60)
    assert not follower.is_alive() and followed == events  # A's refused events never reached its follower
    # B's answer went on from A's logged words; nothing A read after its pause is in it
    text = stored["output"][0]["content"][0]["text"]
    assert text.endswith("b1 b2") and text.startswith(before)
    cont = next(r["body"] for r in fake.requests if r["body"].get("continue_final_message"))
    assert text == cont["messages"][-1]["content"] + "b1 b2"
    # and the epoch B claimed the response with is the one its end was written under
    assert b.sql(f"SELECT lease_epoch FROM responses WHERE id = '{rid}'")[0][0] >= 1
    assert "Traceback" not in a.log()
