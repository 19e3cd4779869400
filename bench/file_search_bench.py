"""What one ``file_search`` step adds to a response beyond its model turns.

    uv run python bench/file_search_bench.py [--n 100] [--warmup 10] [--files 40] [--embedder fake|bundled]
                                             [--database-url URL] [--no-readme]

One respd process (SQLite unless ``--database-url``, log level warning) in front of the tests' scripted fake
upstream (in this process's threads, on loopback), with a vector store of ``--files`` small documents
indexed before timing starts. The query is embedded by the tests' fake embeddings upstream (``fake``: a
loopback HTTP call, hashed bags of words) or by the bundled MiniLM model (``bundled``: what a default
install does, 10 to 40 ms a query on this host). Sequential requests (concurrency 1), in rounds that
interleave the scenarios so machine noise hits them all:

* **direct turn**: one chat completion posted straight to the upstream;
* **direct turns**: the two chat completions a file_search response needs (the call, the answer), straight;
* **search API**: ``POST /v1/vector_stores/{id}/search`` with the same query (the search alone, through
  respd's HTTP layer);
* **respd plain**: ``POST /v1/responses`` answered in one model turn;
* **respd file_search**: ``POST /v1/responses`` with ``tools: [{"type": "file_search", …}]``: turn 1 calls
  ``file_search``, respd searches the store, turn 2 answers citing ``[1]`` (a file_citation).

respd's overhead per response is *plain - direct turn*; the latency **added by the file_search step** is
*file_search - direct turns - that overhead*: the search itself (query embedding, vector and keyword
ranking, fusion) plus respd's own work for the step (the call's item and events, its rows committed before
the search and before the next turn, the next model request with the numbered chunks, the citations).
Medians of per-round values. Writes the section between ``<!-- file-search-results:start/end -->`` of
bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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
from tests.fake_embeddings import FakeEmbeddings  # noqa: E402
from tests.fake_upstream import FakeUpstream, Reply  # noqa: E402

README = BENCH / "README.md"
START, END = "<!-- file-search-results:start -->", "<!-- file-search-results:end -->"
QUERY = "how long do I hold the reset button of the router"
CALL = Reply(tool_calls=[{"id": "c1", "name": "file_search", "arguments": json.dumps({"queries": [QUERY]})}])
ANSWER = Reply(text="Hold it for ten seconds [1].")
TOPICS = ["router", "payroll", "holiday", "laptop", "printer", "expenses", "badge", "parking", "vpn", "backup"]


def document(i: int) -> str:
    """A small handbook page (a few chunks): each topic's pages share words, so the search has to rank."""
    topic = TOPICS[i % len(TOPICS)]
    lines = [f"Handbook page {i} about the {topic}."]
    for j in range(30):
        lines.append(f"Step {j} for the {topic}: check item {i * 31 + j}, then hold the {topic} button for {j} "
                     f"seconds and note reference {topic.upper()}-{i:03d}-{j:02d} in the log.")  # fmt: skip
    return "\n".join(lines)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def chat(client: httpx.Client, upstream: str) -> None:
    body = {"model": "fake-upstream-model", "messages": [{"role": "user", "content": "reset?"}]}
    r = client.post(upstream + "/chat/completions", json=body)
    assert r.status_code == 200, r.text


def respd(client: httpx.Client, url: str, body: dict[str, Any]) -> None:
    r = client.post(url + "/v1/responses", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "completed", out
    if body.get("tools"):
        fs, msg = out["output"]
        assert fs["status"] == "completed" and msg["content"][0]["annotations"], out


def search(client: httpx.Client, url: str, vsid: str) -> None:
    r = client.post(f"{url}/v1/vector_stores/{vsid}/search", json={"query": QUERY})
    assert r.status_code == 200 and r.json()["data"], r.text


def one_round(client: httpx.Client, fake: FakeUpstream, url: str, vsid: str) -> dict[str, float]:
    fake.script(ANSWER)
    turn = timed(lambda: chat(client, fake.base_url))
    fake.script(CALL, ANSWER)

    def two_turns() -> None:
        chat(client, fake.base_url)
        chat(client, fake.base_url)

    turns = timed(two_turns)
    api = timed(lambda: search(client, url, vsid))
    fake.script(ANSWER)
    plain = timed(lambda: respd(client, url, {"model": "m", "input": "reset?"}))
    fake.script(CALL, ANSWER)
    tool = {"type": "file_search", "vector_store_ids": [vsid]}
    fs = timed(lambda: respd(client, url, {"model": "m", "input": "reset?", "tools": [tool]}))
    return {"turn": turn, "turns": turns, "api": api, "plain": plain, "fs": fs}


def index(client: httpx.Client, url: str, files: int) -> str:
    """A vector store of ``files`` documents, every one indexed."""
    vsid: str = client.post(url + "/v1/vector_stores", json={"name": "bench"}).json()["id"]
    for i in range(files):
        up = client.post(url + "/v1/files", data={"purpose": "assistants"},
                         files={"file": (f"page-{i}.txt", document(i).encode())})  # fmt: skip
        up.raise_for_status()
        client.post(f"{url}/v1/vector_stores/{vsid}/files", json={"file_id": up.json()["id"]}).raise_for_status()
    deadline = time.monotonic() + 1800
    while True:
        counts = client.get(f"{url}/v1/vector_stores/{vsid}").json()["file_counts"]
        if counts["completed"] == files:
            return vsid
        assert counts["failed"] == 0 and time.monotonic() < deadline, counts
        time.sleep(0.5)


def run(url: str, fake: FakeUpstream, n: int, warmup: int, files: int) -> tuple[dict[str, float], int]:
    with httpx.Client(timeout=60) as client:
        vsid = index(client, url, files)
        chunks = sum(len(client.get(f"{url}/v1/vector_stores/{vsid}/files/{f['id']}/content").json()["data"])
                     for f in client.get(f"{url}/v1/vector_stores/{vsid}/files?limit=100").json()["data"])  # fmt: skip
        for _ in range(warmup):
            one_round(client, fake, url, vsid)
        rounds = [one_round(client, fake, url, vsid) for _ in range(n)]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    med["overhead"] = statistics.median(r["plain"] - r["turn"] for r in rounds)
    med["added"] = statistics.median(r["fs"] - r["turns"] - (r["plain"] - r["turn"]) for r in rounds)
    med["added_p90"] = statistics.quantiles([r["fs"] - r["turns"] - (r["plain"] - r["turn"]) for r in rounds], n=10)[-1]
    return med, chunks


def render(m: dict[str, float], n: int, files: int, chunks: int, embedder: str, database: str, load: str) -> str:
    lines = [f"Last run: {dt.date.today()}, {machine()}, commit {commit()}; {n} rounds, concurrency 1, {database}, "
             f"{embedder} embedder, a store of {files} files ({chunks} chunks), medians (ms). Load at start: {load}.",
             "",
             "| direct turn | direct turns (2) | search API | respd plain | respd file_search | "
             "respd overhead per response | **added by the file_search step** (p90) |", "|---|---|---|---|---|---|---|",
             f"| {m['turn']:.2f} | {m['turns']:.2f} | {m['api']:.2f} | {m['plain']:.2f} | {m['fs']:.2f} | "
             f"{m['overhead']:.2f} | **{m['added']:.2f}** ({m['added_p90']:.2f}) |"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--embedder", choices=["fake", "bundled"], default="fake")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1]
    embeddings = FakeEmbeddings()
    embeddings.start()
    try:
        with FakeUpstream() as fake, tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "respd.toml"
            table = f'\n[embeddings]\nbase_url = "{embeddings.base_url}"\nmodel = "hash-64"\n'
            config.write_text(f'[[models]]\nname = "m"\nbackend = "openai"\nbase_url = "{fake.base_url}"\n'
                              f'upstream_model = "fake-upstream-model"\n' + (table if args.embedder == "fake" else ""))  # fmt: skip
            port = _free_port()
            database = args.database_url or f"sqlite:///{tmp}/respd.db"
            env = {**os.environ, "RESPD_DATA_DIR": tmp, "RESPD_LOG_LEVEL": "warning", "RESPD_DATABASE_URL": database}
            proc = subprocess.Popen([sys.executable, "-m", "respd", "serve", "--port", str(port), "--config",
                                     str(config)], env=env)  # fmt: skip
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_http(url + "/healthz", proc)
                med, chunks = run(url, fake, args.n, args.warmup, args.files)
            finally:
                proc.terminate()
                proc.wait(10)
    finally:
        embeddings.stop()
    kind = "PostgreSQL" if database.startswith("postgres") else "SQLite"
    section = render(med, args.n, args.files, chunks, args.embedder, kind, load.strip())
    print(section)
    print(json.dumps(med, indent=1))
    if not args.no_readme:
        text = README.read_text()
        if START not in text:
            text += f"\n## One file_search step (`bench/file_search_bench.py`)\n\n{START}\n{END}\n"
        head, rest = text.split(START, 1)
        README.write_text(head + START + "\n" + section + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
