"""openai-agents' ``HostedMCPTool`` against respd and a real MCP server: respd lists the server's tools, asks
for approval, and once the agent's callback approves, runs the call and answers — the SDK unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from agents import Agent, HostedMCPTool, ModelSettings, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from tests.clients.conftest import API_KEY
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.mcp_server import TestMcpServer
from tests.servers import RespdServer, write_config
from tests.wire_recorder import WireRecorder


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[TestMcpServer]:
    with TestMcpServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def respd_mcp(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[RespdServer]:
    """respd with an API key, allowed to reach MCP servers on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("respd-clients-mcp")
    config = write_config(tmp / "respd.toml", fake.base_url, f'api_keys = ["{API_KEY}"]\noutbound_allow = ["127.0.0.1:*"]\n')
    server = start_server(tmp, config, f"sqlite:///{tmp / 'respd.db'}")
    yield server
    server.stop()


@pytest.fixture
def wire(respd_mcp: RespdServer) -> Iterator[WireRecorder]:
    with WireRecorder(respd_mcp.url) as recorder:
        yield recorder


def test_hosted_mcp_tool_with_approval(wire: WireRecorder, fake: FakeUpstream, mcp_server: TestMcpServer) -> None:
    set_tracing_disabled(True)  # traces would go to OpenAI: nothing leaves this machine
    fake.script(Reply(tool_calls=[{"id": "call_m", "name": "files__delete_file", "arguments": '{"path": "old.log"}'}]),
                Reply(text="I deleted old.log."))  # fmt: skip
    approvals: list[str] = []

    def approve(request: Any) -> dict[str, Any]:
        approvals.append(request.data.name)
        return {"approve": True}

    mcp = HostedMCPTool(tool_config={"type": "mcp", "server_label": "files", "server_url": mcp_server.url,
                                     "require_approval": "always"},
                        on_approval_request=approve)  # fmt: skip
    before = mcp_server.calls["delete_file"]

    async def main() -> Any:
        client = AsyncOpenAI(base_url=wire.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
        try:
            agent: Agent[Any] = Agent(name="Janitor", instructions="Clean up files.", tools=[mcp],
                                      model=OpenAIResponsesModel("test-model", client),
                                      model_settings=ModelSettings())  # fmt: skip
            return await Runner.run(agent, "Delete old.log")
        finally:
            await client.close()

    result = asyncio.run(main())
    assert result.final_output == "I deleted old.log." and approvals == ["delete_file"]
    assert mcp_server.calls["delete_file"] == before + 1
    first, second = wire.creates()
    assert [i["type"] for i in first.response()["output"]] == ["mcp_list_tools", "mcp_approval_request"]
    answer = [i for i in second.body["input"] if i.get("type") == "mcp_approval_response"]
    assert len(answer) == 1 and answer[0]["approve"] is True
    done = second.response()["output"]
    assert [i["type"] for i in done] == ["mcp_call", "message"] and done[0]["output"] == "deleted old.log"
    assert not wire.wrong()
