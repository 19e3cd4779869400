"""A replica killed during a response's tool loop: another one takes the response over from its log, after
its last finished hosted call, without running a finished call again (PostgreSQL, two real servers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.fake_searxng import FakeSearxng
from tests.fake_upstream import FakeUpstream, Reply, tool_messages
from tests.servers import RespdServer, create_pg_database, drop_pg_database
from tests.test_background import TERMINAL, assert_continuous, sse, stored_json, wait_status
from tests.test_replicas import LEASE_S, client_of
from tests.test_web_search import call, plain, web_config


@pytest.fixture
def pair(tmp_path: Path, fake: FakeUpstream, searxng: FakeSearxng) -> Iterator[tuple[RespdServer, RespdServer]]:
    config = web_config(tmp_path / "respd.toml", fake.base_url, searxng.base_url,
                        extra=f"lease_s = {LEASE_S}\n", timeout_s=10)  # fmt: skip
    url = create_pg_database()
    a = start_server(tmp_path / "a", config, url)
    b = start_server(tmp_path / "b", config, url)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
        drop_pg_database(url)


def cites_first_result(body: dict[str, Any]) -> Reply:
    """The answer turn: it cites result 1 if the search results reached it."""
    return Reply(text="Otters float [1]." if "[1] Result 1" in "".join(tool_messages(body)) else "nothing found")


BODY = {"model": "test-model", "input": "otters?", "background": True, "tools": [{"type": "web_search"}]}


def test_killed_after_a_finished_call_goes_on_without_calling_again(
    pair: tuple[RespdServer, RespdServer], fake: FakeUpstream, searxng: FakeSearxng
) -> None:
    a, b = pair
    fake.script(Reply(tool_calls=[call("otters")]), Reply(fault="hang"), cites_first_result)
    with client_of(a) as ca:
        rid = ca.responses.create(**BODY).id  # type: ignore[call-overload]
    assert fake.wait_for_requests(2, timeout=10)  # the search is done and committed; the second turn hangs
    a.kill()
    with client_of(b) as cb:
        done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 15)
        assert done.status == "completed", done
        body = stored_json(cb, rid)
    assert searxng.queries == ["otters"]  # the finished call was not run again
    assert [i["type"] for i in body["output"]] == ["web_search_call", "message"]
    # the takeover's turn read the call from the store, and its citation numbering too
    assert body["output"][1]["content"][0]["annotations"][0]["url"] == "https://example1.com/otters"
    events = sse(f"{b.url}/v1/responses/{rid}?stream=true")
    assert_continuous(events)
    assert plain(events)[-1]["response"] == body


def test_killed_during_a_call_runs_a_search_again(
    pair: tuple[RespdServer, RespdServer], fake: FakeUpstream, searxng: FakeSearxng
) -> None:
    a, b = pair
    searxng.delay_s = 2
    fake.script(Reply(tool_calls=[call("otters")]), cites_first_result)
    with client_of(a) as ca:
        rid = ca.responses.create(**BODY).id  # type: ignore[call-overload]
    assert searxng.wait_for_queries(1)
    a.kill()  # the call is in flight: a search has no side effects, so it runs again
    with client_of(b) as cb:
        done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 15)
        assert done.status == "completed", done
        body = stored_json(cb, rid)
    assert searxng.queries == ["otters", "otters"]
    ws, msg = body["output"]
    assert ws["status"] == "completed" and msg["content"][0]["text"] == "Otters float [1]."
    events = sse(f"{b.url}/v1/responses/{rid}?stream=true")
    assert_continuous(events)
    assert [e["type"] for e in events].count("response.output_item.added") == 2  # one item per call, no repeats
