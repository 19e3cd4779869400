"""Input token counts (``POST /v1/responses/input_tokens``, ``GET /v1/responses/{id}/input_tokens``) over an upstream.

An upstream model's count is the upstream's own: respd sends the request it would generate from, cut to
one output token, and answers with its ``usage.prompt_tokens``. (The embedded model's exact counts are
checked against its tokenizer in ``test_llama_cpp.py``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from respd.backends.base import ModelRequest
from respd.backends.bundled import bundled_path
from respd.backends.openai_chat import OpenAIChatBackend
from respd.backends.token_estimate import estimate, upper_bound
from respd.config import ConfigError, ModelRoute, load_settings
from tests.checks import check_error
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer, write_config
from tests.spec_schemas import validate_openai
from tests.tokenizer import tokenizer_count

WEATHER = {"type": "function", "name": "weather", "description": "Weather in a city.", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}  # fmt: skip


def counted(prompt_tokens: int) -> Reply:
    """The upstream's answer to a count: one token, and the prompt's size."""
    return Reply(
        text="x", usage={"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1}
    )


def test_count_is_the_upstreams_prompt_tokens_for_what_a_create_would_send(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    first = client.responses.create(model="test-model", input="My name is Ada.", instructions="Be brief.")
    fake.script(Reply(text="ok"), counted(4321))
    body: dict[str, Any] = {"model": "test-model", "input": "What is my name?", "previous_response_id": first.id,
                            "instructions": "Be brief.", "tools": [WEATHER], "tool_choice": "auto"}  # fmt: skip
    client.responses.create(**body)
    generated = fake.requests[-1]["body"]
    result = client.responses.input_tokens.count(**body)
    assert (result.object, result.input_tokens) == ("response.input_tokens", 4321)
    asked = fake.requests[-1]["body"]
    assert asked["messages"] == generated["messages"] and asked["tools"] == generated["tools"]
    assert asked["max_tokens"] == 1 and "stream" not in asked
    assert fake.pending == 0 and len(fake.requests) == 3  # one create, one create, one count: nothing stored by it


def test_count_without_a_script_is_the_upstreams_word_count(client: openai.OpenAI, fake: FakeUpstream) -> None:
    # The fake upstream counts one token per whitespace-separated word of the messages.
    result = client.responses.input_tokens.count(model="test-model", input="one two three", instructions="four five")
    assert result.input_tokens == 5


def test_model_defaults_to_the_previous_responses(client: openai.OpenAI, fake: FakeUpstream) -> None:
    first = client.responses.create(model="test-model", input="a b c")
    fake.script(counted(99))
    assert client.responses.input_tokens.count(previous_response_id=first.id, input="d").input_tokens == 99
    sent = fake.requests[-1]["body"]
    assert sent["model"] == "fake-upstream-model"
    assert [m["content"] for m in sent["messages"]] == ["a b c", "echo: a b c", "d"]


def test_stored_responses_input_counts_again(server: RespdServer, client: openai.OpenAI, fake: FakeUpstream) -> None:
    first = client.responses.create(model="test-model", input="alpha")
    second = client.responses.create(model="test-model", input="beta", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
                                     instructions="Answer in French.")  # fmt: skip
    generated = fake.requests[-1]["body"]
    fake.script(counted(77))
    r = httpx.get(f"{server.url}/v1/responses/{second.id}/input_tokens", timeout=20)
    assert r.status_code == 200 and r.json() == {"object": "response.input_tokens", "input_tokens": 77}
    validate_openai("TokenCountsResource", r.json())
    asked = fake.requests[-1]["body"]
    assert asked["messages"] == generated["messages"] and asked["tools"] == generated["tools"]


def test_unknown_response_or_model_and_bad_fields(server: RespdServer, fake: FakeUpstream) -> None:
    check_error(httpx.get(f"{server.url}/v1/responses/resp_nope/input_tokens", timeout=20), 404, param="response_id")
    url = f"{server.url}/v1/responses/input_tokens"
    check_error(httpx.post(url, json={"input": "x"}, timeout=20), 400, param="model", code="missing_required_parameter")
    check_error(
        httpx.post(url, json={"model": "nope", "input": "x"}, timeout=20), 400, param="model", code="model_not_found"
    )
    check_error(httpx.post(url, json={"model": "test-model", "input": "x", "temperature": 1}, timeout=20), 400,
                param="temperature", code="unknown_parameter")  # fmt: skip
    check_error(httpx.post(url, json={"model": "test-model", "previous_response_id": "resp_nope"}, timeout=20), 404,
                param="previous_response_id")  # fmt: skip
    assert fake.requests == []


def test_upstream_failure_is_a_server_error(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(status=500))
    r = httpx.post(f"{server.url}/v1/responses/input_tokens", json={"model": "test-model", "input": "x"}, timeout=20)
    check_error(r, 502, code="server_error")


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[RespdServer]:
    """A server whose upstream route counts with the bundled model's GGUF as its ``tokenizer``."""
    tmp = tmp_path_factory.mktemp("respd-tokenizer")
    extra = f"""
[[models]]
name = "tok-model"
backend = "openai"
base_url = "{fake.base_url}"
upstream_model = "fake-upstream-model"
tokenizer = "{bundled_path()}"
context_window = 400
"""
    server = start_server(tmp, write_config(tmp / "respd.toml", fake.base_url, extra), f"sqlite:///{tmp / 'respd.db'}")
    yield server
    server.stop()


def test_a_tokenizer_gguf_counts_what_is_sent_without_asking(tokenized: RespdServer, fake: FakeUpstream) -> None:
    body: dict[str, Any] = {"model": "tok-model", "instructions": "Be brief.", "tools": [WEATHER],
                            "input": [{"role": "user", "content": "Weather in Oslo?"}]}  # fmt: skip
    with openai.OpenAI(base_url=tokenized.url + "/v1", api_key="unused", max_retries=0, timeout=60) as client:
        client.responses.create(**body)
        sent = fake.requests[-1]["body"]
        counted = client.responses.input_tokens.count(**body)
        assert counted.input_tokens == tokenizer_count(sent["messages"], sent["tools"])
        assert len(fake.requests) == 1  # counted in respd: no upstream call
        # the hot path counts exactly too: over the 400-token window is refused before the upstream
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="tok-model", input="hello " * 500)
        assert refused.value.code == "context_length_exceeded" and len(fake.requests) == 1


def test_tokenizer_must_be_a_file_for_an_upstream(tmp_path: Path) -> None:
    config = tmp_path / "respd.toml"
    for route in ('backend = "openai"\nbase_url = "http://x/v1"\ntokenizer = "/nonexistent.gguf"',
                  f'backend = "llama_cpp"\ntokenizer = "{bundled_path()}"'):  # fmt: skip
        config.write_text(f'[[models]]\nname = "m"\n{route}\n')
        with pytest.raises(ConfigError):
            load_settings(str(config), env={})


def test_the_no_count_bound_is_never_below_the_tokenizers_count() -> None:
    """respd skips counting a context whose bound fits the window: the bound must hold for a real tokenizer."""
    cases: list[tuple[str | None, list[dict[str, Any]], list[dict[str, Any]]]] = [
        (None, [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}], []),
        ("Réponds en français, s'il te plaît. 日本語でも。", [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Ünïcödé ✓ 🚀 " * 50}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x = {'a': [1, 2]}\n" * 30}]},
        ], []),
        ("Be brief.", [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Oslo?"}]}],
         [{"type": "function", "name": "weather", "namespace": None, "description": "Weather.", "strict": True,
           "parameters": WEATHER["parameters"]}]),
    ]  # fmt: skip
    for instructions, items, tools in cases:
        request = ModelRequest(model="m", instructions=instructions, items=items, tools=tools)
        body = OpenAIChatBackend(ModelRoute(name="m", base_url="http://x/v1")).payload(request)
        exact = tokenizer_count(body["messages"], body.get("tools"))
        assert upper_bound(request) >= exact and estimate(request) <= upper_bound(request)


def test_count_in_a_conversation_reads_its_items(client: openai.OpenAI, fake: FakeUpstream) -> None:
    conv = client.conversations.create(items=[{"type": "message", "role": "user", "content": "My name is Ada."}])
    fake.script(counted(77))
    result = client.responses.input_tokens.count(model="test-model", input="What is my name?", conversation=conv.id)
    assert result.input_tokens == 77
    sent = [m["content"] for m in fake.requests[-1]["body"]["messages"]]
    assert sent == ["My name is Ada.", "What is my name?"]
