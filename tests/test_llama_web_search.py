"""The tool loop on the embedded model: the bundled GGUF is offered web_search as a function, calls it
under its grammar, reads the results and answers (a real model, a fake SearXNG)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fake_searxng import FakeSearxng
from tests.servers import RespdServer


@pytest.fixture(scope="module")
def llama_web(tmp_path_factory: pytest.TempPathFactory, searxng: FakeSearxng) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("respd-llama-web")
    config = tmp / "respd.toml"
    config.write_text(f"""outbound_allow = ["127.0.0.1:*"]

[[models]]
name = "local"
backend = "llama_cpp"
n_ctx = 4096
n_threads = 1  # llama.cpp's threads stall each other when other processes hold the cores

[web_search]
provider = "searxng"
base_url = "{searxng.base_url}"
""")
    server = RespdServer(config=str(config), database_url=f"sqlite:///{tmp / 'respd.db'}", data_dir=tmp)
    server.start(timeout=120)
    yield server
    server.stop()


@pytest.mark.timeout(600)  # two turns of a local model on a shared 2-core machine
def test_the_local_model_searches_then_answers(llama_web: RespdServer, searxng: FakeSearxng) -> None:
    searxng.results["capital of france"] = [
        {"url": "https://example.org/paris", "title": "Paris", "content": "Paris is the capital of France."}]  # fmt: skip
    with openai.OpenAI(base_url=llama_web.url + "/v1", api_key="k", max_retries=0, timeout=180) as llm:
        r = llm.responses.create(model="local", input="Search the web: what is the capital of France?",
                                 tools=[{"type": "web_search_preview"}], tool_choice={"type": "web_search_preview"},
                                 max_tool_calls=1, temperature=0, max_output_tokens=40)  # fmt: skip
    assert len(searxng.queries) == 1 and searxng.queries[0].strip()
    assert r.output[0].type == "web_search_call" and r.output[0].status == "completed"
    assert r.output[0].action.query == searxng.queries[0]  # type: ignore[union-attr]
    assert r.output[-1].type == "message" and r.output_text.strip()
    assert [i.type for i in r.output] == ["web_search_call", "message"]  # after max_tool_calls the model answers
    assert r.status in ("completed", "incomplete")
    assert r.usage is not None and r.usage.input_tokens > 100  # both turns' prompts, the results in the second
