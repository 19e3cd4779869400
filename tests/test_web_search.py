"""The web_search hosted tool through the tool loop, on real servers (SQLite and PostgreSQL) with a fake
SearXNG and the scripted upstream: JSON, stream, background, replay, chains, limits and failures."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from respd.config import ConfigError, load_settings
from respd.engine.runtime import Runtime
from respd.store.store import Store
from tests.checks import check_error, check_event, check_response
from tests.conftest import start_server
from tests.fake_searxng import FakeSearxng
from tests.fake_upstream import FakeUpstream, Reply, tool_messages
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config
from tests.test_background import TERMINAL, assert_continuous, sse, stored_json, wait_status
from tests.test_websocket import answer

SOURCES = "web_search_call.action.sources"


def web_config(path: Path, upstream: str, searxng: str, extra: str = "", timeout_s: float = 2) -> str:
    """The test config plus a ``[web_search]`` table on the fake SearXNG (tables go after the top-level keys),
    which the outbound policy lets respd reach on loopback."""
    config = write_config(path, upstream, 'outbound_allow = ["127.0.0.1:*"]\n' + extra)
    with open(config, "a") as f:
        f.write(f'\n[web_search]\nprovider = "searxng"\nbase_url = "{searxng}"\ntimeout_s = {timeout_s}\n')
    return config


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def web_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream, searxng: FakeSearxng
) -> Iterator[RespdServer]:
    """respd with web search on each storage backend (its own PostgreSQL database: its jobs are its own)."""
    tmp = tmp_path_factory.mktemp(f"respd-web-{request.param}")
    config = web_config(tmp / "respd.toml", fake.base_url, searxng.base_url)
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else create_pg_database()
    server = start_server(tmp, config, url)
    yield server
    server.stop()
    if request.param == "postgres":
        drop_pg_database(url)


@pytest.fixture
def web(web_server: RespdServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=web_server.url + "/v1", api_key="k", max_retries=0, timeout=20) as c:
        yield c


def plain(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without their obfuscation padding (random for each delivery)."""
    return [{k: v for k, v in e.items() if k != "obfuscation"} for e in events]


def call(query: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "name": "web_search", "arguments": json.dumps({"query": query})}


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def searching(query: str, answer: str = "Otters hold hands [1] and sleep afloat [2].") -> list[Reply]:
    """Turn 1 searches, turn 2 answers citing what it was given."""
    return [Reply(tool_calls=[call(query)], usage=usage(10, 5)), Reply(text=answer, usage=usage(40, 12))]


def test_search_then_answer_with_citations(web: openai.OpenAI, fake: FakeUpstream, searxng: FakeSearxng) -> None:
    fake.script(*searching("otter facts"))
    raw = web.responses.with_raw_response.create(model="test-model", input="Tell me about otters.",
                                                 tools=[{"type": "web_search"}], include=[SOURCES])  # fmt: skip
    body = check_response(raw.http_response.json())
    assert searxng.queries == ["otter facts"]
    assert body["status"] == "completed"
    ws, msg = body["output"]
    assert ws["type"] == "web_search_call" and ws["id"].startswith("ws_") and ws["status"] == "completed"
    assert ws["action"]["type"] == "search" and ws["action"]["query"] == "otter facts"
    assert [s["url"] for s in ws["action"]["sources"]] == [f"https://example{i}.com/otter-facts" for i in (1, 2, 3)]
    text = msg["content"][0]["text"]
    notes = msg["content"][0]["annotations"]
    assert [(n["type"], text[n["start_index"] : n["end_index"]], n["url"]) for n in notes] == [
        ("url_citation", "[1]", "https://example1.com/otter-facts"),
        ("url_citation", "[2]", "https://example2.com/otter-facts"),
    ]
    assert notes[0]["title"] == "Result 1 about otter facts"
    # usage sums both model turns
    assert body["usage"]["input_tokens"] == 50 and body["usage"]["output_tokens"] == 17
    assert body["usage"]["total_tokens"] == 67
    assert body["tools"] == [{"type": "web_search", "search_context_size": "medium", "user_location": None,
                              "filters": None, "external_web_access": True}]  # fmt: skip
    # the second turn read the call and its numbered results as a tool call and a tool message
    first, second = (r["body"] for r in fake.requests[-2:])
    assert [t["function"]["name"] for t in first["tools"]] == ["web_search"]
    assistant = second["messages"][1]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["function"]["name"] == "web_search"
    (result,) = tool_messages(second)
    assert "[1] Result 1 about otter facts" in result and "https://example3.com/otter-facts" in result
    # stored as returned; the fold of the log agrees
    assert stored_json(web, body["id"]) == body
    replay = sse(f"{str(web.base_url).rstrip('/')}/responses/{body['id']}?stream=true")
    assert replay[-1]["response"] == body
    assert [i.type for i in web.responses.input_items.list(body["id"]).data] == ["message"]


def test_stream_events_in_the_apis_order(web_server: RespdServer, web: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Searching.", tool_calls=[call("sea otters")]), Reply(text="Found [1]."))
    events = sse(web_server.url + "/v1/responses",
                 json={"model": "test-model", "input": "otters?", "stream": True, "tools": [{"type": "web_search"}]})  # fmt: skip
    for ev in events:
        check_event(ev)
    assert_continuous(events)
    kinds = [(e["type"], e.get("output_index")) for e in events if "output_index" in e or "item" in e]
    ws_events = [k for k, i in kinds if i == 1]
    assert ws_events == ["response.output_item.added", "response.web_search_call.in_progress",
                         "response.web_search_call.searching", "response.web_search_call.completed",
                         "response.output_item.done"]  # fmt: skip
    types = [e["type"] for e in events]
    assert types.index("response.output_text.annotation.added") < types.index("response.output_text.done", 10)
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "web_search_call", "message"]
    assert "sources" not in final["output"][1]["action"]  # only with include
    assert final["output"][2]["content"][0]["annotations"][0]["url"] == "https://example1.com/sea-otters"
    assert stored_json(web, final["id"]) == final
    assert plain(sse(f"{web_server.url}/v1/responses/{final['id']}?stream=true")) == plain(events)


def test_background_with_a_search(web_server: RespdServer, web: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(*searching("river otters"))
    created = web.responses.create(model="test-model", input="otters", tools=[{"type": "web_search_preview"}],
                                   background=True)  # fmt: skip
    done = wait_status(web, created.id, TERMINAL)
    assert done.status == "completed", done
    assert [i.type for i in done.output] == ["web_search_call", "message"]
    events = sse(f"{web_server.url}/v1/responses/{created.id}?stream=true")
    assert_continuous(events)
    assert events[-1]["response"] == stored_json(web, created.id)
    assert done.usage is not None and done.usage.total_tokens == 67


def test_a_chain_shows_the_model_earlier_searches(web: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(*searching("otter diet"), Reply(text="Clams, as found before [2]."))
    first = web.responses.create(model="test-model", input="What do otters eat?", tools=[{"type": "web_search"}])
    second = web.responses.create(model="test-model", input="And again?", previous_response_id=first.id)
    msgs = fake.requests[-1]["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant", "user"]
    assert "Result 2 about otter diet" in msgs[2]["content"]
    # without web_search in this request, its numbering still reads back: no annotation without the tool
    assert second.output_text == "Clams, as found before [2]."
    # sent back by value (as clients that keep their own history do), the call reads back the same
    fake.script(Reply(text="ok"))
    items = [o.model_dump(exclude_none=True) for o in first.output]
    web.responses.create(model="test-model", input=[*items, {"role": "user", "content": "More?"}], store=False)
    assert tool_messages(fake.requests[-1]["body"]) == [msgs[2]["content"]]


def test_a_provider_that_fails_is_reported_to_the_model(web: openai.OpenAI, fake: FakeUpstream,
                                                        searxng: FakeSearxng) -> None:  # fmt: skip
    searxng.status = 503
    fake.script(*searching("otters", answer="The search failed, sorry."))
    r = web.responses.create(model="test-model", input="otters", tools=[{"type": "web_search"}])
    assert r.status == "completed"
    assert [(i.type, i.status) for i in r.output] == [("web_search_call", "failed"), ("message", "completed")]
    (told,) = tool_messages(fake.requests[-1]["body"])
    assert "failed" in told and "503" in told
    assert r.output[1].content[0].annotations == []  # type: ignore[union-attr]


def test_a_slow_provider_times_out(web: openai.OpenAI, fake: FakeUpstream, searxng: FakeSearxng) -> None:
    searxng.delay_s = 5  # the server's timeout_s is 2
    fake.script(*searching("otters", answer="No luck."))
    r = web.responses.create(model="test-model", input="otters", tools=[{"type": "web_search"}])
    assert r.status == "completed" and r.output[0].status == "failed"  # type: ignore[union-attr]
    assert "seconds" in tool_messages(fake.requests[-1]["body"])[0]


def test_max_tool_calls_counts_hosted_calls(web: openai.OpenAI, fake: FakeUpstream, searxng: FakeSearxng) -> None:
    fake.script(
        Reply(tool_calls=[call("a", "c1"), call("b", "c2")]),  # two calls, one allowed
        Reply(tool_calls=[call("c", "c3")]),  # tools no longer offered: the call is dropped
    )
    r = web.responses.create(model="test-model", input="search", tools=[{"type": "web_search"}], max_tool_calls=1)
    assert searxng.queries == ["a"]
    assert [i.type for i in r.output] == ["web_search_call"] and r.status == "completed"
    assert "tools" not in fake.requests[-1]["body"]


def test_a_turn_with_a_client_call_ends_after_its_search(web: openai.OpenAI, fake: FakeUpstream,
                                                         searxng: FakeSearxng) -> None:  # fmt: skip
    fn = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    get_time = {"id": "call_t", "name": "get_time", "arguments": "{}"}
    fake.script(Reply(tool_calls=[get_time, call("clocks")]))
    r = web.responses.create(model="test-model", input="time?", tools=[fn, {"type": "web_search"}])  # type: ignore[list-item]
    assert [(i.type, i.status) for i in r.output] == [("function_call", "completed"), ("web_search_call", "completed")]
    assert searxng.queries == ["clocks"] and len(fake.requests) == 1  # no second turn: the client's call is due
    fake.script(Reply(text="It is noon [1]."))
    nxt = web.responses.create(model="test-model", previous_response_id=r.id, tools=[fn, {"type": "web_search"}],  # type: ignore[list-item]
                               input=[{"type": "function_call_output", "call_id": "call_t", "output": "12:00"}])
    msgs = fake.requests[-1]["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool"]
    assert [c["function"]["name"] for c in msgs[1]["tool_calls"]] == ["get_time", "web_search"]
    assert nxt.output[0].content[0].annotations[0].url == "https://example1.com/clocks"  # type: ignore[union-attr]


def test_parallel_calls_run_together(web: openai.OpenAI, fake: FakeUpstream, searxng: FakeSearxng) -> None:
    searxng.delay_s = 0.5
    fake.script(Reply(tool_calls=[call("one", "c1"), call("two", "c2")]), Reply(text="Both [1] [4]."))
    r = web.responses.create(model="test-model", input="both", tools=[{"type": "web_search"}])
    assert sorted(searxng.queries) == ["one", "two"]
    assert [(i.type, i.action.query) for i in r.output[:2]] == [("web_search_call", "one"),  # type: ignore[union-attr]
                                                                ("web_search_call", "two")]  # fmt: skip
    notes = r.output[2].content[0].annotations  # type: ignore[union-attr]
    assert [n.url for n in notes] == ["https://example1.com/one", "https://example1.com/two"]  # type: ignore[union-attr]
    assert len(tool_messages(fake.requests[-1]["body"])) == 2


def test_tool_choice_forces_the_first_turn_only(web: openai.OpenAI, fake: FakeUpstream) -> None:
    for kind in ("web_search_preview", "web_search"):  # the spec's name for it, and the tool's own type
        fake.script(*searching("forced"))
        r = web.responses.with_raw_response.create(model="test-model", input="x", tools=[{"type": "web_search"}],
                                                   tool_choice={"type": kind})  # type: ignore[misc]  # fmt: skip
        first, second = (q["body"] for q in fake.requests[-2:])
        assert first["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}
        assert second["tool_choice"] == "auto"
        assert r.http_response.json()["tool_choice"] == {"type": kind}
    fn = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    fake.script(*searching("allowed"))
    web.responses.create(model="test-model", input="x", tools=[{"type": "web_search"}, fn],  # type: ignore[list-item]
                         tool_choice={"type": "allowed_tools", "mode": "required", "tools": [{"type": "web_search"}]})  # type: ignore[arg-type]  # fmt: skip
    first, second = (q["body"] for q in fake.requests[-2:])
    assert first["tool_choice"] == "required" and [t["function"]["name"] for t in first["tools"]] == ["web_search"]
    assert second["tool_choice"] == "auto"


def test_allowed_domains_filter_results(web: openai.OpenAI, fake: FakeUpstream, searxng: FakeSearxng) -> None:
    searxng.results["news"] = [
        {"url": "https://www.bbc.co.uk/a", "title": "BBC", "content": "a"},
        {"url": "https://evil.example/b", "title": "Evil", "content": "b"},
        {"url": "https://news.bbc.co.uk/c", "title": "BBC News", "content": "c"},
    ]
    fake.script(*searching("news", answer="[1][2]"))
    r = web.responses.create(model="test-model", input="news", include=[SOURCES],  # type: ignore[list-item]
                             tools=[{"type": "web_search", "filters": {"allowed_domains": ["https://BBC.co.uk/"]}}])  # type: ignore[list-item]  # fmt: skip
    assert [s.url for s in r.output[0].action.sources] == ["https://www.bbc.co.uk/a", "https://news.bbc.co.uk/c"]  # type: ignore[union-attr]
    assert r.tools[0].filters.allowed_domains == ["bbc.co.uk"]  # type: ignore[union-attr]


def test_a_bad_tool_config_is_a_400(web_server: RespdServer) -> None:
    bad = {"model": "test-model", "input": "x", "tools": [{"type": "web_search", "search_context_size": "huge"}]}
    check_error(httpx.post(web_server.url + "/v1/responses", json=bad), 400, param="tools[0].search_context_size")
    clash = {"model": "test-model", "input": "x", "tools": [{"type": "web_search"}, {"type": "function",
                                                                                  "name": "web_search"}]}  # fmt: skip
    check_error(httpx.post(web_server.url + "/v1/responses", json=clash), 400, param="tools[1]")


def test_websocket_mode_and_a_store_false_chain(web: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(*searching("ws otters"), Reply(text="As I found."))
    with web.responses.connect() as conn:
        conn.response.create(model="test-model", input="otters", tools=[{"type": "web_search"}], store=False)
        events = answer(conn)
        first = events[-1]["response"]
        conn.response.create(model="test-model", input="more", previous_response_id=first["id"], store=False)
        answer(conn)
    assert [i["type"] for i in first["output"]] == ["web_search_call", "message"]
    assert "response.web_search_call.searching" in [e["type"] for e in events]
    # the connection keeps what the store:false search gave the model, for the next turn
    assert "[1] Result 1 about ws otters" in tool_messages(fake.requests[-1]["body"])[0]


def test_the_outbound_policy_guards_the_provider(tmp_path: Path, fake: FakeUpstream, searxng: FakeSearxng) -> None:
    # a literal loopback address the policy refuses stops the server at startup, saying what to allow
    refused = write_config(tmp_path / "refused.toml", fake.base_url)
    with open(refused, "a") as f:
        f.write(f'\n[web_search]\nprovider = "searxng"\nbase_url = "{searxng.base_url}"\n')
    with pytest.raises(ConfigError, match="outbound_allow"):
        settings = load_settings(refused, env={"RESPD_DATA_DIR": str(tmp_path)})
        Runtime(settings, Store(settings.database_url))
    # a name is checked on the addresses it resolves to, at each connection: the call fails, the answer goes on
    by_name = write_config(tmp_path / "respd.toml", fake.base_url)
    with open(by_name, "a") as f:
        f.write(f'\n[web_search]\nprovider = "searxng"\nbase_url = "http://localhost:{searxng.port}"\n')
    server = start_server(tmp_path / "srv", by_name, f"sqlite:///{tmp_path / 'respd.db'}")
    try:
        fake.script(*searching("internal", answer="Could not search."))
        with openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0) as c:
            r = c.responses.create(model="test-model", input="x", tools=[{"type": "web_search"}])
    finally:
        server.stop()
    assert r.status == "completed" and r.output[0].status == "failed"  # type: ignore[union-attr]
    assert searxng.queries == []
    assert "not allowed" in tool_messages(fake.requests[-1]["body"])[0]


def test_a_client_gone_during_the_search_ends_it_cancelled(web_server: RespdServer, web: openai.OpenAI,
                                                            fake: FakeUpstream, searxng: FakeSearxng) -> None:  # fmt: skip
    searxng.delay_s = 1.5
    fake.script(*searching("slow"))
    body = {"model": "test-model", "input": "x", "stream": True, "tools": [{"type": "web_search"}]}
    events = sse(web_server.url + "/v1/responses", json=body, stop_after=5)  # up to `searching`, then hang up
    assert events[-1]["type"] == "response.web_search_call.searching"
    rid = events[0]["response"]["id"]
    deadline = time.monotonic() + 10  # the first rows are written a moment after the client has them
    while httpx.get(f"{web_server.url}/v1/responses/{rid}").status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    done = wait_status(web, rid, TERMINAL)
    assert done.status == "cancelled"
    assert [(i.type, i.status) for i in done.output] == [("web_search_call", "failed")]
    assert len(fake.requests) == 1  # no answer turn


def test_a_conversation_keeps_the_search_for_its_next_turn(web: openai.OpenAI, fake: FakeUpstream) -> None:
    conv = web.conversations.create()
    fake.script(*searching("conv otters"), Reply(text="As before."))
    web.responses.create(model="test-model", input="otters", conversation=conv.id, tools=[{"type": "web_search"}])
    web.responses.create(model="test-model", input="again", conversation=conv.id)
    kinds = [i.type for i in web.conversations.items.list(conv.id, order="asc").data]
    assert kinds == ["message", "web_search_call", "message", "message", "message"]
    assert "[1] Result 1 about conv otters" in tool_messages(fake.requests[-1]["body"])[0]
