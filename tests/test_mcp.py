"""The ``mcp`` hosted tool end to end: a real MCP server, respd, the scripted upstream.

Listing, calls and answers in JSON, stream and background; a list reused from the chain; allowed_tools;
approvals through previous_response_id and through full history with store off; failures that the model
reads about; the outbound policy; credentials neither stored in clear nor echoed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.checks import check_error, check_response, create_response
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.mcp_server import TestMcpServer
from tests.servers import RespdServer, write_config

TOKEN = "mcp-user-token-123"


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[TestMcpServer]:
    with TestMcpServer() as srv:
        yield srv


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def mcp_respd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream,
              mcp_server: TestMcpServer) -> Iterator[RespdServer]:  # fmt: skip
    """respd allowed to reach 127.0.0.1, with the test server also configured as a connector."""
    tmp = tmp_path_factory.mktemp(f"respd-mcp-{request.param}")
    extra = f'''outbound_allow = ["127.0.0.1:*"]

[[mcp_servers]]
connector_id = "connector_sharepoint"
url = "{mcp_server.url}"
authorization_env = "MCP_CONNECTOR_TOKEN"
'''
    config = write_config(tmp / "respd.toml", fake.base_url, extra)
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server = start_server(tmp, config, url, env={"MCP_CONNECTOR_TOKEN": "operator-secret"})
    yield server
    server.stop()


def tool(mcp_server: TestMcpServer, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "srv", "server_url": mcp_server.url, "authorization": TOKEN,
            "require_approval": "never", **extra}  # fmt: skip


def call(name: str, args: dict[str, Any], call_id: str = "call_1") -> Reply:
    return Reply(tool_calls=[{"id": call_id, "name": name, "arguments": json.dumps(args)}])


def post(server: RespdServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json=body, timeout=30)


def create(server: RespdServer, body: dict[str, Any], stream: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return create_response(server.url, body, stream)


def kinds(response: dict[str, Any]) -> list[str]:
    return [item["type"] for item in response["output"]]


@pytest.mark.parametrize("stream", [False, True])
def test_list_call_answer(mcp_respd: RespdServer, mcp_server: TestMcpServer, fake: FakeUpstream, stream: bool) -> None:
    fake.script(call("srv__add", {"a": 2, "b": 3}), Reply(text="The sum is 5."))
    before = mcp_server.calls["add"]
    response, events = create(mcp_respd, {"model": "test-model", "input": "2+3?", "tools": [tool(mcp_server)]}, stream)
    assert kinds(response) == ["mcp_list_tools", "mcp_call", "message"] and response["status"] == "completed"
    listing, mcp_call, _ = response["output"]
    assert listing["id"].startswith("mcpl_") and listing["server_label"] == "srv"
    assert {t["name"] for t in listing["tools"]} == {"add", "echo", "slow", "fail", "delete_file"}
    assert mcp_call["id"].startswith("mcp_") and mcp_call["status"] == "completed"
    assert (mcp_call["name"], json.loads(mcp_call["arguments"]), mcp_call["output"]) == ("add", {"a": 2, "b": 3}, "5")
    assert mcp_server.calls["add"] == before + 1
    assert mcp_server.headers[-1]["authorization"] == f"Bearer {TOKEN}"
    offered = [t["function"]["name"] for t in fake.requests[0]["body"]["tools"]]
    assert set(offered) == {"srv__add", "srv__echo", "srv__slow", "srv__fail", "srv__delete_file"}
    assert fake.requests[1]["body"]["messages"][-1] == {"role": "tool", "tool_call_id": mcp_call["id"], "content": "5"}
    assert response["tools"] == [{"type": "mcp", "server_label": "srv", "server_url": mcp_server.url,
                                  "require_approval": "never"}]  # fmt: skip
    if stream:
        order = [e["type"] for e in events if "mcp" in e["type"] or e["type"].startswith("response.output_item")]
        assert order[:4] == ["response.output_item.added", "response.mcp_list_tools.in_progress",
                             "response.mcp_list_tools.completed", "response.output_item.done"]  # fmt: skip
        assert order[4:10] == ["response.output_item.added", "response.mcp_call_arguments.delta",
                               "response.mcp_call_arguments.done", "response.mcp_call.in_progress",
                               "response.mcp_call.completed", "response.output_item.done"]  # fmt: skip
    stored = httpx.get(f"{mcp_respd.url}/v1/responses/{response['id']}", timeout=10).json()
    assert check_response(stored)["output"] == response["output"] and TOKEN not in json.dumps(stored)


def test_background_and_a_list_reused_from_the_chain(mcp_respd: RespdServer, mcp_server: TestMcpServer,
                                                    fake: FakeUpstream) -> None:  # fmt: skip
    fake.script(call("srv__echo", {"text": "hi"}), Reply(text="Echoed."), call("srv__add", {"a": 1, "b": 1}),
                Reply(text="Two."))  # fmt: skip
    r = post(mcp_respd, {"model": "test-model", "input": "echo hi", "tools": [tool(mcp_server)], "background": True})
    # accepted as a job: "in_progress" when this replica started it at once, "queued" while it waits
    assert r.status_code == 200 and r.json()["status"] in ("queued", "in_progress")
    first = _wait(mcp_respd, r.json()["id"])
    assert kinds(first) == ["mcp_list_tools", "mcp_call", "message"] and first["output"][1]["output"] == "hi"
    second, _ = create(mcp_respd, {"model": "test-model", "input": "1+1?", "previous_response_id": first["id"],
                                   "tools": [tool(mcp_server)]})  # fmt: skip
    assert kinds(second) == ["mcp_call", "message"]  # the chain's list is reused: no new mcp_list_tools
    assert second["output"][0]["output"] == "2"


def _wait(server: RespdServer, rid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/v1/responses/{rid}", timeout=10).json()
        if body["status"] not in ("queued", "in_progress"):
            return check_response(body)
        time.sleep(0.1)
    raise AssertionError(f"response {rid} did not finish")


def test_allowed_tools_and_a_connector(mcp_respd: RespdServer, mcp_server: TestMcpServer, fake: FakeUpstream) -> None:
    fake.script(call("docs__echo", {"text": "via connector"}), Reply(text="Done."))
    entry = {"type": "mcp", "server_label": "docs", "connector_id": "connector_sharepoint", "require_approval": "never",
             "allowed_tools": ["echo", "add"]}  # fmt: skip
    response, _ = create(mcp_respd, {"model": "test-model", "input": "x", "tools": [entry]})
    assert [t["function"]["name"] for t in fake.requests[0]["body"]["tools"]] == ["docs__add", "docs__echo"]
    assert response["output"][1]["output"] == "via connector"
    assert mcp_server.headers[-1]["authorization"] == "Bearer operator-secret"
    bad = post(mcp_respd, {"model": "test-model", "input": "x", "tools": [{**entry, "connector_id": "nope"}]})
    check_error(bad, 400, param="tools[0].connector_id")


@pytest.mark.parametrize("via", ["chain", "history without store", "conversation"])
def test_approval_then_call(mcp_respd: RespdServer, mcp_server: TestMcpServer, fake: FakeUpstream, via: str) -> None:
    fake.script(call("srv__delete_file", {"path": "a.txt"}), Reply(text="Deleted a.txt."))
    guarded = tool(mcp_server, require_approval={"never": {"read_only": True}})
    before = mcp_server.calls["delete_file"]
    body: dict[str, Any] = {"model": "test-model", "input": "delete a.txt", "tools": [guarded],
                            "store": via != "history without store"}  # fmt: skip
    if via == "conversation":
        body["conversation"] = httpx.post(f"{mcp_respd.url}/v1/conversations", json={}, timeout=10).json()["id"]
    first, _ = create(mcp_respd, body)
    assert kinds(first) == ["mcp_list_tools", "mcp_approval_request"] and first["status"] == "completed"
    request = first["output"][1]
    assert request["id"].startswith("mcpr_") and request["name"] == "delete_file"
    assert json.loads(request["arguments"]) == {"path": "a.txt"} and mcp_server.calls["delete_file"] == before
    answer = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    if via == "chain":
        second, _ = create(mcp_respd, {"model": "test-model", "previous_response_id": first["id"], "input": [answer],
                                       "tools": [guarded]})  # fmt: skip
    elif via == "conversation":
        second, _ = create(mcp_respd, {"model": "test-model", "conversation": body["conversation"], "input": [answer],
                                       "tools": [guarded]})  # fmt: skip
    else:
        history = [{"role": "user", "content": "delete a.txt"}, *first["output"], answer]
        second, _ = create(mcp_respd, {"model": "test-model", "input": history, "tools": [guarded], "store": False})
    assert kinds(second) == ["mcp_call", "message"]
    assert second["output"][0]["approval_request_id"] == request["id"]
    assert second["output"][0]["output"] == "deleted a.txt" and mcp_server.calls["delete_file"] == before + 1
    msgs = fake.requests[-1]["body"]["messages"]
    assert msgs[-2]["tool_calls"][0]["id"] == request["id"]
    assert msgs[-1] == {"role": "tool", "tool_call_id": request["id"], "content": "deleted a.txt"}


def test_declined_and_unknown_approvals(mcp_respd: RespdServer, mcp_server: TestMcpServer, fake: FakeUpstream) -> None:
    fake.script(call("srv__delete_file", {"path": "b.txt"}), Reply(text="I did not delete it."))
    guarded = tool(mcp_server, require_approval="always")
    first, _ = create(mcp_respd, {"model": "test-model", "input": "delete b.txt", "tools": [guarded]})
    before = mcp_server.calls["delete_file"]
    request_id = first["output"][-1]["id"]
    no = {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": False, "reason": "keep it"}
    second, _ = create(mcp_respd, {"model": "test-model", "previous_response_id": first["id"], "input": [no],
                                   "tools": [guarded]})  # fmt: skip
    assert kinds(second) == ["message"] and mcp_server.calls["delete_file"] == before
    assert "declined" in fake.requests[-1]["body"]["messages"][-1]["content"]
    unknown = {**no, "approval_request_id": "mcpr_nope"}
    r = post(mcp_respd, {"model": "test-model", "previous_response_id": first["id"], "input": [unknown],
                         "tools": [guarded]})  # fmt: skip
    check_error(r, 400, param="input[0].approval_request_id")


def test_tool_errors_and_a_server_gone_are_failed_calls(mcp_respd: RespdServer, fake: FakeUpstream) -> None:
    with TestMcpServer() as doomed:
        fake.script(call("srv__fail", {"reason": "disk full"}), Reply(text="It failed."))
        entry = tool(doomed, require_approval={"always": {"tool_names": ["echo"]}})
        failed, _ = create(mcp_respd, {"model": "test-model", "input": "x", "tools": [entry]})
        assert kinds(failed) == ["mcp_list_tools", "mcp_call", "message"] and failed["status"] == "completed"
        assert failed["output"][1]["status"] == "failed"
        assert failed["output"][1]["error"]["type"] == "mcp_tool_execution_error"
        fake.script(call("srv__echo", {"text": "x"}))
        asked, _ = create(mcp_respd, {"model": "test-model", "input": "echo", "tools": [entry]})
    # the server is gone when the approved call runs
    fake.script(Reply(text="The server is down."))
    approve = {"type": "mcp_approval_response", "approval_request_id": asked["output"][-1]["id"], "approve": True}
    gone, _ = create(mcp_respd, {"model": "test-model", "previous_response_id": asked["id"], "input": [approve],
                                 "tools": [entry]})  # fmt: skip
    assert kinds(gone) == ["mcp_call", "message"] and gone["status"] == "completed"
    assert gone["output"][0]["status"] == "failed" and gone["output"][0]["error"]["code"] == -32000
    assert "failed" in fake.requests[-1]["body"]["messages"][-1]["content"]


def test_listing_failure_is_an_item_and_the_model_answers(mcp_respd: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="No tools today."))
    entry = {"type": "mcp", "server_label": "gone", "server_url": "http://127.0.0.1:9/mcp", "require_approval": "never"}
    response, events = create(mcp_respd, {"model": "test-model", "input": "x", "tools": [entry]}, stream=True)
    assert kinds(response) == ["mcp_list_tools", "message"] and response["status"] == "completed"
    assert response["output"][0]["error"] and response["output"][0]["tools"] == []
    assert "response.mcp_list_tools.failed" in [e["type"] for e in events]


def test_url_policy(server: RespdServer, tmp_path: Path, fake: FakeUpstream) -> None:
    entry = {"type": "mcp", "server_label": "pg", "server_url": "http://127.0.0.1:5432/", "require_approval": "never"}
    refused = post(server, {"model": "test-model", "input": "x", "tools": [entry]})
    err = check_error(refused, 400, param="tools[0].server_url")
    assert "127.0.0.1" in err["message"] and fake.requests == []
    config = write_config(tmp_path / "respd.toml", fake.base_url, 'outbound_allow = ["127.0.0.1:5432"]\n')
    allowed = start_server(tmp_path, config, f"sqlite:///{tmp_path / 'respd.db'}")
    try:
        fake.script(Reply(text="That is no MCP server."))
        response, _ = create(allowed, {"model": "test-model", "input": "x", "tools": [entry]})
        listing = response["output"][0]
        assert listing["type"] == "mcp_list_tools" and "not allowed" not in listing["error"]  # respd did connect
    finally:
        allowed.stop()


def test_a_background_request_stores_credentials_sealed(mcp_respd: RespdServer, mcp_server: TestMcpServer,
                                                        fake: FakeUpstream) -> None:  # fmt: skip
    if not mcp_respd.database_url.startswith("sqlite"):
        pytest.skip("the job row is read with sqlite3")
    import sqlite3

    fake.script(call("srv__slow", {"seconds": 1.5}), Reply(text="Done waiting."))
    entry = tool(mcp_server, headers={"X-Api-Key": "header-secret-456"})
    r = post(mcp_respd, {"model": "test-model", "input": "wait", "tools": [entry], "background": True})
    rid = r.json()["id"]
    with sqlite3.connect(mcp_respd.database_url.removeprefix("sqlite:///")) as db:
        (stored,) = db.execute("SELECT request FROM jobs WHERE response_id = ?", (rid,)).fetchone()
    assert TOKEN not in stored and "header-secret-456" not in stored and stored.count("respd-sealed:") == 2
    done = _wait(mcp_respd, rid)
    assert done["output"][1]["output"] == "finally" and mcp_server.headers[-1]["x-api-key"] == "header-secret-456"
    assert "header-secret-456" not in json.dumps(done)


def test_tool_choice_forces_the_named_mcp_tool(mcp_respd: RespdServer, mcp_server: TestMcpServer,
                                               fake: FakeUpstream) -> None:  # fmt: skip
    fake.script(call("srv__add", {"a": 1, "b": 2}), Reply(text="3"))
    choice = {"type": "mcp", "server_label": "srv", "name": "add"}
    first, _ = create(mcp_respd, {"model": "test-model", "input": "1+2?", "tools": [tool(mcp_server)],
                                  "tool_choice": choice})  # fmt: skip
    assert kinds(first) == ["mcp_list_tools", "mcp_call", "message"] and first["tool_choice"] == choice
    forced, then = (r["body"].get("tool_choice") for r in fake.requests[-2:])
    assert forced == {"type": "function", "function": {"name": "srv__add"}}  # that tool, not just "some tool"
    assert then in (None, "auto")  # the model may answer after the call
    # without a name: any of the server's allowed tools, and only those
    fake.script(call("srv__echo", {"text": "x"}), Reply(text="x"))
    create(mcp_respd, {"model": "test-model", "input": "x", "tools": [tool(mcp_server, allowed_tools=["echo", "add"])],
                       "tool_choice": {"type": "mcp", "server_label": "srv"}})  # fmt: skip
    forced = fake.requests[-2]["body"]  # allowed_tools, as a Chat Completions upstream gets it
    assert forced["tool_choice"] == "required"
    assert sorted(t["function"]["name"] for t in forced["tools"]) == ["srv__add", "srv__echo"]


def test_tool_choice_naming_an_unlisted_mcp_tool(mcp_respd: RespdServer, mcp_server: TestMcpServer,
                                                 fake: FakeUpstream) -> None:  # fmt: skip
    choice = {"type": "mcp", "server_label": "srv", "name": "no_such_tool"}
    body = {"model": "test-model", "input": "x", "tools": [tool(mcp_server)], "tool_choice": choice}
    failed, _ = create(mcp_respd, body)  # listed during the run: the response fails, the model is never asked
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_prompt" and fake.requests == []
    assert "no_such_tool" in failed["error"]["message"] and kinds(failed) == ["mcp_list_tools"]
    # with the listing already in the chain, it is a 400 before anything runs
    r = post(mcp_respd, {**body, "previous_response_id": failed["id"]})
    check_error(r, 400, param="tool_choice.name")
    r = post(mcp_respd, {**body, "tool_choice": {"type": "mcp", "server_label": "other"}})
    check_error(r, 400, param="tool_choice.server_label")
    assert fake.requests == []


def test_two_mcp_tools_with_one_server_label(server: RespdServer, fake: FakeUpstream) -> None:
    first = {"type": "mcp", "server_label": "wiki", "server_url": "https://mcp.example.com/mcp"}
    second = {**first, "server_url": "https://other.example.com/mcp"}
    r = post(server, {"model": "test-model", "input": "x", "tools": [first, second]})
    err = check_error(r, 400, param="tools[1].server_label")
    assert "wiki" in err["message"] and fake.requests == []
