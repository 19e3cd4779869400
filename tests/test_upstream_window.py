"""Context windows without configuration (issue 19, item 9): an `openai` route without `context_window` learns
it from the upstream (vLLM's `max_model_len` in /v1/models, llama.cpp's `n_ctx` in /props), so an input over
it is the real API's 400 (or truncated with `truncation: "auto"`) before any upstream call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.checks import check_error
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer

LONG = "word " * 2000  # ~10,000 bytes: ~2,500 tokens by respd's estimate


def _serve(tmp: Path, upstream: FakeUpstream) -> RespdServer:
    config = tmp / "respd.toml"
    config.write_text(f'[[models]]\nname = "m"\nbackend = "openai"\nbase_url = "{upstream.base_url}"\n'
                      'upstream_model = "fake-upstream-model"\ntimeout_s = 5\n')  # fmt: skip
    return start_server(tmp, str(config), f"sqlite:///{tmp / 'respd.db'}")


@pytest.fixture(params=["vllm", "llama.cpp", "silent"])
def upstream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, FakeUpstream, RespdServer]]:
    up = FakeUpstream()
    if request.param == "vllm":
        up.max_model_len = 1000
    elif request.param == "llama.cpp":
        up.props_n_ctx = 1000
    up.start()
    server = _serve(tmp_path, up)
    yield request.param, up, server
    server.stop()
    up.stop()


def test_the_window_is_learned_from_the_upstream(upstream: tuple[str, FakeUpstream, RespdServer]) -> None:
    kind, up, server = upstream
    url = server.url + "/v1/responses"
    r = httpx.post(url, json={"model": "m", "input": LONG}, timeout=20)
    chats = [q for q in up.requests if q["path"].endswith("/chat/completions")]
    if kind == "silent":  # an upstream that says nothing: nothing is checked, as before
        assert r.status_code == 200 and len(chats) == 1
        return
    check_error(r, 400, param="input", code="context_length_exceeded")
    assert chats == []  # decided before any call upstream
    # truncation auto drops the oldest items until the rest fits the learned window
    items = [{"role": "user", "content": LONG}, {"role": "assistant", "content": "ok"},
             {"role": "user", "content": "short question"}]  # fmt: skip
    done = httpx.post(url, json={"model": "m", "input": items, "truncation": "auto", "max_output_tokens": 100},
                      timeout=20)  # fmt: skip
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text
    sent = up.requests[-1]["body"]["messages"]
    assert sent == [{"role": "user", "content": "short question"}] or sent[-1]["content"] == "short question"
    assert all(m["content"] != LONG for m in sent)
