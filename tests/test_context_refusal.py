"""An upstream's refusal of a prompt over its context window (issue 19, item 9) is the real API's answer.

The fake upstream says nothing of its window beforehand, and refuses prompts over 1,000 words (its tokens) with
a 400 in the words of vLLM (naming the window), llama.cpp's server (``n_ctx``) or OpenAI (naming none):

- ``truncation: "disabled"``: a streamed response fails with ``context_length_exceeded``; a non-streamed one
  is a 400 ``context_length_exceeded`` on ``input``, and nothing is stored. A window the refusal named is kept:
  a later request over it is the 400 before any upstream call, streamed or not.
- ``truncation: "auto"``: the refused turn is tried once more without the oldest units.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.checks import check_error, sse_events
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer

WINDOW = 1000
LONG = "word " * 2000  # 2,000 of the fake's tokens


@pytest.fixture(params=["vllm", "llama.cpp", "openai"])
def upstream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, FakeUpstream, RespdServer]]:
    up = FakeUpstream()
    up.refuse_over, up.refusal_style = WINDOW, request.param
    up.start()
    config = tmp_path / "respd.toml"
    config.write_text(f'[[models]]\nname = "m"\nbackend = "openai"\nbase_url = "{up.base_url}"\n'
                      'upstream_model = "fake-upstream-model"\ntimeout_s = 5\n')  # fmt: skip
    server = start_server(tmp_path, str(config), f"sqlite:///{tmp_path / 'respd.db'}")
    yield request.param, up, server
    server.stop()
    up.stop()


def _chats(up: FakeUpstream) -> list[dict[str, Any]]:
    return [q for q in up.requests if q["path"].endswith("/chat/completions")]


def test_a_refusal_is_context_length_exceeded(upstream: tuple[str, FakeUpstream, RespdServer]) -> None:
    style, up, server = upstream
    url = server.url + "/v1/responses"
    # streamed: the response had begun when the upstream refused; it fails with the API's code
    r = httpx.post(url, json={"model": "m", "input": LONG, "stream": True}, timeout=20)
    assert r.status_code == 200
    events = sse_events(r.text)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "context_length_exceeded"
    failed = events[-1]["response"]
    assert failed["error"]["code"] == "context_length_exceeded"
    assert "exceeds the context window" in failed["error"]["message"]
    assert httpx.get(f"{url}/{failed['id']}").json() == failed
    assert len(_chats(up)) == 1 and _chats(up)[0].get("refused")
    stored = server.row_counts()["responses"]
    # not streamed: the API's 400, and nothing stored
    r = httpx.post(url, json={"model": "m", "input": LONG}, timeout=20)
    check_error(r, 400, param="input", code="context_length_exceeded")
    assert server.row_counts()["responses"] == stored
    named = style != "openai"
    # a window the refusal named is kept: the request was refused before any upstream call
    assert len(_chats(up)) == (1 if named else 2)
    if named:
        r = httpx.post(url, json={"model": "m", "input": LONG, "stream": True}, timeout=20)
        check_error(r, 400, param="input", code="context_length_exceeded")
        assert len(_chats(up)) == 1
    # what fits still runs
    ok = httpx.post(url, json={"model": "m", "input": "short"}, timeout=20)
    assert ok.status_code == 200 and ok.json()["status"] == "completed", ok.text


def test_truncation_auto_retries_without_the_oldest_units(upstream: tuple[str, FakeUpstream, RespdServer]) -> None:
    _style, up, server = upstream
    items = [{"role": "user", "content": LONG}, {"role": "assistant", "content": "ok"},
             {"role": "user", "content": "short question"}]  # fmt: skip
    for stream in (False, True):
        body = {"model": "m", "input": items, "truncation": "auto", "max_output_tokens": 100, "stream": stream}
        r = httpx.post(server.url + "/v1/responses", json=body, timeout=20)
        assert r.status_code == 200, r.text
        final = sse_events(r.text)[-1]["response"] if stream else r.json()
        assert final["status"] == "completed", final
        sent = _chats(up)[-1]["body"]["messages"]
        assert sent[-1]["content"] == "short question" and all(m["content"] != LONG for m in sent)
    # the first try was refused and retried; once a window is known, the second is fitted before it is sent
    refused = [q for q in _chats(up) if q.get("refused")]
    assert len(refused) == (1 if _style != "openai" else 2)
    # nothing that may go is left: the refusal stands
    r = httpx.post(server.url + "/v1/responses", json={"model": "m", "input": LONG, "truncation": "auto"}, timeout=20)
    check_error(r, 400, param="input", code="context_length_exceeded")
