"""web_search on the second provider: a hosted search API (Brave Search's), with its key from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import start_server
from tests.fake_search_api import FakeSearchApi
from tests.fake_upstream import FakeUpstream, Reply, tool_messages
from tests.servers import RespdServer, write_config

KEY = "brave-test-token"


def brave_config(path: Path, upstream: str, api: FakeSearchApi) -> str:
    config = write_config(path, upstream, 'outbound_allow = ["127.0.0.1:*"]\n')
    with open(config, "a") as f:
        f.write(f'\n[web_search]\nprovider = "brave"\nbase_url = "{api.base_url}"\napi_key_env = "BRAVE_KEY"\n'
                "timeout_s = 2\n")  # fmt: skip
    return config


@pytest.fixture(scope="module")
def search_api() -> Iterator[FakeSearchApi]:
    with FakeSearchApi(KEY) as api:
        yield api


@pytest.fixture(scope="module")
def brave_server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream,
                 search_api: FakeSearchApi) -> Iterator[RespdServer]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("respd-brave")
    server = start_server(tmp, brave_config(tmp / "respd.toml", fake.base_url, search_api),
                          f"sqlite:///{tmp / 'respd.db'}", env={"BRAVE_KEY": KEY})  # fmt: skip
    yield server
    server.stop()


@pytest.fixture
def client(brave_server: RespdServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=brave_server.url + "/v1", api_key="x", max_retries=0, timeout=20) as c:
        yield c


def test_search_cites_the_hosted_results(client: openai.OpenAI, fake: FakeUpstream, search_api: FakeSearchApi) -> None:
    fake.script(Reply(tool_calls=[{"id": "c1", "name": "web_search", "arguments": '{"query": "oslo weather"}'}]),
                Reply(text="Rainy, says [2]."))  # fmt: skip
    location = {"type": "approximate", "country": "NO", "city": "Oslo"}
    r = client.responses.create(model="test-model", input="Weather in Oslo?",
                                tools=[{"type": "web_search", "user_location": location, "search_context_size": "low"}],
                                include=["web_search_call.action.sources"])  # type: ignore[list-item]  # fmt: skip
    call, message = r.output
    assert call.type == "web_search_call" and call.action.query == "oslo weather"  # type: ignore[union-attr]
    assert [s.url for s in call.action.sources][:1] == ["https://hosted1.example/oslo-weather"]  # type: ignore[union-attr]
    sent = search_api.requests[-1]
    assert sent["headers"]["x-subscription-token"] == KEY and sent["params"]["q"] == "oslo weather"
    assert sent["params"]["country"] == "NO" and sent["headers"]["x-loc-city"] == "Oslo"
    assert "<strong>" not in tool_messages(fake.requests[-1]["body"])[0]  # Brave's highlighting is dropped
    annotation = message.content[0].annotations[0]  # type: ignore[union-attr]
    assert annotation.type == "url_citation" and annotation.url == "https://hosted2.example/oslo-weather"


def test_a_refused_key_is_told_to_the_model(client: openai.OpenAI, fake: FakeUpstream, search_api: FakeSearchApi) -> None:
    search_api.token = "rotated"
    try:
        fake.script(Reply(tool_calls=[{"id": "c1", "name": "web_search", "arguments": '{"query": "x"}'}]),
                    Reply(text="Search is unavailable."))  # fmt: skip
        r = client.responses.create(model="test-model", input="x", tools=[{"type": "web_search"}])
    finally:
        search_api.token = KEY
    assert r.status == "completed" and r.output[0].status == "failed"  # type: ignore[union-attr]
    assert "refused the server's API key" in tool_messages(fake.requests[-1]["body"])[0]
