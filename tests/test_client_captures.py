"""What real clients send (Codex CLI, the Vercel AI SDK, LangChain), replayed against respd.

``client_captures/`` holds request bodies captured from the clients themselves (see its README). Every one
is replayed as sent, with only ``model`` rewritten. What a capture holds that only the server it talked to
could have made (a response id, the id of an item that server stored, reasoning sealed with that server's
key) is replaced by what respd made in the turn before, as the client would have received it; the
captured blobs themselves must be refused with a clear 400.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from respd.backends.base import ToolCallDelta
from respd.engine.emitter import Emitter
from tests.checks import check_error, check_event, check_response, sse_events
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer
from tests.spec_schemas import validate_openai

CAPTURES = Path(__file__).parent / "client_captures"
MODEL = "test-model"
OMITTED_HEADER = "respd-omitted-tools"
# The built-in tools the test server runs itself, and the function the model is offered for each:
# code_interpreter (its sandbox, bubblewrap, comes from scripts/system-packages.sh). The rest are left out.
HOSTED_HERE = {"code_interpreter": "python"}


@dataclass(frozen=True)
class Capture:
    """One captured request body; ``file`` and ``index`` name it (a file may hold several)."""

    file: str
    index: int
    label: str
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        return self.file, self.index

    def request(self) -> dict[str, Any]:
        """The body to send: a copy of the capture with respd's model name."""
        return {**copy.deepcopy(self.body), "model": MODEL}


def _load() -> list[Capture]:
    out = []
    for path in sorted(CAPTURES.glob("*.json")):
        data = json.loads(path.read_text())
        entries = data if isinstance(data, list) else [{"label": path.stem, "body": data}]
        out += [Capture(path.name, i, e["label"], e["body"]) for i, e in enumerate(entries)]
    return out


CASES = _load()
BY_KEY = {c.key: c for c in CASES}

# A later turn -> the capture of the turn whose answer it sends back (by previous_response_id, an
# item_reference, or replayed items). aisdk #7 chains to a response that was not captured: any turn will do.
TURN_BEFORE = {
    ("codex-request-turn2-after-function-call.json", 0): ("codex-request.json", 0),
    ("codex-request-gpt-5.5-turn2-after-apply_patch.json", 0): ("codex-request-gpt-5.5.json", 0),
    ("aisdk-requests.json", 3): ("aisdk-requests.json", 2),
    ("aisdk-requests.json", 5): ("aisdk-requests.json", 4),
    ("aisdk-requests.json", 7): ("aisdk-requests.json", 0),
    ("langchain-requests.json", 3): ("langchain-requests.json", 2),
    ("langchain-requests.json", 6): ("langchain-requests.json", 5),
}


def _kind(item: dict[str, Any]) -> str:
    return str(item.get("type") or ("message" if "role" in item else "item_reference"))


def _needs_turn_before(body: dict[str, Any]) -> bool:
    """The body names something a server made: a response, a stored item, or a sealed reasoning item."""
    return "previous_response_id" in body or any(
        _kind(it) == "item_reference" or (_kind(it) == "reasoning" and "encrypted_content" in it)
        for it in body["input"]
    )


def _foreign_blobs(body: dict[str, Any]) -> list[int]:
    """Indexes of replayed reasoning items whose encrypted_content another server sealed."""
    return [i for i, it in enumerate(body["input"]) if _kind(it) == "reasoning" and "encrypted_content" in it]


def post(server: RespdServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json=body, timeout=30)


def _answer(r: httpx.Response, stream: bool) -> dict[str, Any]:
    """The Response of a 200, every event and the object itself held to the specs."""
    assert r.status_code == 200, r.text
    if not stream:
        return check_response(r.json())
    events = [check_event(e) for e in sse_events(r.text)]
    assert events[-1]["type"] == "response.completed", events[-1]
    return dict(events[-1]["response"])


# -- what the turn before said -------------------------------------------------------------------------------


def _flat(item: dict[str, Any]) -> str:
    return f"{item['namespace']}__{item['name']}" if item.get("namespace") else str(item["name"])


def _reply_before(later: dict[str, Any]) -> Reply:
    """The model's answer in the turn before ``later``: some reasoning, then the calls ``later`` sends back."""
    calls = []
    for item in later["input"]:
        if _kind(item) == "function_call":
            calls.append({"id": item["call_id"], "name": _flat(item), "arguments": item["arguments"]})
        elif _kind(item) == "custom_tool_call":
            calls.append({"id": item["call_id"], "name": _flat(item), "arguments": json.dumps({"input": item["input"]})})
    return Reply(text="" if calls else "Hello there.", reasoning="Let me think about it.", tool_calls=calls)


def _splice(later: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """``later`` as the client sends it after respd's ``before``: respd's ids and sealed reasoning in it."""
    body = copy.deepcopy(later)
    reasoning = next(it for it in before["output"] if it["type"] == "reasoning")
    if "previous_response_id" in body:
        body["previous_response_id"] = before["id"]
    for item in body["input"]:
        if _kind(item) == "item_reference" and item["id"].startswith("rs_"):
            item["id"] = reasoning["id"]
        elif _kind(item) == "reasoning":
            item["id"] = reasoning["id"]
            if "encrypted_content" in reasoning:
                item["encrypted_content"] = reasoning["encrypted_content"]
            else:  # asked for no encrypted_content (LangChain with store on): the client has none to send
                del item["encrypted_content"]
    return body


@dataclass
class Turn:
    """A request ready to send, and what it rests on: the items of the chain behind it."""

    body: dict[str, Any]
    history: list[dict[str, Any]]
    stored: dict[str, dict[str, Any]]  # items respd stored in the turn before, by id


def _prepare(server: RespdServer, fake: FakeUpstream, capture: Capture) -> Turn:
    """Run the turn before ``capture`` (if it has one) and splice its results in."""
    body = capture.request()
    if capture.key not in TURN_BEFORE:
        assert not _needs_turn_before(body), f"{capture.key} rests on a turn before it: add it to TURN_BEFORE"
        return Turn(body, [], {})
    first = BY_KEY[TURN_BEFORE[capture.key]].request()
    fake.script(_reply_before(body))
    before = _answer(post(server, first), bool(first.get("stream")))
    assert any(it["type"] == "reasoning" for it in before["output"])
    history = [*first["input"], *before["output"]] if "previous_response_id" in body else []
    return Turn(_splice(body, before), history, {it["id"]: it for it in before["output"]})


# -- what should reach the model ---------------------------------------------------------------------------


def _text(content: str | list[dict[str, Any]]) -> str:
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def _expected_messages(turn: Turn) -> list[tuple[str, Any, list[str]]]:
    """(role, text, tool call ids) of each chat message the context should become, in order."""
    body = turn.body
    out: list[tuple[str, Any, list[str]]] = [("system", body["instructions"], [])] if body.get("instructions") else []
    for item in [*turn.history, *body["input"]]:
        kind = _kind(item)
        if kind == "item_reference":
            item = turn.stored[item["id"]]
            kind = item["type"]
        if kind == "message":
            out.append(("system" if item["role"] == "developer" else item["role"], _text(item["content"]), []))
        elif kind in ("function_call", "custom_tool_call"):
            if out and out[-1][0] == "assistant":  # calls join the assistant message before them
                out[-1][2].append(item["call_id"])
            else:
                out.append(("assistant", None, [item["call_id"]]))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out.append(("tool", item["output"], [item["call_id"]]))
        else:
            assert kind in ("reasoning", "additional_tools"), kind  # no message: reasoning is not replayed
    return out


def _sent_messages(sent: dict[str, Any]) -> list[tuple[str, Any, list[str]]]:
    out = []
    for m in sent["messages"]:
        ids = [c["id"] for c in m.get("tool_calls") or ()] if m["role"] != "tool" else [m["tool_call_id"]]
        out.append((m["role"], m["content"], ids))
    return out


def _turn_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = list(body.get("tools") or ())
    for item in body["input"]:
        if _kind(item) in ("additional_tools", "tool_search_output"):
            tools += item["tools"]
    return tools


def _expected_tools(body: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The functions the model should be offered (by upstream name), and the built-in tool types left out."""
    offered: dict[str, dict[str, Any]] = {}
    omitted: list[str] = []
    for tool in _turn_tools(body):
        if tool["type"] == "namespace":
            offered |= {f"{tool['name']}__{t['name']}": t for t in tool["tools"]}
        elif tool["type"] in ("function", "custom"):
            offered[tool["name"]] = tool
        elif tool["type"] == "tool_search" and tool.get("execution") == "client":
            offered["tool_search"] = tool
        elif tool["type"] in HOSTED_HERE:
            offered[HOSTED_HERE[tool["type"]]] = tool
        elif tool["type"] not in omitted:
            omitted.append(tool["type"])
    return offered, omitted


def _check_upstream(turn: Turn, sent: dict[str, Any], r: httpx.Response) -> None:
    """The chat request carries the whole context in order, every tool, and the sampling the client asked for."""
    body = turn.body
    assert _sent_messages(sent) == _expected_messages(turn)
    offered, omitted = _expected_tools(body)
    functions = [t["function"] for t in sent.get("tools") or ()]
    assert [f["name"] for f in functions] == list(offered)
    for fn in functions:
        tool = offered[fn["name"]]
        if tool["type"] in HOSTED_HERE:  # respd's own function for it (tests/test_code_interpreter.py)
            assert fn["name"] == HOSTED_HERE[tool["type"]]
        elif tool["type"] == "custom":  # free text: one string parameter, the grammar in its description
            assert fn["parameters"]["required"] == ["input"]
            assert tool["format"]["definition"] in fn["parameters"]["properties"]["input"]["description"]
        else:
            assert fn["parameters"] == tool["parameters"]
            assert fn.get("description") == (tool.get("description") or None)
    assert r.headers.get(OMITTED_HEADER) == (",".join(omitted) or None)
    if offered:
        assert sent.get("tool_choice") == body.get("tool_choice")
        assert sent.get("parallel_tool_calls") == body.get("parallel_tool_calls")
    assert sent.get("stream", False) is bool(body.get("stream"))
    assert sent.get("reasoning_effort") == (body.get("reasoning") or {}).get("effort")
    assert sent.get("user") == body.get("user")
    fmt = (body.get("text") or {}).get("format")
    if fmt is not None:
        assert sent["response_format"]["json_schema"]["schema"] == fmt["schema"]


def _check_echo(body: dict[str, Any], response: dict[str, Any]) -> None:
    """The Response echoes the request: chain, storage, cache key, verbosity, the tools given in ``tools``."""
    assert response["model"] == MODEL
    assert response["previous_response_id"] == body.get("previous_response_id")
    assert response["store"] is body.get("store", True)
    assert response["prompt_cache_key"] == body.get("prompt_cache_key")
    assert response["metadata"] == body.get("metadata", {})
    assert response["text"]["verbosity"] == (body.get("text") or {}).get("verbosity", "medium")
    echoed = [t for t in body.get("tools") or () if t["type"] in ("function", "custom", "namespace", *HOSTED_HERE)
              or (t["type"] == "tool_search" and t.get("execution") == "client")]  # fmt: skip
    assert [t.get("name", t["type"]) for t in response["tools"]] == [t.get("name", t["type"]) for t in echoed]


def _check_stored_inputs(server: RespdServer, turn: Turn, response: dict[str, Any]) -> None:
    """A stored response lists its input items with the ids the client gave them (or the ones it referenced)."""
    r = httpx.get(f"{server.url}/v1/responses/{response['id']}/input_items", params={"order": "asc", "limit": 100})
    assert r.status_code == 200, r.text
    validate_openai("ResponseItemList", r.json())
    items = r.json()["data"]
    assert [it["type"] for it in items] == [turn.stored[it["id"]]["type"] if _kind(it) == "item_reference"
                                            else _kind(it) for it in turn.body["input"]]  # fmt: skip
    for sent, stored in zip(turn.body["input"], items, strict=True):
        if "id" in sent:
            assert stored["id"] == sent["id"]


# -- the replays ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capture", CASES, ids=[f"{c.file.removesuffix('.json')}#{c.index}" for c in CASES])
def test_capture_is_served(server: RespdServer, fake: FakeUpstream, capture: Capture) -> None:
    turn = _prepare(server, fake, capture)
    body = turn.body
    fake.script(Reply(text="All done."))
    r = post(server, body)
    response = _answer(r, bool(body.get("stream")))
    assert response["status"] == "completed"
    assert [it["type"] for it in response["output"]] == ["message"]
    assert response["output"][0]["content"][0]["text"] == "All done."
    _check_echo(body, response)
    _check_upstream(turn, fake.requests[-1]["body"], r)
    if body.get("store", True):
        _check_stored_inputs(server, turn, response)


FOREIGN = [c for c in CASES if _foreign_blobs(c.body)]


@pytest.mark.parametrize("capture", FOREIGN, ids=[f"{c.file.removesuffix('.json')}#{c.index}" for c in FOREIGN])
def test_reasoning_sealed_by_another_server_is_a_400(server: RespdServer, fake: FakeUpstream, capture: Capture) -> None:
    """The captures' encrypted_content came from another server: respd cannot read it, and says so."""
    r = post(server, capture.request())
    index = _foreign_blobs(capture.body)[0]
    check_error(r, 400, param=f"input[{index}].encrypted_content", code="invalid_encrypted_content")
    assert fake.requests == []


def test_every_capture_is_replayed() -> None:
    """Nothing in ``client_captures/`` is skipped: 5 Codex turns, 8 AI SDK and 8 LangChain requests."""
    assert len(CASES) == 21
    assert {c.key for c in FOREIGN} == {("codex-request-turn2-after-function-call.json", 0), ("aisdk-requests.json", 5),
                                        ("codex-request-gpt-5.5-turn2-after-apply_patch.json", 0), ("langchain-requests.json", 3)}  # fmt: skip
    assert all(c.key in TURN_BEFORE or not _needs_turn_before(c.body) for c in CASES)


def test_item_reference_to_an_item_respd_never_stored_is_a_404(server: RespdServer, fake: FakeUpstream) -> None:
    body = BY_KEY["aisdk-requests.json", 3].request()
    check_error(post(server, body), 404, param="input[1].id")
    assert fake.requests == []


# -- tool search run by the client (Codex) -----------------------------------------------------------------

GPT55 = ("codex-request-gpt-5.5.json", 0)


def _namespace(name: str) -> dict[str, Any]:
    """The multi_agent_v1 namespace Codex defers (it is in the first Codex capture's ``tools``)."""
    return next(t for t in BY_KEY["codex-request.json", 0].body["tools"] if t.get("name") == name)


@pytest.mark.parametrize("stream", [True, False])
def test_client_tool_search_round_trip(server: RespdServer, fake: FakeUpstream, stream: bool) -> None:
    body = {**BY_KEY[GPT55].request(), "stream": stream}
    search = next(t for t in body["tools"] if t["type"] == "tool_search")
    fake.script(Reply(reasoning="I need sub-agents.",
                      tool_calls=[{"id": "call_ts", "name": "tool_search", "arguments": '{"query":"sub-agents","limit":4}'}]))  # fmt: skip
    r = post(server, body)
    offered = {t["function"]["name"]: t["function"] for t in fake.requests[-1]["body"]["tools"]}
    assert offered["tool_search"]["parameters"] == search["parameters"]
    assert offered["tool_search"]["description"] == search["description"]
    assert r.headers[OMITTED_HEADER] == "web_search"
    if stream:
        events = [check_event(e) for e in sse_events(r.text)]
        added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
        assert [it["type"] for it in added] == ["reasoning", "tool_search_call"]
        assert added[1]["status"] == "in_progress"
        assert not [e for e in events if "function_call_arguments" in e["type"]]
        response = events[-1]["response"]
    else:
        response = check_response(r.json())
    reasoning, call = response["output"]
    assert call["type"] == "tool_search_call" and call["id"].startswith("tsc_")
    assert (call["call_id"], call["execution"], call["status"]) == ("call_ts", "client", "completed")
    assert call["arguments"] == {"query": "sub-agents", "limit": 4}
    assert [t["type"] for t in response["tools"]].count("tool_search") == 1

    # Turn 2, as Codex sends it: the history again, the search call, and the tools the client found.
    agents = _namespace("multi_agent_v1")
    found = {"type": "tool_search_output", "call_id": "call_ts", "execution": "client", "status": "completed",
             "tools": [agents]}  # fmt: skip
    replayed = {"type": "reasoning", "id": reasoning["id"], "summary": [], "content": None,
                "encrypted_content": reasoning["encrypted_content"]}  # fmt: skip
    body["input"] += [replayed, call, found]
    fake.script(Reply(tool_calls=[{"id": "call_sp", "name": "multi_agent_v1__spawn_agent", "arguments": '{"message":"hi"}'}]))
    response = _answer(post(server, body), stream)
    sent = fake.requests[-1]["body"]
    assert sent["messages"][-2]["tool_calls"] == [
        {"id": "call_ts", "type": "function", "function": {"name": "tool_search", "arguments": '{"query":"sub-agents","limit":4}'}}]  # fmt: skip
    tool_message = sent["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_ts"
    loaded = json.loads(tool_message["content"])["loaded_tools"]
    assert [t["name"] for t in loaded] == [f"multi_agent_v1__{t['name']}" for t in agents["tools"]]
    names = [t["function"]["name"] for t in sent["tools"]]
    assert {f"multi_agent_v1__{t['name']}" for t in agents["tools"]} <= set(names)
    assert len(names) == len(set(names))
    (spawn,) = response["output"]
    assert (spawn["type"], spawn["namespace"], spawn["name"]) == ("function_call", "multi_agent_v1", "spawn_agent")


def test_tool_search_output_after_previous_response(server: RespdServer, fake: FakeUpstream) -> None:
    """Chained by previous_response_id, the output alone comes back: it answers the stored search call."""
    body = {**BY_KEY[GPT55].request(), "stream": False, "store": True}
    fake.script(Reply(tool_calls=[{"id": "call_t2", "name": "tool_search", "arguments": '{"query":"agents"}'}]))
    first = check_response(post(server, body).json())
    found = {"type": "tool_search_output", "call_id": "call_t2", "tools": [_namespace("multi_agent_v1")]}
    r = post(server, {"model": MODEL, "previous_response_id": first["id"], "tools": body["tools"], "input": [found]})
    check_response(r.json())
    sent = fake.requests[-1]["body"]
    assert [m["role"] for m in sent["messages"][-2:]] == ["assistant", "tool"]
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "tool_search"
    assert "multi_agent_v1__spawn_agent" in [t["function"]["name"] for t in sent["tools"]]
    items = httpx.get(f"{server.url}/v1/responses/{r.json()['id']}/input_items").json()
    validate_openai("ResponseItemList", items)
    (stored,) = items["data"]
    assert (stored["type"], stored["call_id"], stored["execution"]) == ("tool_search_output", "call_t2", "client")
    assert stored["id"].startswith("tso_") and stored["status"] == "completed"


def test_tool_search_output_must_answer_a_search(server: RespdServer, fake: FakeUpstream) -> None:
    body = BY_KEY[GPT55].request()
    body["input"].append({"type": "tool_search_output", "call_id": "call_nope", "tools": []})
    check_error(post(server, body), 400, param=f"input[{len(body['input']) - 1}].call_id")
    assert fake.requests == []


def test_tool_search_arguments_that_are_no_object_are_kept() -> None:
    """A model that sent broken arguments: the call keeps its text, so the client sees what went wrong."""
    emitter = Emitter({"output": [], "status": "in_progress"})
    emitter.feed(ToolCallDelta(0, "call_x", "tool_search", '{"query": ', kind="tool_search"))
    (done,) = [e for e in emitter.finish() if e["type"] == "response.output_item.done"]
    assert done["item"]["arguments"] == '{"query": '


# -- tools that ride in an input item (Codex for its newest models) --------------------------------------------

SOL = ("codex-request-gpt-6.1-sol.json", 0)


def test_additional_tools_are_offered_not_said_and_stored(server: RespdServer, fake: FakeUpstream) -> None:
    body = {**BY_KEY[SOL].request(), "store": True}
    fake.script(Reply(tool_calls=[{"id": "call_js", "name": "functions__exec",
                                   "arguments": json.dumps({"input": "console.log('hi')"})}]))  # fmt: skip
    response = _answer(post(server, body), True)
    sent = fake.requests[-1]["body"]
    extra = body["input"][0]
    names = [t["function"]["name"] for t in sent["tools"]]
    assert names == [f"{ns['name']}__{t['name']}" for ns in extra["tools"] for t in ns["tools"]]
    assert len(sent["messages"]) == len(body["input"]) - 1  # every message, and nothing for the tools item
    assert response["tools"] == []  # the Response echoes `tools`; these are part of the input
    (call,) = response["output"]
    assert (call["type"], call["namespace"], call["name"], call["input"]) == (
        "custom_tool_call", "functions", "exec", "console.log('hi')")  # fmt: skip
    items = httpx.get(f"{server.url}/v1/responses/{response['id']}/input_items", params={"order": "asc"}).json()
    validate_openai("ResponseItemList", items)
    stored = items["data"][0]
    assert (stored["type"], stored["id"], stored["role"]) == ("additional_tools", extra["id"], "developer")
    assert [t["name"] for t in stored["tools"]] == [t["name"] for t in extra["tools"]]
