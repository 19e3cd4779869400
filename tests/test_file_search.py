"""The file_search hosted tool through the tool loop, on real servers (SQLite and PostgreSQL) with the scripted
upstream and a fake embeddings upstream (hashed bags of words: fast, and meaningful enough to rank by):
upload → vector store → upload_and_poll → the model searches, reads the results and answers with
file_citation annotations, in JSON, stream and background; results only when included; another key's or an
unknown store is a 404 before anything runs; tool_choice forces the search; a failed search is a failed call
the model hears about; a replica killed during the tool step, then takeover; openai-agents' FileSearchTool."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, cast

import httpx
import openai
import pytest
from agents import Agent, FileSearchTool, ModelSettings, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from tests.checks import check_error, check_event, check_response
from tests.clients.conftest import node_modules, run_node  # noqa: F401  (node_modules is a fixture)
from tests.fake_embeddings import FakeEmbeddings
from tests.fake_upstream import FakeUpstream, Reply, tool_messages
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config
from tests.test_background import TERMINAL, assert_continuous, sse, stored_json, wait_status
from tests.test_ingestion_faults import start_server
from tests.test_replicas import LEASE_S
from tests.test_web_search import plain, usage
from tests.test_websocket import answer

RESULTS: Final = "file_search_call.results"
KEYS = {"RESPD_API_KEYS": "key-alice,key-bob"}
ROUTER = (
    "Resetting the wireless router: press and hold the reset button on the back of the router for ten seconds. "
    "The router restarts with the factory password printed on the label underneath it."
)
PAYROLL = (
    "Payroll is processed on the last business day of each quarter. Salary statements arrive by email, and "
    "tax withholding is adjusted every January."
)
CODES = "Error code ERR-4471: the license server rejected the activation because the machine clock is skewed."


@pytest.fixture(scope="module")
def embeddings() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    fake.start()
    yield fake
    fake.stop()


def fs_config(path: Path, fake: FakeUpstream, embeddings: FakeEmbeddings, extra: str = "") -> str:
    """The test config with the fake embeddings upstream (its table goes after the top-level keys)."""
    return write_config(path, fake.base_url, extra + f'\n[embeddings]\nbase_url = "{embeddings.base_url}"\n'
                                                      'model = "hash-64"\n')  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fs_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream,
              embeddings: FakeEmbeddings) -> Iterator[RespdServer]:  # fmt: skip
    tmp = tmp_path_factory.mktemp(f"file-search-{request.param}")
    config = fs_config(tmp / "respd.toml", fake, embeddings)
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else create_pg_database()
    server = start_server(tmp, config, url, KEYS)
    yield server
    server.stop()
    if request.param == "postgres":
        drop_pg_database(url)


def client_of(server: RespdServer, key: str = "key-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def alice(fs_server: RespdServer) -> Iterator[openai.OpenAI]:
    with client_of(fs_server) as c:
        yield c


def make_library(client: openai.OpenAI) -> dict[str, str]:
    """A vector store of three files (one uploaded first, then added), indexed; ids by name, and ``store``."""
    vs = client.vector_stores.create(name="handbook")
    ids = {"store": vs.id}
    for name, text, attributes in (("router.txt", ROUTER, {"team": "it"}), ("payroll.md", PAYROLL, {"team": "hr"})):
        f = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=(name, text.encode()),
                                                       poll_interval_ms=100)  # fmt: skip
        assert f.status == "completed", f.last_error
        client.vector_stores.files.update(vector_store_id=vs.id, file_id=f.id, attributes=dict(attributes.items()))
        ids[name] = f.id
    uploaded = client.files.create(file=("codes.txt", CODES.encode()), purpose="assistants")
    f = client.vector_stores.files.create_and_poll(vector_store_id=vs.id, file_id=uploaded.id,
                                                   attributes={"team": "it"}, poll_interval_ms=100)  # fmt: skip
    assert f.status == "completed", f.last_error
    ids["codes.txt"] = uploaded.id
    return ids


@pytest.fixture(scope="module")
def library(alice: openai.OpenAI) -> dict[str, str]:
    return make_library(alice)


def search_call(*queries: str, call_id: str = "call_fs") -> dict[str, Any]:
    return {"id": call_id, "name": "file_search", "arguments": json.dumps({"queries": list(queries)})}


def cite(filename: str, prefix: str = "Hold the reset button ") -> Any:
    """The answer turn: it cites the result the search numbered for ``filename`` (or says it found none)."""

    def reply(body: dict[str, Any]) -> Reply:
        told = "".join(tool_messages(body))
        for line in told.splitlines():
            if line.startswith("[") and line.endswith("] " + filename):
                return Reply(text=f"{prefix}{line.split(']')[0]}].", usage=usage(40, 12))
        return Reply(text="nothing found", usage=usage(40, 12))

    return reply


def tool(library: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"type": "file_search", "vector_store_ids": [library["store"]], **extra}


def kinds(body: dict[str, Any]) -> list[str]:
    return [i["type"] for i in body["output"]]


def test_search_then_answer_with_a_file_citation(alice: openai.OpenAI, fake: FakeUpstream,
                                                 library: dict[str, str]) -> None:  # fmt: skip
    fake.script(Reply(tool_calls=[search_call("how to reset the router password")], usage=usage(10, 5)),
                cite("router.txt"))  # fmt: skip
    raw = alice.responses.with_raw_response.create(model="test-model", input="I forgot my router password.",
                                                   tools=[tool(library)], include=[RESULTS])  # type: ignore[list-item]  # fmt: skip
    body = check_response(raw.http_response.json())
    assert body["status"] == "completed" and kinds(body) == ["file_search_call", "message"]
    fs, msg = body["output"]
    assert fs["id"].startswith("fs_") and fs["status"] == "completed"
    assert fs["queries"] == ["how to reset the router password"]
    top = fs["results"][0]
    assert (top["file_id"], top["filename"], top["attributes"]) == (library["router.txt"], "router.txt", {"team": "it"})
    assert "reset button" in top["text"] and 0 < top["score"] <= 1
    assert {r["file_id"] for r in fs["results"]} <= {library[n] for n in ("router.txt", "payroll.md", "codes.txt")}
    text = msg["content"][0]["text"]
    (note,) = msg["content"][0]["annotations"]
    assert note == {"type": "file_citation", "file_id": library["router.txt"], "filename": "router.txt",
                    "index": text.index("[")}  # fmt: skip
    assert body["usage"]["input_tokens"] == 50 and body["usage"]["output_tokens"] == 17
    assert body["tools"] == [{"type": "file_search", "vector_store_ids": [library["store"]], "filters": None,
                              "max_num_results": 10, "ranking_options": {"ranker": "auto", "score_threshold": 0.0}}]  # fmt: skip
    # the model was offered the search function, then read the numbered chunks as the call's result
    first, second = (r["body"] for r in fake.requests[-2:])
    assert [t["function"]["name"] for t in first["tools"]] == ["file_search"]
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "file_search"
    (told,) = tool_messages(second)
    assert "] router.txt\n" + ROUTER in told and "Cite a result" in told
    assert stored_json(alice, body["id"]) == body
    replay = sse(f"{str(alice.base_url).rstrip('/')}/responses/{body['id']}?stream=true",
                 headers={"Authorization": "Bearer key-alice"})  # fmt: skip
    assert replay[-1]["response"] == body


def test_results_only_when_included(alice: openai.OpenAI, fake: FakeUpstream, library: dict[str, str]) -> None:
    fake.script(Reply(tool_calls=[search_call("payroll quarter")]), cite("payroll.md", "Quarterly "))
    r = alice.responses.create(model="test-model", input="When is payroll?", tools=[tool(library)])  # type: ignore[list-item]
    fs = r.output[0]
    assert fs.type == "file_search_call" and fs.status == "completed" and fs.results is None
    assert fs.queries == ["payroll quarter"]
    # the model read them all the same, and cited one
    assert "] payroll.md\n" + PAYROLL in tool_messages(fake.requests[-1]["body"])[0]
    note = cast(Any, r.output[1]).content[0].annotations[0]
    assert note.type == "file_citation" and note.file_id == library["payroll.md"] and note.filename == "payroll.md"


def test_stream_events_in_the_apis_order(fs_server: RespdServer, fake: FakeUpstream, library: dict[str, str]) -> None:
    fake.script(Reply(text="Let me look.", tool_calls=[search_call("router reset button")]), cite("router.txt"))
    body = {"model": "test-model", "input": "reset?", "stream": True, "tools": [tool(library)], "include": [RESULTS]}
    auth = {"Authorization": "Bearer key-alice"}
    events = sse(fs_server.url + "/v1/responses", json=body, headers=auth)
    for ev in events:
        check_event(ev)
    assert_continuous(events)
    fs_events = [e["type"] for e in events if e.get("output_index") == 1]
    assert fs_events == ["response.output_item.added", "response.file_search_call.in_progress",
                         "response.file_search_call.searching", "response.file_search_call.completed",
                         "response.output_item.done"]  # fmt: skip
    added = next(e for e in events if e["type"] == "response.output_item.added" and e["output_index"] == 1)
    assert added["item"]["status"] == "in_progress" and added["item"]["results"] is None
    types = [e["type"] for e in events]
    annotation = types.index("response.output_text.annotation.added")
    assert annotation < types.index("response.output_text.done", annotation)
    final = events[-1]["response"]
    assert kinds(final) == ["message", "file_search_call", "message"]
    assert final["output"][1]["results"][0]["filename"] == "router.txt"
    assert events[annotation]["annotation"] == final["output"][2]["content"][0]["annotations"][0]
    with client_of(fs_server) as c:
        assert stored_json(c, final["id"]) == final
    assert plain(sse(f"{fs_server.url}/v1/responses/{final['id']}?stream=true", headers=auth)) == plain(events)


def test_background(fs_server: RespdServer, alice: openai.OpenAI, fake: FakeUpstream, library: dict[str, str]) -> None:
    fake.script(Reply(tool_calls=[search_call("ERR-4471")], usage=usage(10, 5)), cite("codes.txt", "Clock skew "))
    created = alice.responses.create(model="test-model", input="What is ERR-4471?", tools=[tool(library)],  # type: ignore[list-item]
                                     background=True, include=[RESULTS])  # fmt: skip
    done = wait_status(alice, created.id, TERMINAL)
    assert done.status == "completed", done
    body = stored_json(alice, created.id)
    assert kinds(body) == ["file_search_call", "message"]
    assert body["output"][0]["results"][0]["file_id"] == library["codes.txt"]  # found by the exact identifier
    assert body["output"][1]["content"][0]["annotations"][0]["filename"] == "codes.txt"
    events = sse(
        f"{fs_server.url}/v1/responses/{created.id}?stream=true", headers={"Authorization": "Bearer key-alice"}
    )
    assert_continuous(events)
    assert events[-1]["response"] == body and body["usage"]["total_tokens"] == 67


def test_filters_and_max_num_results(alice: openai.OpenAI, fake: FakeUpstream, library: dict[str, str]) -> None:
    fake.script(Reply(tool_calls=[search_call("router reset password payroll")]), Reply(text="ok"))
    hr_only = tool(library, filters={"type": "eq", "key": "team", "value": "hr"}, max_num_results=1)
    r = alice.responses.create(model="test-model", input="x", tools=[hr_only], include=[RESULTS])  # type: ignore[list-item]
    assert [res.filename for res in r.output[0].results] == ["payroll.md"]  # type: ignore[union-attr]
    assert "router.txt" not in tool_messages(fake.requests[-1]["body"])[0]


def test_a_store_of_another_key_or_unknown_is_a_404_before_anything_runs(
    fs_server: RespdServer, alice: openai.OpenAI, fake: FakeUpstream, library: dict[str, str]
) -> None:
    url = fs_server.url + "/v1/responses"
    for key, ids in (("key-bob", [library["store"]]), ("key-alice", ["vs_nope"]),
                     ("key-alice", [library["store"], "vs_nope"]), ("key-alice", ["vs_\x00"])):  # fmt: skip
        for stream in (False, True):
            body = {"model": "test-model", "input": "x", "stream": stream, "background": not stream,
                    "tools": [{"type": "file_search", "vector_store_ids": ids}]}  # fmt: skip
            resp = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            err = check_error(resp, 404, param="tools[0].vector_store_ids")
            assert ids[-1] in err["message"]
    assert fake.requests == []  # no model turn ran


def test_a_bad_tool_entry_is_a_400(fs_server: RespdServer, library: dict[str, str]) -> None:
    url, auth = fs_server.url + "/v1/responses", {"Authorization": "Bearer key-alice"}
    for entry, param in ((tool(library, max_num_results=0), "tools[0].max_num_results"),
                         (tool(library, filters={"type": "near", "key": "a", "value": 1}), "tools[0].filters.type"),
                         (tool(library, ranking_options={"score_threshold": 2}),
                          "tools[0].ranking_options.score_threshold"),
                         ({"type": "file_search"}, "tools[0].vector_store_ids"),
                         ({"type": "file_search", "vector_store_ids": []}, "tools[0].vector_store_ids"),
                         ({"type": "file_search", "vector_store_ids": ["vs_a"] * 101}, "tools[0].vector_store_ids")):  # fmt: skip
        body = {"model": "test-model", "input": "x", "tools": [entry]}
        check_error(httpx.post(url, json=body, headers=auth, timeout=30), 400, param=param)


def test_tool_choice_forces_the_search(alice: openai.OpenAI, fake: FakeUpstream, library: dict[str, str]) -> None:
    fake.script(Reply(tool_calls=[search_call("router")]), cite("router.txt"))
    fn = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    raw = alice.responses.with_raw_response.create(model="test-model", input="x", tools=[tool(library), fn],  # type: ignore[call-overload]
                                                   tool_choice={"type": "file_search"})  # fmt: skip
    first, second = (q["body"] for q in fake.requests[-2:])
    assert first["tool_choice"] == {"type": "function", "function": {"name": "file_search"}}
    assert second["tool_choice"] == "auto"  # forced once: then the model may answer
    body = raw.http_response.json()
    assert body["tool_choice"] == {"type": "file_search"} and kinds(body) == ["file_search_call", "message"]


def test_a_failed_search_is_a_failed_call_the_model_hears_about(
    alice: openai.OpenAI, fake: FakeUpstream, embeddings: FakeEmbeddings, library: dict[str, str]
) -> None:
    fake.script(Reply(tool_calls=[search_call("router")]), Reply(text="The search failed, sorry."))
    embeddings.fail_status = 503  # the query cannot be embedded
    try:
        r = alice.responses.create(model="test-model", input="x", tools=[tool(library)], include=[RESULTS])  # type: ignore[list-item]
    finally:
        embeddings.fail_status = None
    assert r.status == "completed"
    assert [(i.type, getattr(i, "status", None)) for i in r.output] == [("file_search_call", "failed"),
                                                                        ("message", "completed")]  # fmt: skip
    assert r.output[0].results is None  # type: ignore[union-attr]  # not an empty success
    (told,) = tool_messages(fake.requests[-1]["body"])
    assert told.startswith("The file search failed: ") and "embedded" in told


def test_a_chain_reads_the_earlier_search_back(
    alice: openai.OpenAI, fake: FakeUpstream, library: dict[str, str]
) -> None:
    fake.script(Reply(tool_calls=[search_call("router reset")]), cite("router.txt"), Reply(text="As before [1]."))
    first = alice.responses.create(model="test-model", input="reset?", tools=[tool(library)])  # type: ignore[list-item]
    second = alice.responses.create(model="test-model", input="again?", previous_response_id=first.id,
                                    tools=[tool(library)])  # type: ignore[list-item]  # fmt: skip
    msgs = fake.requests[-1]["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant", "user"]
    assert ROUTER in msgs[2]["content"]
    # the earlier numbering still holds: [1] is a chunk of the earlier search
    note = cast(Any, second.output[0]).content[0].annotations[0]
    assert note.type == "file_citation" and note.file_id in {
        library[n] for n in ("router.txt", "payroll.md", "codes.txt")
    }


def test_websocket_mode_and_a_store_false_chain(
    alice: openai.OpenAI, fake: FakeUpstream, library: dict[str, str]
) -> None:
    fake.script(Reply(tool_calls=[search_call("router reset")]), cite("router.txt"), Reply(text="As I found."))
    with alice.responses.connect() as conn:
        conn.response.create(model="test-model", input="reset?", tools=[tool(library)], store=False)  # type: ignore[list-item]
        events = answer(conn)
        first = events[-1]["response"]
        conn.response.create(model="test-model", input="more", previous_response_id=first["id"], store=False)
        answer(conn)
        # an unknown store is the request's 404 error event; the connection stays usable
        unknown = {"type": "file_search", "vector_store_ids": ["vs_no"]}
        conn.response.create(model="test-model", input="x", tools=[unknown])  # type: ignore[list-item]
        (error,) = answer(conn)
    assert kinds(first) == ["file_search_call", "message"]
    assert first["output"][1]["content"][0]["annotations"][0]["type"] == "file_citation"
    assert "response.file_search_call.searching" in [e["type"] for e in events]
    # the connection keeps what the store:false search gave the model, for the next turn
    assert ROUTER in tool_messages(fake.requests[-1]["body"])[0]
    assert error["type"] == "error" and error["status"] == 404
    assert error["error"]["param"] == "tools[0].vector_store_ids"


def test_openai_agents_file_search_tool(fs_server: RespdServer, fake: FakeUpstream, library: dict[str, str]) -> None:
    """openai-agents' hosted ``FileSearchTool`` runs in respd: one response with the search and the answer."""
    set_tracing_disabled(True)
    fake.script(Reply(tool_calls=[search_call("router password reset")]), cite("router.txt"))

    async def main() -> Any:
        client = AsyncOpenAI(base_url=fs_server.url + "/v1", api_key="key-alice", max_retries=0, timeout=60)
        try:
            agent: Agent[Any] = Agent(
                name="Helpdesk", instructions="Answer from the handbook.", model=OpenAIResponsesModel("test-model", client),
                tools=[FileSearchTool(vector_store_ids=[library["store"]], max_num_results=3, include_search_results=True)],
                model_settings=ModelSettings(include_usage=True),
            )  # fmt: skip
            return await Runner.run(agent, "How do I reset my router?")
        finally:
            await client.close()

    result = asyncio.run(main())
    assert result.final_output.startswith("Hold the reset button [")
    assert [type(i).__name__ for i in result.new_items] == ["ToolCallItem", "MessageOutputItem"]
    call = result.new_items[0].raw_item
    assert call.type == "file_search_call" and call.status == "completed"
    assert call.results is not None and call.results[0].filename == "router.txt" and len(call.results) <= 3
    assert fake.requests[0]["body"]["tools"][0]["function"]["name"] == "file_search"
    message = result.new_items[1].raw_item
    assert message.content[0].annotations[0].file_id == library["router.txt"]


# -- a replica killed during the tool step (PostgreSQL, two servers) ----------------------------------------
@pytest.fixture
def pair(tmp_path: Path, fake: FakeUpstream, embeddings: FakeEmbeddings) -> Iterator[tuple[RespdServer, RespdServer]]:
    config = fs_config(tmp_path / "respd.toml", fake, embeddings, f"lease_s = {LEASE_S}\n")
    url = create_pg_database()
    a = start_server(tmp_path / "a", config, url, KEYS)
    b = start_server(tmp_path / "b", config, url, KEYS)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
        drop_pg_database(url)
        embeddings.delay_s = 0


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _taken_over(b: RespdServer, rid: str) -> dict[str, Any]:
    with client_of(b) as cb:
        done = wait_status(cb, rid, TERMINAL, timeout=LEASE_S * 15)
        assert done.status == "completed", done
        body = stored_json(cb, rid)
    events = sse(f"{b.url}/v1/responses/{rid}?stream=true", headers={"Authorization": "Bearer key-alice"})
    assert_continuous(events)
    assert plain(events)[-1]["response"] == body
    # one item per call and one answer: nothing lost, nothing repeated
    assert [e["type"] for e in events].count("response.output_item.added") == 2
    return body


def test_killed_during_the_search_runs_it_again_under_the_same_item(
    pair: tuple[RespdServer, RespdServer], fake: FakeUpstream, embeddings: FakeEmbeddings
) -> None:
    a, b = pair
    with client_of(a) as ca:
        library = make_library(ca)
        fake.script(Reply(tool_calls=[search_call("router reset")]), cite("router.txt"))
        before = embeddings.requests
        embeddings.delay_s = 1.5  # the query's embedding is slow: the call is in flight when a dies
        rid = ca.responses.create(model="test-model", input="reset?", tools=[tool(library)], background=True,  # type: ignore[list-item]
                                  include=[RESULTS]).id  # fmt: skip
    _wait(lambda: embeddings.requests > before, 10, "the search to start")
    a.kill()
    body = _taken_over(b, rid)
    assert embeddings.requests == before + 2  # run again, once, by the replica that took it over
    fs, msg = body["output"]
    assert fs["status"] == "completed" and fs["results"][0]["filename"] == "router.txt"
    assert msg["content"][0]["annotations"][0]["file_id"] == library["router.txt"]


def test_killed_after_the_search_goes_on_without_searching_again(
    pair: tuple[RespdServer, RespdServer], fake: FakeUpstream, embeddings: FakeEmbeddings
) -> None:
    a, b = pair
    with client_of(a) as ca:
        library = make_library(ca)
        fake.script(Reply(tool_calls=[search_call("router reset")]), Reply(fault="hang"), cite("router.txt"))
        before = embeddings.requests
        rid = ca.responses.create(model="test-model", input="reset?", tools=[tool(library)], background=True).id  # type: ignore[list-item]
    assert fake.wait_for_requests(2, timeout=10)  # the search is done and committed; the answer turn hangs
    a.kill()
    body = _taken_over(b, rid)
    assert embeddings.requests == before + 1  # the finished search was not run again
    assert kinds(body) == ["file_search_call", "message"]
    # the takeover's turn read the search from the store, with its numbering, and cited it
    assert body["output"][1]["content"][0]["annotations"][0]["filename"] == "router.txt"


@pytest.mark.usefixtures("node_modules")  # the JavaScript clients, installed
@pytest.mark.parametrize("stream", [False, True], ids=["generateText", "streamText"])
def test_vercel_ai_sdk_file_search_tool(fs_server: RespdServer, fake: FakeUpstream,
                                        library: dict[str, str], stream: bool) -> None:  # fmt: skip
    """The AI SDK's ``openai.tools.fileSearch`` provider tool: respd runs the search; the SDK reads the call and
    its results as a provider-executed tool call and result, and the file citation as a document source."""
    fake.script(Reply(tool_calls=[search_call("router password reset")]), cite("router.txt"))
    opts = {"baseURL": fs_server.url + "/v1", "apiKey": "key-alice", "model": "test-model",
            "vectorStoreIds": [library["store"]], "stream": stream}  # fmt: skip
    out = run_node("aisdk.mjs", "fileSearch", json.dumps(opts))
    assert out["text"].startswith("Hold the reset button [") and out["finishReason"] == "stop"
    (step,) = out["steps"]  # one response: the search ran inside it
    (called,) = step["toolCalls"]
    assert called["name"] == "file_search" and called["id"].startswith("fs_")
    (result,) = out["providerResults"]
    assert result["toolCallId"] == called["id"] and result["providerExecuted"] is True
    assert result["output"]["queries"] == ["router password reset"]
    top = result["output"]["results"][0]
    assert (top["fileId"], top["filename"]) == (library["router.txt"], "router.txt") and len(
        result["output"]["results"]
    ) <= 3
    (source,) = out["sources"]
    assert source["sourceType"] == "document" and source["filename"] == "router.txt"
    assert source["providerMetadata"]["openai"]["fileId"] == library["router.txt"]
    sent = fake.requests[0]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["file_search"]
    if stream:
        assert out["parts"].index("tool-call") < out["parts"].index("tool-result") < out["parts"].index("text-delta")
