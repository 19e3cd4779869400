"""The Codex CLI (``@openai/codex``, its native binary) run unchanged against respd with ``codex exec``.

Codex reaches respd as a custom model provider (``wire_api = "responses"``) from a throwaway CODEX_HOME with
nothing that phones home. It sends ``store: false`` and asks for ``reasoning.encrypted_content``: every
request after a tool call re-sends the whole history, respd's sealed reasoning included. The model's moves
come from the scripted fake upstream; the commands and the patch are run by Codex itself, in a temp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.conftest import API_KEY, CODEX_MODEL
from tests.conftest import start_server
from tests.fake_search_api import FakeSearchApi
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer, write_config
from tests.wire_recorder import WireRecorder

DEAD_PROXY = "http://127.0.0.1:9"
PATCH = """*** Begin Patch
*** Update File: hello.txt
@@
-hello
+hello world
*** End Patch
"""


@dataclass
class Codex:
    """A Codex CLI set up to talk to respd (through the wire recorder), working in ``work``."""

    binary: Path
    home: Path
    work: Path

    def exec(self, *args: str) -> list[dict[str, Any]]:
        """``codex exec --json ARGS``: the JSONL events it printed; it must exit 0."""
        cmd = [str(self.binary), "exec", "--json", "--strict-config", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
               "-C", str(self.work), *args]  # fmt: skip
        # Anything but respd would go through a proxy that is not there: nothing leaves this machine. HOME is
        # the throwaway one too, so the shells Codex starts read no startup files of this machine's user
        # (whose noise, such as pyenv's, would land in the command output the test checks).
        home = self.home.parent / "home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "CODEX_HOME": str(self.home), "RESPD_API_KEY": API_KEY,
               "NO_PROXY": "127.0.0.1,localhost",
               "HTTPS_PROXY": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY, "ALL_PROXY": DEAD_PROXY}  # fmt: skip
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, (
            f"codex exec failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The completed items of one kind in ``codex exec --json`` output."""
    return [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == kind]


@pytest.fixture
def codex(node_modules: Path, wire: WireRecorder, tmp_path: Path) -> Codex:
    return make_codex(node_modules, wire, tmp_path)


def make_codex(node_modules: Path, wire: WireRecorder, tmp_path: Path) -> Codex:
    """A Codex CLI whose provider is respd behind ``wire``, working in a fresh directory."""
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(f'''model = "{CODEX_MODEL}"
model_provider = "respd"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[model_providers.respd]
name = "respd"
base_url = "{wire.url}/v1"
env_key = "RESPD_API_KEY"
wire_api = "responses"
''')
    return Codex(node_modules / ".bin" / "codex", home, work)


def _last(body: dict[str, Any], n: int) -> list[dict[str, Any]]:
    return list(body["input"][-n:])


def test_shell_command_and_apply_patch(
    codex: Codex, wire: WireRecorder, fake: FakeUpstream, respd: RespdServer
) -> None:
    (codex.work / "hello.txt").write_text("hello\n")
    fake.script(
        Reply(reasoning="First look at the file.",
              tool_calls=[{"id": "call_cat", "name": "exec_command", "arguments": '{"cmd":"cat hello.txt"}'}]),
        Reply(reasoning="Now change it.", tool_calls=[{"id": "call_patch", "name": "apply_patch",
                                                       "arguments": json.dumps({"input": PATCH})}]),
        Reply(text="hello.txt now greets the world."),
    )  # fmt: skip
    events = codex.exec("Make hello.txt say hello world")

    # Codex ran the command, applied the patch, and reported the model's final answer.
    assert (codex.work / "hello.txt").read_text() == "hello world\n"
    (command,) = items(events, "command_execution")
    assert (command["aggregated_output"], command["exit_code"]) == ("hello\n", 0)
    (change,) = items(events, "file_change")
    assert change["status"] == "completed" and change["changes"][0]["kind"] == "update"
    assert [m["text"] for m in items(events, "agent_message")] == ["hello.txt now greets the world."]

    first, second, third = wire.creates()
    for create in (first, second, third):
        body = create.body
        assert (body["model"], body["store"], body["stream"]) == (CODEX_MODEL, False, True)
        assert body["include"] == ["reasoning.encrypted_content"]
        assert create.headers["respd-omitted-tools"] == "web_search"
    r1, r2, r3 = (c.response() for c in (first, second, third))
    assert [it["type"] for it in r1["output"]] == ["reasoning", "function_call"]
    assert [it["type"] for it in r2["output"]] == ["reasoning", "custom_tool_call"]
    assert r2["output"][1]["input"] == PATCH and r2["output"][1]["name"] == "apply_patch"
    assert [it["type"] for it in r3["output"]] == ["message"]
    assert r3["output"][0]["content"][0]["text"] == "hello.txt now greets the world."

    # Each later request re-sends the history: respd's sealed reasoning, the call, and Codex's result.
    reasoning, call, output = _last(second.body, 3)
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"] == r1["output"][0]["encrypted_content"]
    assert (call["type"], call["name"], call["call_id"]) == ("function_call", "exec_command", "call_cat")
    assert output["type"] == "function_call_output" and output["call_id"] == "call_cat" and "hello" in output["output"]
    assert second.body["input"][: len(first.body["input"])] == first.body["input"]
    reasoning, call, output = _last(third.body, 3)
    assert reasoning["encrypted_content"] == r2["output"][0]["encrypted_content"]
    assert (call["type"], call["name"], call["input"]) == ("custom_tool_call", "apply_patch", PATCH)
    assert output["type"] == "custom_tool_call_output" and output["call_id"] == "call_patch"
    assert "Success. Updated the following files" in output["output"]

    # The model saw both calls and both results; nothing was stored (store: false).
    messages = fake.requests[2]["body"]["messages"]
    tool_results = [m for m in messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_results] == ["call_cat", "call_patch"]
    assert "hello" in tool_results[0]["content"] and tool_results[1]["content"] == output["output"]
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.get(f"{respd.url}/v1/responses/{r3['id']}", headers=auth).status_code == 404


def test_second_turn_resumes_the_session(codex: Codex, wire: WireRecorder, fake: FakeUpstream) -> None:
    """``codex exec resume --last``: a new user turn on the saved session, the whole history re-sent."""
    fake.script(Reply(reasoning="A greeting.", text="Hi! What shall we build?"),
                Reply(reasoning="They want a name.", text="Call it respd."))  # fmt: skip
    first_events = codex.exec("Say hi")
    resumed_events = codex.exec("resume", "--last", "Suggest a name")
    assert [m["text"] for m in items(first_events, "agent_message")] == ["Hi! What shall we build?"]
    assert [m["text"] for m in items(resumed_events, "agent_message")] == ["Call it respd."]
    first, second = wire.creates()
    r1 = first.response()
    assert second.body["store"] is False
    user, reasoning, answer, new = _last(second.body, 4)
    assert user["content"] == [{"type": "input_text", "text": "Say hi"}]
    assert reasoning["id"] == r1["output"][0]["id"]
    assert reasoning["encrypted_content"] == r1["output"][0]["encrypted_content"]
    assert (answer["id"], answer["content"][0]["text"]) == (r1["output"][1]["id"], "Hi! What shall we build?")
    assert new["content"] == [{"type": "input_text", "text": "Suggest a name"}]
    assert second.response()["output"][-1]["content"][0]["text"] == "Call it respd."
    conversation = [(m["role"], m["content"]) for m in fake.requests[1]["body"]["messages"][-3:]]
    assert conversation == [("user", "Say hi"), ("assistant", "Hi! What shall we build?"), ("user", "Suggest a name")]


def test_a_model_codex_does_not_know(codex: Codex, wire: WireRecorder, fake: FakeUpstream) -> None:
    """Any model respd serves works: Codex warns it has no metadata for it and offers its generic tool set."""
    fake.script(Reply(tool_calls=[{"id": "call_echo", "name": "exec_command", "arguments": '{"cmd":"echo from-codex"}'}]),
                Reply(text="It printed from-codex."))  # fmt: skip
    events = codex.exec("-m", "test-model", "Run echo")
    assert [m["text"] for m in items(events, "agent_message")] == ["It printed from-codex."]
    (command,) = items(events, "command_execution")
    assert command["aggregated_output"] == "from-codex\n"
    first, second = wire.creates()
    assert first.body["model"] == "test-model"
    assert {t["type"] for t in first.body["tools"]} >= {"function", "namespace", "web_search"}
    offered = [t["function"]["name"] for t in fake.requests[0]["body"]["tools"]]
    assert "exec_command" in offered and "multi_agent_v1__spawn_agent" in offered
    assert fake.requests[1]["body"]["messages"][-1]["content"].endswith("from-codex\n")
    assert second.response()["output"][0]["content"][0]["text"] == "It printed from-codex."


@pytest.fixture(scope="module")
def search_api() -> Iterator[FakeSearchApi]:
    with FakeSearchApi() as api:
        yield api


@pytest.fixture(scope="module")
def respd_search(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream,
                 search_api: FakeSearchApi) -> Iterator[RespdServer]:  # fmt: skip
    """respd with web search on the hosted search API's fake."""
    tmp = tmp_path_factory.mktemp("respd-codex-search")
    config = write_config(tmp / "respd.toml", fake.base_url, f'api_keys = ["{API_KEY}"]\noutbound_allow = ["127.0.0.1:*"]\n')
    with open(config, "a") as f:
        f.write(f'\n[web_search]\nprovider = "brave"\nbase_url = "{search_api.base_url}"\napi_key_env = "BRAVE_KEY"\n')
    server = start_server(tmp, config, f"sqlite:///{tmp / 'respd.db'}", env={"BRAVE_KEY": search_api.token})
    yield server
    server.stop()


def test_web_search_runs_in_respd(node_modules: Path, respd_search: RespdServer, fake: FakeUpstream,
                                  search_api: FakeSearchApi, tmp_path: Path) -> None:  # fmt: skip
    """Codex sends its ``web_search`` tool; respd runs the search on its provider and Codex shows it."""
    fake.script(Reply(tool_calls=[{"id": "call_ws", "name": "web_search", "arguments": '{"query":"respd release notes"}'}]),
                Reply(text="The notes are at [1]."))  # fmt: skip
    with WireRecorder(respd_search.url) as wire:
        events = make_codex(node_modules, wire, tmp_path).exec("-m", "test-model", "Find respd's release notes")
        (create,) = wire.creates()
        assert not wire.wrong()
    assert search_api.queries[-1] == "respd release notes"
    assert "respd-omitted-tools" not in create.headers
    output = create.response()["output"]
    assert [i["type"] for i in output] == ["web_search_call", "message"]
    assert output[1]["content"][0]["annotations"][0]["url"] == "https://hosted1.example/respd-release-notes"
    (search,) = items(events, "web_search")
    assert search["query"] == "respd release notes"
    assert [m["text"] for m in items(events, "agent_message")] == ["The notes are at [1]."]
