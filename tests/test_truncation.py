"""Truncation against a configured context window, both ways, over an upstream (respd's count is an estimate
there: about 4 bytes of the prompt's JSON per token; the embedded model's exact case is in test_llama_cpp.py).

``small-model`` has a 200-token window. A 400-character message estimates at about 108 tokens, so two of
them do not fit, one with a short question does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from respd.engine.window import units
from tests.checks import check_error, check_response
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer, write_config

LONG_A = "a " * 200  # 400 characters, 200 words
LONG_B = "b " * 200


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("respd-small")
    extra = f"""
[[models]]
name = "small-model"
backend = "openai"
base_url = "{fake.base_url}"
upstream_model = "fake-upstream-model"
context_window = 200
"""
    server = start_server(
        tmp, write_config(Path(tmp) / "respd.toml", fake.base_url, extra), f"sqlite:///{tmp / 'respd.db'}"
    )
    yield server
    server.stop()


@pytest.fixture
def sc(small: RespdServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=small.url + "/v1", api_key="unused", max_retries=0, timeout=20) as c:
        yield c


def _rows(server: RespdServer) -> int:
    with sqlite3.connect(server.database_url.removeprefix("sqlite:///")) as conn:
        count: int = conn.execute("SELECT count(*) FROM responses").fetchone()[0]
        return count


def _sent(fake: FakeUpstream) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in fake.requests[-1]["body"]["messages"]]


def _post(server: RespdServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json={"model": "small-model", **body}, timeout=20)


def test_disabled_refuses_an_input_over_the_window_and_stores_nothing(small: RespdServer, fake: FakeUpstream) -> None:
    before = _rows(small)
    for body in ({"input": LONG_A + LONG_B}, {"input": [{"role": "user", "content": LONG_A},
                                                        {"role": "assistant", "content": LONG_B},
                                                        {"role": "user", "content": "q"}], "truncation": "disabled"}):  # fmt: skip
        for stream in (False, True):
            r = _post(small, {**body, "stream": stream})
            err = check_error(r, 400, param="input", code="context_length_exceeded")
            assert err["type"] == "invalid_request_error" and "context window" in err["message"]
    assert _rows(small) == before and fake.requests == []


def test_an_input_that_fits_goes_whole(sc: openai.OpenAI, fake: FakeUpstream) -> None:
    r = sc.responses.create(
        model="small-model", input=[{"role": "user", "content": LONG_A}, {"role": "user", "content": "q"}]
    )
    assert r.status == "completed" and r.truncation == "disabled"
    assert _sent(fake) == [("user", LONG_A), ("user", "q")]


def test_auto_drops_the_oldest_items_keeping_instructions(
    small: RespdServer, sc: openai.OpenAI, fake: FakeUpstream
) -> None:
    inputs: list[Any] = [{"role": "user", "content": LONG_A}, {"role": "assistant", "content": LONG_B},
                         {"role": "user", "content": "q"}]  # fmt: skip
    r = sc.responses.create(model="small-model", input=inputs, instructions="Be brief.", truncation="auto",
                            max_output_tokens=16)  # fmt: skip
    assert r.status == "completed" and r.truncation == "auto"
    check_response(httpx.get(f"{small.url}/v1/responses/{r.id}", timeout=20).json())
    assert _sent(fake) == [("system", "Be brief."), ("assistant", LONG_B), ("user", "q")]
    # the stored input is what the client sent; only the model's view was cut
    assert len(sc.responses.input_items.list(r.id).data) == 3


def test_auto_never_drops_system_or_developer_messages(sc: openai.OpenAI, fake: FakeUpstream) -> None:
    inputs: list[Any] = [{"role": "developer", "content": "Rules."}, {"role": "user", "content": LONG_A},
                         {"role": "user", "content": LONG_B}, {"role": "user", "content": "q"}]  # fmt: skip
    sc.responses.create(model="small-model", input=inputs, truncation="auto", max_output_tokens=16)
    assert _sent(fake) == [("system", "Rules."), ("user", LONG_B), ("user", "q")]


def test_auto_drops_a_tool_call_with_its_output(sc: openai.OpenAI, fake: FakeUpstream) -> None:
    inputs: list[Any] = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "' + LONG_A + '"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": LONG_B},
        {"role": "user", "content": "thanks"},
    ]
    sc.responses.create(model="small-model", input=inputs, truncation="auto", max_output_tokens=16)
    assert _sent(fake) == [("user", "thanks")]


def test_auto_trims_a_stored_chain(sc: openai.OpenAI, fake: FakeUpstream) -> None:
    first = sc.responses.create(model="small-model", input=LONG_A)  # answered "echo: a a …"
    with pytest.raises(openai.BadRequestError) as refused:
        sc.responses.create(model="small-model", input="q", previous_response_id=first.id)
    assert refused.value.code == "context_length_exceeded"
    sc.responses.create(model="small-model", input="q", previous_response_id=first.id, truncation="auto",
                        max_output_tokens=16)  # fmt: skip
    assert _sent(fake) == [("assistant", "echo: " + LONG_A), ("user", "q")]


def test_auto_refuses_when_the_newest_item_alone_is_too_long(small: RespdServer, fake: FakeUpstream) -> None:
    r = _post(small, {"input": [{"role": "user", "content": "hi"}, {"role": "user", "content": LONG_A * 2}],
                      "truncation": "auto"})  # fmt: skip
    check_error(r, 400, param="input", code="context_length_exceeded")
    assert fake.requests == []


def test_counting_follows_truncation(sc: openai.OpenAI, fake: FakeUpstream) -> None:
    inputs: list[Any] = [{"role": "user", "content": LONG_A}, {"role": "assistant", "content": "b b b"},
                         {"role": "user", "content": "q"}]  # fmt: skip
    # The fake upstream counts words: 200 + 3 + 1 sent whole; with "auto" the oldest goes, as it would for a
    # create without max_output_tokens (half the window stays free for the answer).
    assert sc.responses.input_tokens.count(model="small-model", input=inputs).input_tokens == 204
    assert sc.responses.input_tokens.count(model="small-model", input=inputs, truncation="auto").input_tokens == 4


def test_units_keep_calls_with_their_outputs_and_reasoning_with_its_item() -> None:
    def call(kind: str, call_id: str) -> dict[str, Any]:
        return {"type": kind, "call_id": call_id}

    items = [
        {"type": "message", "role": "user"},
        {"type": "reasoning"},
        call("function_call", "c1"),
        call("function_call", "c2"),  # parallel calls: each is its own unit with its output
        call("function_call_output", "c2"),
        call("function_call_output", "c1"),
        {"type": "message", "role": "user"},
        {"type": "reasoning"},  # nothing after it yet: alone
    ]
    assert units(items) == [[0], [1, 2, 5], [3, 4], [6], [7]]
