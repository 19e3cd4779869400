"""A client is never told of an end that is not stored (issue 19, item 1), on SQLite and PostgreSQL.

The database is made to refuse a response's rows (a trigger refuses input items carrying a marker), as a
constraint, a full disk or a lost connection would; and two requests race to put the same item id in a
conversation, so that the loser's end cannot join it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.checks import check_error, check_response, sse_events
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer

MARK = "POISON-4f1d"
_SQLITE = (f"CREATE TRIGGER refuse_marked BEFORE INSERT ON response_items WHEN NEW.body LIKE '%{MARK}%' "
           "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")  # fmt: skip
_PG = [
    f"CREATE OR REPLACE FUNCTION refuse_marked() RETURNS trigger AS $$ BEGIN IF NEW.body LIKE '%{MARK}%' THEN "
    "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER refuse_marked BEFORE INSERT ON response_items FOR EACH ROW EXECUTE FUNCTION refuse_marked()",
]


@pytest.fixture
def refusing(any_server: RespdServer) -> Iterator[RespdServer]:
    """The server's database refuses the rows of any response whose input carries ``MARK``."""
    sqlite = any_server.database_url.startswith("sqlite")
    for statement in [_SQLITE] if sqlite else _PG:
        any_server.sql(statement)
    yield any_server
    any_server.sql("DROP TRIGGER refuse_marked" + ("" if sqlite else " ON response_items"))


def _rows_of(server: RespdServer, rid: str) -> int:
    return sum(server.sql(f"SELECT count(*) FROM {t} WHERE {c} = '{rid}'")[0][0]
               for t, c in (("responses", "id"), ("response_items", "response_id"), ("response_events", "response_id")))  # fmt: skip


def test_a_stream_whose_rows_are_refused_ends_with_an_error(refusing: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="an answer in several words", delay_s=0.02))
    r = httpx.post(refusing.url + "/v1/responses", json={"model": "test-model", "input": MARK, "stream": True},
                   timeout=20)  # fmt: skip
    events = sse_events(r.text)
    rid = events[0]["response"]["id"]
    assert not any(e["type"] == "response.completed" for e in events), [e["type"] for e in events]
    assert events[-1]["type"] == "error" and events[-1]["code"] == "server_error", events[-1]
    check_error(httpx.get(f"{refusing.url}/v1/responses/{rid}"), 404)
    assert _rows_of(refusing, rid) == 0  # no orphan log rows, no half response


def test_a_json_answer_whose_rows_are_refused_is_a_500(refusing: RespdServer, fake: FakeUpstream) -> None:
    before = refusing.row_counts()
    r = httpx.post(refusing.url + "/v1/responses", json={"model": "test-model", "input": MARK}, timeout=20)
    check_error(r, 500)
    assert refusing.row_counts() == before
    ok = httpx.post(refusing.url + "/v1/responses", json={"model": "test-model", "input": "fine"}, timeout=20)
    assert ok.status_code == 200 and ok.json()["status"] == "completed"  # the next response is not affected


def test_a_turn_that_cannot_join_its_conversation_ends_failed(any_server: RespdServer, fake: FakeUpstream) -> None:
    """Another request adds an item with the turn's item id while the turn runs: the turn's end cannot join
    the conversation (the unique constraint), so it ends failed, stored and streamed alike."""
    url = any_server.url + "/v1"
    conv = httpx.post(url + "/conversations", json={}).json()["id"]
    fake.script(Reply(text="slow answer " * 8, delay_s=0.05))
    item = {"type": "message", "role": "user", "content": "hi", "id": "msg_raced_turn"}
    answer: list[httpx.Response] = []
    turn = threading.Thread(target=lambda: answer.append(httpx.post(url + "/responses", timeout=20, json={
        "model": "test-model", "input": [item], "conversation": conv, "stream": True})))  # fmt: skip
    turn.start()
    assert fake.wait_for_requests(1)
    added = httpx.post(f"{url}/conversations/{conv}/items", json={"items": [item]})
    assert added.status_code == 200, added.text
    turn.join(20)
    events = sse_events(answer[0].text)
    end = events[-1]
    assert end["type"] == "response.failed" and "Duplicate item found with id msg_raced_turn" in \
        end["response"]["error"]["message"], end  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    stored = check_response(httpx.get(f"{url}/responses/{end['response']['id']}").json())
    assert stored == end["response"]
    items = httpx.get(f"{url}/conversations/{conv}/items").json()["data"]
    assert [it["id"] for it in items] == ["msg_raced_turn"]  # the client's add, and nothing of the failed turn
