"""What one hosted-tool step adds to a response beyond the model turns and the search itself.

    uv run python bench/tool_bench.py [--n 200] [--warmup 20] [--no-readme]

One respd process (SQLite, log level warning) in front of the tests' scripted fake upstream and fake SearXNG
(both in this process's threads, on loopback). Sequential requests (concurrency 1), in rounds that
interleave the scenarios so machine noise hits them all:

* **direct turn**: one chat completion posted straight to the upstream (the answer turn);
* **direct step**: what a web search step needs from outside respd, called straight: the tool-call turn,
  one SearXNG query, the answer turn;
* **respd plain**: ``POST /v1/responses`` answered in one model turn;
* **respd search**: ``POST /v1/responses`` with ``tools: [{"type": "web_search"}]``: turn 1 calls
  ``web_search``, respd searches, turn 2 answers citing ``[1]``.

respd's overhead per response is *plain - direct turn*; the added latency of the tool step is
*search - direct step - that overhead*: respd's own work for the step (the call's item and events, its
rows committed before the search runs and before the next turn, the next model request with the results,
the citations). Medians of per-round values. Writes the section between ``<!-- tool-results:start/end -->``
of bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from bench.run import _free_port, _wait_http, commit, machine  # noqa: E402
from tests.fake_searxng import FakeSearxng  # noqa: E402
from tests.fake_upstream import FakeUpstream, Reply  # noqa: E402

README = BENCH / "README.md"
START, END = "<!-- tool-results:start -->", "<!-- tool-results:end -->"
CALL = Reply(tool_calls=[{"id": "c1", "name": "web_search", "arguments": '{"query": "otters"}'}])
ANSWER = Reply(text="Otters hold hands [1].")


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def chat(client: httpx.Client, upstream: str, messages: list[dict[str, Any]], stream: bool) -> None:
    body: dict[str, Any] = {"model": "fake-upstream-model", "messages": messages}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    r = client.post(upstream + "/chat/completions", json=body)
    assert r.status_code == 200, r.text


def respd(client: httpx.Client, url: str, body: dict[str, Any]) -> None:
    r = client.post(url + "/v1/responses", json=body)
    assert r.status_code == 200, r.text
    if not body.get("stream"):
        out = r.json()
        assert out["status"] == "completed", out
        assert len(out["output"]) == (2 if body.get("tools") else 1), out


def one_round(client: httpx.Client, fake: FakeUpstream, searxng: FakeSearxng, url: str, stream: bool) -> dict[str, float]:
    user = [{"role": "user", "content": "otters?"}]
    fake.script(ANSWER)
    turn = timed(lambda: chat(client, fake.base_url, user, stream))
    fake.script(CALL, ANSWER)

    def direct_step() -> None:
        chat(client, fake.base_url, user, stream)
        client.get(searxng.base_url + "/search", params={"q": "otters", "format": "json"}).raise_for_status()
        chat(client, fake.base_url, user, stream)

    step = timed(direct_step)
    fake.script(ANSWER)
    plain = timed(lambda: respd(client, url, {"model": "m", "input": "otters?", "stream": stream}))
    fake.script(CALL, ANSWER)
    search = timed(lambda: respd(client, url, {"model": "m", "input": "otters?", "stream": stream,
                                               "tools": [{"type": "web_search"}]}))  # fmt: skip
    return {"turn": turn, "step": step, "plain": plain, "search": search}


def run(url: str, fake: FakeUpstream, searxng: FakeSearxng, n: int, warmup: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with httpx.Client(timeout=10) as client:
        for stream in (False, True):
            for _ in range(warmup):
                one_round(client, fake, searxng, url, stream)
            rounds = [one_round(client, fake, searxng, url, stream) for _ in range(n)]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            med["overhead"] = statistics.median(r["plain"] - r["turn"] for r in rounds)
            med["added"] = statistics.median(r["search"] - r["step"] - (r["plain"] - r["turn"]) for r in rounds)
            out["stream" if stream else "json"] = med
    return out


def render(results: dict[str, dict[str, float]], n: int) -> str:
    lines = [f"Last run: {dt.date.today()}, {machine()}, commit {commit()}; {n} rounds per mode, concurrency 1, "
             "SQLite, medians (ms).", "",
             "| mode | direct turn | direct step (2 turns + search) | respd plain | respd with search | "
             "respd overhead per response | **added by the tool step** |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for mode, m in results.items():
        lines.append(f"| {mode} | {m['turn']:.2f} | {m['step']:.2f} | {m['plain']:.2f} | {m['search']:.2f} | "
                     f"{m['overhead']:.2f} | **{m['added']:.2f}** |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    with FakeUpstream() as fake, FakeSearxng() as searxng, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "respd.toml"
        config.write_text(f'outbound_allow = ["127.0.0.1:*"]\n\n[[models]]\nname = "m"\nbackend = "openai"\n'
                          f'base_url = "{fake.base_url}"\nupstream_model = "fake-upstream-model"\n\n'
                          f'[web_search]\nprovider = "searxng"\nbase_url = "{searxng.base_url}"\n')  # fmt: skip
        port = _free_port()
        env = {**os.environ, "RESPD_DATA_DIR": tmp, "RESPD_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([sys.executable, "-m", "respd", "serve", "--port", str(port), "--config", str(config)],
                                env=env)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_http(url + "/healthz", proc)
            results = run(url, fake, searxng, args.n, args.warmup)
        finally:
            proc.terminate()
            proc.wait(10)
    section = render(results, args.n)
    print(section)
    print(json.dumps(results, indent=1))
    if not args.no_readme:
        text = README.read_text()
        if START not in text:
            text += f"\n## One hosted-tool step (bench/tool_bench.py)\n\n{START}\n{END}\n"
        head, rest = text.split(START, 1)
        README.write_text(head + START + "\n" + section + "\n" + END + rest.split(END, 1)[1])
    print(platform.python_version())


if __name__ == "__main__":
    main()
