"""Per-key rate limits held across two replicas, through Redis and through the database: requests per
minute, tokens per minute, concurrent streams; the real API's headers and 429, which the SDK's retry honours."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config

REDIS = "redis://127.0.0.1:6379/0"


def fresh_window() -> None:
    """Counts are per Unix minute: start where the minute has room for the whole test."""
    into = time.time() % 60
    if into > 45:
        time.sleep(60.2 - into)


@pytest.fixture(params=["redis", "database"])
def pair(request: pytest.FixtureRequest, tmp_path: Path, fake: FakeUpstream) -> Iterator[tuple[RespdServer, RespdServer, str]]:
    """Two replicas on one PostgreSQL, with limits on a key of this test's own (fresh counts in Redis)."""
    key = "sk-rl-" + os.urandom(6).hex()
    extra = f'redis_url = "{REDIS}"\n' if request.param == "redis" else ""
    extra += (f'requests_per_minute = 100\n[[keys]]\nkey = "{key}"\nlabel = "limited"\nrequests_per_minute = 4\n'
              f'[[keys]]\nkey = "{key}-tok"\nlabel = "tokens"\ntokens_per_minute = 20\n'
              f'[[keys]]\nkey = "{key}-str"\nlabel = "streams"\nmax_streams = 1\n')  # fmt: skip
    config = write_config(tmp_path / "respd.toml", fake.base_url, extra=extra)
    url = create_pg_database()
    a = start_server(tmp_path / "a", config, url)
    b = start_server(tmp_path / "b", config, url)
    yield a, b, key
    a.stop()
    b.stop()
    drop_pg_database(url)


def create(server: RespdServer, key: str, **body: object) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "hi", **body},
                      headers={"authorization": f"Bearer {key}"}, timeout=20)  # fmt: skip


def test_requests_per_minute_across_replicas(pair: tuple[RespdServer, RespdServer, str]) -> None:
    a, b, key = pair
    fresh_window()
    answers = [create((a, b)[i % 2], key) for i in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["3", "2", "1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "4" for r in answers)
    assert answers[0].headers["x-ratelimit-reset-requests"].endswith("s")
    refused = answers[4]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded" and refused.json()["error"]["type"] == "requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # another key has its own count (the default limit, 100 a minute)
    other = create(a, key + "-tok")
    assert other.status_code == 200 and "x-ratelimit-limit-requests" in other.headers
    with openai.OpenAI(base_url=b.url + "/v1", api_key=key, max_retries=0) as client, pytest.raises(openai.RateLimitError):
        client.responses.create(model="test-model", input="hi")


def test_tokens_per_minute_across_replicas(pair: tuple[RespdServer, RespdServer, str], fake: FakeUpstream) -> None:
    a, b, key = pair
    fresh_window()
    fake.script(Reply(text="x", usage={"prompt_tokens": 30, "completion_tokens": 1, "total_tokens": 31}))
    first = create(a, key + "-tok")
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "20"
    deadline = time.monotonic() + 5
    while (second := create(b, key + "-tok")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)  # the first response's tokens are counted just after it ends
    assert second.status_code == 429 and second.json()["error"]["type"] == "tokens"
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"


def test_stream_cap_and_sdk_retry(pair: tuple[RespdServer, RespdServer, str], fake: FakeUpstream) -> None:
    a, b, key = pair
    key += "-str"
    fresh_window()
    fake.script(Reply(chunks=[f"s{i} " for i in range(20)], delay_s=0.05), Reply(text="second"))
    with openai.OpenAI(base_url=a.url + "/v1", api_key=key, max_retries=0) as client:
        stream = client.responses.create(model="test-model", input="long", stream=True)
        next(iter(stream))  # the first stream is running on A
        refused = create(b, key, stream=True)  # B sees A's slot
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        done = threading.Thread(target=lambda: [None for _ in stream])
        done.start()
        # the SDK waits Retry-After and tries again; by then the first stream is over and its slot free
        with openai.OpenAI(base_url=b.url + "/v1", api_key=key, max_retries=3) as retrying:
            events = list(retrying.responses.create(model="test-model", input="again", stream=True))
        done.join(10)
    assert events[-1].type == "response.completed"
    refusals = [line for line in b.log().splitlines() if "POST /v1/responses 429" in line and "key=streams" in line]
    assert len(refusals) >= 2  # the plain request's, and the SDK's first try
