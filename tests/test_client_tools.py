"""Client-executed built-in tools (computer_use_preview, local_shell, shell, apply_patch) over any model.

Each is offered to the scripted upstream as a function, its call comes back as the real item type, and
the client's output goes back to the model as a tool result, chained like a function call.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.checks import check_error, check_response, create_response
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer

COMPUTER = {"type": "computer_use_preview", "environment": "browser", "display_width": 1024, "display_height": 768}
SCREENSHOT = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def post(server: RespdServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json=body, timeout=20)


def call(name: str, args: dict[str, Any] | str, call_id: str = "call_1") -> Reply:
    arguments = args if isinstance(args, str) else json.dumps(args)
    return Reply(tool_calls=[{"id": call_id, "name": name, "arguments": arguments}])


def offered(fake: FakeUpstream) -> dict[str, Any]:
    return {t["function"]["name"]: t["function"] for t in fake.requests[-1]["body"]["tools"]}


def run(server: RespdServer, body: dict[str, Any], stream: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return create_response(server.url, body, stream)


@pytest.mark.parametrize("stream", [False, True])
def test_computer_call_round_trip_with_a_screenshot(server: RespdServer, fake: FakeUpstream, stream: bool) -> None:
    fake.script(call("computer", {"type": "click", "x": 120, "y": 40}), Reply(text="Clicked the button."))
    first, events = run(server, {"model": "test-model", "input": "Click Submit", "tools": [COMPUTER]}, stream)
    fn = offered(fake)["computer"]
    assert "browser" in fn["description"] and "1024x768" in fn["description"]
    assert "click" in fn["parameters"]["properties"]["type"]["enum"]
    (item,) = first["output"]
    assert item["type"] == "computer_call" and item["id"].startswith("cu_") and item["call_id"] == "call_1"
    assert item["action"] == {"type": "click", "button": "left", "x": 120, "y": 40, "keys": None}
    assert item["pending_safety_checks"] == [] and item["status"] == "completed"
    assert first["tools"] == [COMPUTER]
    if stream:
        kinds = [e["type"] for e in events]
        assert kinds[2:4] == ["response.output_item.added", "response.output_item.done"]
        assert not any("function_call" in k for k in kinds)
        assert events[3]["item"] == item
    second, _ = run(server, {"model": "test-model", "previous_response_id": first["id"], "tools": [COMPUTER], "input": [
        {"type": "computer_call_output", "call_id": "call_1",
         "output": {"type": "computer_screenshot", "image_url": SCREENSHOT}}]}, stream)  # fmt: skip
    assert second["output"][0]["content"][0]["text"] == "Clicked the button."
    msgs = fake.requests[-1]["body"]["messages"]
    assert msgs[1]["tool_calls"][0]["function"] == {"name": "computer", "arguments": '{"type":"click","button":"left","x":120,"y":40}'}
    assert msgs[2]["role"] == "tool" and msgs[2]["tool_call_id"] == "call_1"
    assert msgs[3]["role"] == "user" and msgs[3]["content"][1] == {"type": "image_url", "image_url": {"url": SCREENSHOT}}


def test_computer_actions_are_read_leniently_and_tool_choice_forces_the_function(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(call("computer", {"type": "scroll", "x": "10", "y": 5, "scroll_y": 300}),
                call("computer", {"type": "keypress", "keys": "ENTER"}), call("computer", "not json"))  # fmt: skip
    scroll = check_response(post(server, {"model": "test-model", "input": "x", "tools": [COMPUTER],
                                          "tool_choice": {"type": "computer_use_preview"}}).json())  # fmt: skip
    assert fake.requests[-1]["body"]["tool_choice"] == {"type": "function", "function": {"name": "computer"}}
    assert scroll["tool_choice"] == {"type": "computer_use_preview"}
    assert scroll["output"][0]["action"] == {"type": "scroll", "x": 10, "y": 5, "scroll_x": 0, "scroll_y": 300, "keys": None}
    keys = check_response(post(server, {"model": "test-model", "input": "x", "tools": [COMPUTER]}).json())
    assert keys["output"][0]["action"] == {"type": "keypress", "keys": ["ENTER"]}
    broken = check_response(post(server, {"model": "test-model", "input": "x", "tools": [COMPUTER]}).json())
    assert broken["output"][0]["action"] == {"type": "screenshot"}


@pytest.mark.parametrize("stream", [False, True])
def test_local_shell_call_round_trip(server: RespdServer, fake: FakeUpstream, stream: bool) -> None:
    fake.script(call("local_shell", {"command": ["ls", "-la"], "working_directory": "/tmp"}), Reply(text="Two files."))
    first, events = run(server, {"model": "test-model", "input": "List files", "tools": [{"type": "local_shell"}]}, stream)
    assert offered(fake)["local_shell"]["parameters"]["required"] == ["command"]
    (item,) = first["output"]
    assert item["type"] == "local_shell_call" and item["id"].startswith("lsh_")
    assert item["action"] == {"type": "exec", "command": ["ls", "-la"], "env": {}, "timeout_ms": None,
                              "working_directory": "/tmp", "user": None}  # fmt: skip
    if stream:
        added = next(e for e in events if e["type"] == "response.output_item.added")
        assert added["item"]["status"] == "in_progress" and added["item"]["action"]["command"] == []
    # The spec's output item names the call by `id`.
    second, _ = run(server, {"model": "test-model", "previous_response_id": first["id"], "tools": [{"type": "local_shell"}],
                             "input": [{"type": "local_shell_call_output", "id": "call_1", "output": "a.txt\nb.txt"}]}, stream)  # fmt: skip
    assert second["output"][0]["content"][0]["text"] == "Two files."
    msgs = fake.requests[-1]["body"]["messages"]
    assert json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"]) == {"command": ["ls", "-la"], "working_directory": "/tmp"}
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"}


def test_local_shell_command_as_a_string_and_answered_with_function_call_output(client: openai.OpenAI, fake: FakeUpstream) -> None:
    # Codex answers local_shell calls with function_call_output items.
    fake.script(call("local_shell", {"command": "ls | wc -l"}, "call_ls"), Reply(text="2"))
    first = client.responses.create(model="test-model", input="count", tools=[{"type": "local_shell"}])
    item = first.output[0]
    assert item.type == "local_shell_call" and item.action.command == ["bash", "-lc", "ls | wc -l"]
    second = client.responses.create(model="test-model", previous_response_id=first.id, tools=[{"type": "local_shell"}],
                                     input=[{"type": "function_call_output", "call_id": "call_ls", "output": "2"}])  # fmt: skip
    assert second.output_text == "2"


@pytest.mark.parametrize("stream", [False, True])
def test_shell_call_round_trip_as_full_history_without_store(server: RespdServer, fake: FakeUpstream, stream: bool) -> None:
    fake.script(call("shell", {"commands": ["pwd", "ls"], "timeout_ms": 5000}), Reply(text="Done."))
    tools = [{"type": "shell", "environment": {"type": "local"}}]
    first, events = run(server, {"model": "test-model", "input": "Where am I?", "tools": tools, "store": False}, stream)
    (item,) = first["output"]
    assert item["type"] == "shell_call" and item["id"].startswith("sh_") and item["environment"] is None
    assert item["action"] == {"commands": ["pwd", "ls"], "timeout_ms": 5000, "max_output_length": None}
    if stream:
        commands = [(e["type"].rsplit(".", 1)[1], e["command_index"]) for e in events if "shell_call_command" in e["type"]]
        assert commands == [("added", 0), ("delta", 0), ("done", 0), ("added", 1), ("delta", 1), ("done", 1)]
        assert [e["command"] for e in events if e["type"] == "response.shell_call_command.done"] == ["pwd", "ls"]
    output = {"type": "shell_call_output", "call_id": "call_1", "max_output_length": None, "output": [
        {"stdout": "/home\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}},
        {"stdout": "", "stderr": "denied", "outcome": {"type": "timeout"}}]}  # fmt: skip
    history = [{"role": "user", "content": "Where am I?"}, item, output]
    second, _ = run(server, {"model": "test-model", "input": history, "tools": tools, "store": False}, stream)
    assert second["output"][0]["content"][0]["text"] == "Done."
    msgs = fake.requests[-1]["body"]["messages"]
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "shell"
    assert json.loads(msgs[2]["content"])[1] == {"stdout": "", "stderr": "denied", "outcome": {"type": "timeout"}}


def test_shell_in_a_container_is_a_builtin_without_executor(server: RespdServer, fake: FakeUpstream) -> None:
    r = post(server, {"model": "test-model", "input": "x", "tools": [{"type": "shell", "environment": {"type": "container_auto"}}]})
    assert r.status_code == 200 and r.headers["respd-omitted-tools"] == "shell"
    assert "tools" not in fake.requests[-1]["body"]


PATCH = "*** Begin Patch\n*** Update File: a.py\n@@ def f():\n-    return 1\n+    return 2\n*** End Patch"


@pytest.mark.parametrize("stream", [False, True])
def test_apply_patch_call_round_trip(any_server: RespdServer, fake: FakeUpstream, stream: bool) -> None:
    fake.script(call("apply_patch", {"type": "update_file", "path": "a.py", "diff": "@@ def f():\n-    return 1\n+    return 2\n"}),
                Reply(text="The patch failed."))  # fmt: skip
    body = {"model": "test-model", "input": "Make f return 2", "tools": [{"type": "apply_patch"}],
            "tool_choice": {"type": "apply_patch"}}  # fmt: skip
    first, _ = run(any_server, body, stream)
    assert fake.requests[-1]["body"]["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert "V4A" in offered(fake)["apply_patch"]["description"]
    (item,) = first["output"]
    assert item["type"] == "apply_patch_call" and item["id"].startswith("apc_") and item["status"] == "completed"
    assert item["operation"] == {"type": "update_file", "path": "a.py", "diff": "@@ def f():\n-    return 1\n+    return 2\n"}
    out = {"type": "apply_patch_call_output", "call_id": "call_1", "status": "failed", "output": "a.py: no such file"}
    second, _ = run(any_server, {"model": "test-model", "previous_response_id": first["id"], "input": [out],
                                 "tools": [{"type": "apply_patch"}]}, stream)  # fmt: skip
    assert second["output"][0]["content"][0]["text"] == "The patch failed."
    msgs = fake.requests[-1]["body"]["messages"]
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_1", "content": "failed: a.py: no such file"}
    items = httpx.get(f"{any_server.url}/v1/responses/{second['id']}/input_items", timeout=10).json()["data"]
    assert items[0]["type"] == "apply_patch_call_output" and items[0]["status"] == "failed"
    assert items[0]["id"].startswith("apco_")
    stored = httpx.get(f"{any_server.url}/v1/responses/{first['id']}", timeout=10).json()
    assert check_response(stored)["output"] == [item]


def test_apply_patch_delete_and_create(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(tool_calls=[
        {"id": "c1", "name": "apply_patch", "arguments": json.dumps({"type": "delete_file", "path": "old.txt", "diff": "x"})},
        {"id": "c2", "name": "apply_patch", "arguments": json.dumps({"type": "create_file", "path": "new.txt", "diff": "+hi\n"})}]))  # fmt: skip
    r = client.responses.create(model="test-model", input="swap files", tools=[{"type": "apply_patch"}])
    ops = [item.operation.model_dump() for item in r.output]  # type: ignore[union-attr]
    assert ops == [{"type": "delete_file", "path": "old.txt"}, {"type": "create_file", "path": "new.txt", "diff": "+hi\n"}]


def test_outputs_must_answer_their_calls(server: RespdServer, fake: FakeUpstream) -> None:
    shot = {"type": "computer_screenshot", "image_url": SCREENSHOT}
    r = post(server, {"model": "test-model", "input": [{"role": "user", "content": "x"},
                                                       {"type": "computer_call_output", "call_id": "nope", "output": shot}]})  # fmt: skip
    check_error(r, 400, param="input[1].call_id")
    r = post(server, {"model": "test-model", "input": [{"type": "apply_patch_call_output", "call_id": "c", "status": "maybe"}]})
    check_error(r, 400, param="input[0].status")
    r = post(server, {"model": "test-model", "tools": [{"type": "computer_use_preview", "environment": "browser"}], "input": "x"})
    check_error(r, 400, param="tools[0].display_width")
    assert fake.requests == []
