"""The embedded model through respd vs. llama-cpp-python called directly, and chained-turn time to first token.

    uv run python bench/llama_bench.py [--tokens 128] [--rounds 12] [--chain-rounds 2] [--no-readme]

Both sides run the bundled GGUF (Qwen2.5-Coder-0.5B-Instruct Q4_K_M) with the same thread count (every core),
greedy decoding and the same chat messages, alternately, one at a time:

* **direct**: ``Llama.create_chat_completion(stream=True)`` in this process;
* **respd**: ``POST /v1/responses`` with ``stream: true`` to a ``respd serve`` process (SQLite, store on),
  read as server-sent events.

Decode speed is (output tokens - 1) / (time from the first text to the last), so prompt reading is out of it;
end-to-end speed divides all output tokens by the whole request. The chained-turn part measures the second
turn of a ``previous_response_id`` chain over a ~1,000-token context: time to first text with the KV cache
kept from turn 1, after another conversation ran in between (saved cache restored), and cold (the same
prompt on a route with no cache, after another conversation replaced the context).

Prints a table and rewrites the part of bench/README.md between the ``llama-results`` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from llama_cpp import Llama

from respd.backends import llama_load
from respd.backends.bundled import BUNDLED, bundled_path

BENCH = Path(__file__).resolve().parent
README = BENCH / "README.md"
START, END = "<!-- llama-results:start -->", "<!-- llama-results:end -->"
PROMPT = "Count from 1 to 1000, separated by commas."
CONFIG = """
log_level = "warning"
[[models]]
name = "local"
backend = "llama_cpp"
[[models]]
name = "local-nocache"
backend = "llama_cpp"
cache_mb = 0
"""


@dataclass
class Sample:
    tokens: int
    decode_tps: float
    e2e_tps: float
    ttft_s: float


@dataclass
class Results:
    direct: list[Sample] = field(default_factory=list)
    respd: list[Sample] = field(default_factory=list)
    respd_nostore: list[Sample] = field(default_factory=list)
    ttft: dict[str, list[float]] = field(default_factory=lambda: {"warm": [], "interleaved": [], "cold": []})
    cached: dict[str, list[int]] = field(default_factory=lambda: {"warm": [], "interleaved": [], "cold": []})
    input_tokens: list[int] = field(default_factory=list)
    loop_cpu_ms: list[float] = field(default_factory=list)  # respd's event-loop thread, CPU ms per output token


def _thread_cpu_s(pid: int) -> float:
    """CPU seconds used so far by thread ``pid`` of process ``pid`` (its main thread: respd's event loop)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")  # not Linux
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sample(start: float, marks: list[float], tokens: int) -> Sample:
    first, last = marks[0], marks[-1]
    return Sample(tokens, (tokens - 1) / (last - first), tokens / (last - start), first - start)


def run_direct(llm: Llama, max_tokens: int) -> Sample:
    start, marks, finish = time.perf_counter(), [], None
    stream: Iterator[Any] = llm.create_chat_completion(  # type: ignore[assignment]
        messages=[{"role": "user", "content": PROMPT}], stream=True, temperature=0.0, max_tokens=max_tokens
    )
    for chunk in stream:
        choice = chunk["choices"][0]
        if choice["delta"].get("content"):
            marks.append(time.perf_counter())
        finish = choice.get("finish_reason") or finish
    assert finish == "length", finish  # so both sides produce exactly max_tokens
    return _sample(start, marks, max_tokens)


# One keep-alive connection, like any real client (the openai SDK keeps its client), read line by line with the
# standard library's http.client. The reader's own CPU competes with llama.cpp's threads for the same cores
# while it is timed, so it is kept as small as a real reader can be: httpx's line iterator took ~400 µs of
# CPU per token here, http.client ~200 µs (the direct side has no reader process at all).
_CONN: dict[str, http.client.HTTPConnection] = {}


def _stream(url: str, body: dict[str, Any]) -> tuple[float, list[float], dict[str, Any]]:
    """POST a streaming request; (start, times of text deltas, final response)."""
    host = url.removeprefix("http://")
    start, marks, final = time.perf_counter(), [], {}
    data = json.dumps({**body, "stream": True})
    for attempt in (1, 2):  # the server closes a connection idle for 5 s (uvicorn's keep-alive): reconnect once
        conn = _CONN.get(host) or _CONN.setdefault(host, http.client.HTTPConnection(host, timeout=600))
        try:
            conn.request("POST", "/v1/responses", data, {"Content-Type": "application/json"})
            r = conn.getresponse()
            break
        except (ConnectionError, http.client.HTTPException):
            conn.close()
            del _CONN[host]
            if attempt == 2:
                raise
            start = time.perf_counter()
    if r.status != 200:
        raise SystemExit(f"respd answered {r.status}: {r.read()[:500]!r}")
    while line := r.readline():
        if line.startswith(b"event: response.output_text.delta"):
            marks.append(time.perf_counter())
        elif line.startswith(b"data: ") and b'"type":"response.' in line[:40] and b'"response":' in line:
            event = json.loads(line[6:])
            if event["type"] in ("response.completed", "response.incomplete", "response.failed"):
                final = event["response"]
    return start, marks, final


def run_respd(url: str, max_tokens: int, **extra: Any) -> Sample:
    body = {"model": "local", "input": PROMPT, "temperature": 0, "max_output_tokens": max_tokens, **extra}
    start, marks, final = _stream(url, body)
    assert final["status"] == "incomplete", final["status"]
    tokens = final["usage"]["output_tokens"]
    assert tokens == max_tokens, tokens
    return _sample(start, marks, tokens)


def _catalogue(tag: str) -> str:
    colours = ["red", "blue", "green", "black", "white", "yellow"]
    lines = [f"Catalogue {tag}. Answer questions about these items briefly."]
    for i in range(1, 41):
        lines.append(f"Item {i}: a {colours[i % 6]} widget, {(i * 37) % 90 + 10} dollars, {(i * 13) % 9 + 1} kg.")
    return "\n".join(lines)


def _turn(
    url: str, model: str, instructions: str, inp: Any, previous: str | None = None
) -> tuple[float, dict[str, Any]]:
    body: dict[str, Any] = {"model": model, "instructions": instructions, "input": inp, "temperature": 0,
                            "max_output_tokens": 24}  # fmt: skip
    if previous:
        body["previous_response_id"] = previous
    start, marks, final = _stream(url, body)
    return (marks[0] - start if marks else float("nan")), final


def run_chain(url: str, tag: str, res: Results) -> None:
    doc, other = _catalogue(tag), _catalogue(tag + "-other")
    q1, q2 = "Which item is the cheapest? Give its number.", "And which is the heaviest?"
    # warm: turn 2 right after turn 1
    _, t1 = _turn(url, "local", doc, q1)
    ttft, t2 = _turn(url, "local", doc, q2, previous=t1["id"])
    res.ttft["warm"].append(ttft)
    res.cached["warm"].append(t2["usage"]["input_tokens_details"]["cached_tokens"])
    res.input_tokens.append(t2["usage"]["input_tokens"])
    # interleaved: another conversation between the turns (its context is set aside, then restored)
    _, t1 = _turn(url, "local", doc + " ", q1)
    _turn(url, "local", other, q1)
    ttft, t2 = _turn(url, "local", doc + " ", q2, previous=t1["id"])
    res.ttft["interleaved"].append(ttft)
    res.cached["interleaved"].append(t2["usage"]["input_tokens_details"]["cached_tokens"])
    # cold: the same second-turn prompt on the route without a cache, after another conversation
    _turn(url, "local-nocache", other, q1)
    history = [{"role": "user", "content": q1}, {"role": "assistant", "content": t1["output"][0]["content"][0]["text"]},
               {"role": "user", "content": q2}]  # fmt: skip
    ttft, t2c = _turn(url, "local-nocache", doc + " ", history)
    res.ttft["cold"].append(ttft)
    res.cached["cold"].append(t2c["usage"]["input_tokens_details"]["cached_tokens"])


def _start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / "respd.toml"
    config.write_text(CONFIG)
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "RESPD_DATA_DIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "respd", "serve", "--port", str(port), "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("respd exited:\n" + (tmp / "server.log").read_text())
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("respd did not start")


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(res: Results, args: argparse.Namespace, load: tuple[float, float]) -> str:
    d_dec, r_dec = _median([s.decode_tps for s in res.direct]), _median([s.decode_tps for s in res.respd])
    d_e2e, r_e2e = _median([s.e2e_tps for s in res.direct]), _median([s.e2e_tps for s in res.respd])
    ns_dec, ns_e2e = _median([s.decode_tps for s in res.respd_nostore]), _median([s.e2e_tps for s in res.respd_nostore])
    ratio = r_dec / d_dec
    paired = _median([r.decode_tps / d.decode_tps for d, r in zip(res.direct, res.respd, strict=True)])
    ns_paired = _median([r.decode_tps / d.decode_tps for d, r in zip(res.direct, res.respd_nostore, strict=True)])
    spread = sorted(r.decode_tps / d.decode_tps for d, r in zip(res.direct, res.respd, strict=True))
    warm, inter, cold = (_median(res.ttft[k]) for k in ("warm", "interleaved", "cold"))
    lines = [
        f"Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"model {BUNDLED.name} ({BUNDLED.filename}), both sides {os.cpu_count()} threads (respd's default: every core), "
        f"{args.rounds} throughput rounds (per-round ratios {spread[0]:.0%} to {spread[-1]:.0%}), "
        f"{args.chain_rounds} chained-turn rounds, medians; "
        f"load average before/after {load[0]:.2f}/{load[1]:.2f}.",
        "",
        f"Throughput, {args.tokens} output tokens, greedy:",
        "",
        "| | decode tok/s | end-to-end tok/s | time to first token |",
        "|---|---|---|---|",
        f"| llama-cpp-python direct | {d_dec:.1f} | {d_e2e:.1f} | {_median([s.ttft_s for s in res.direct]) * 1000:.0f} ms |",
        f"| through respd (stream, stored) | {r_dec:.1f} | {r_e2e:.1f} | {_median([s.ttft_s for s in res.respd]) * 1000:.0f} ms |",
        f"| **respd / direct** | **{paired:.1%}** (target ≥ 95%; median of the per-round ratios; ratio of the "
        f"medians {ratio:.1%}) | {r_e2e / d_e2e:.1%} | |",
        f"| through respd, `store: false` (diagnostic) | {ns_dec:.1f} ({ns_paired:.1%}) | {ns_e2e:.1f} | "
        f"{_median([s.ttft_s for s in res.respd_nostore]) * 1000:.0f} ms |",
        "",
        f"respd's event-loop thread used {_median(res.loop_cpu_ms):.2f} ms of CPU per output token (stored "
        "stream; the part of respd's cost that competes with llama.cpp's threads for the cores).",
        "",
        f"Second turn of a `previous_response_id` chain, {_median([float(n) for n in res.input_tokens]):.0f} prompt tokens:",
        "",
        "| second turn | time to first token | prompt tokens reused |",
        "|---|---|---|",
        f"| KV cache kept from turn 1 | {warm * 1000:.0f} ms | {_median([float(n) for n in res.cached['warm']]):.0f} |",
        f"| another conversation in between (kept in its slot, or a saved cache restored) | {inter * 1000:.0f} ms | {_median([float(n) for n in res.cached['interleaved']]):.0f} |",
        f"| cold (no cache) | {cold * 1000:.0f} ms | {_median([float(n) for n in res.cached['cold']]):.0f} |",
        "",
        f"Cache reuse makes the second turn's first token {cold / warm:.1f}x sooner ({cold / inter:.1f}x with a "
        "conversation in between).",
    ]
    return "\n".join(lines)


def write_readme(text: str, start: str = START, end: str = END) -> None:
    """Put ``text`` between the ``start`` and ``end`` markers of bench/README.md (appended if missing)."""
    readme = README.read_text()
    if start in readme and end in readme:
        head, rest = readme.split(start, 1)
        readme = head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1]
    else:
        readme = readme.rstrip("\n") + f"\n\n{start}\n{text}\n{end}\n"
    README.write_text(readme)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=128, help="output tokens per throughput request")
    p.add_argument("--rounds", type=int, default=12, help="throughput rounds (medians are reported)")
    p.add_argument("--chain-rounds", type=int, default=2, help="chained-turn rounds")
    p.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = p.parse_args()
    path = bundled_path()
    threads = os.cpu_count() or 1
    # loaded as respd loads it (respd.backends.llama_load: without llama.cpp's AMX kernels where they crash)
    llm = llama_load.load(str(path), n_ctx=8192, n_threads=threads, n_threads_batch=threads, verbose=False)
    res = Results()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_server(Path(tmp))
        try:
            run_direct(llm, 16)  # warm-ups: page in the weights, build caches
            run_respd(url, 16)

            def stored() -> Sample:
                cpu = _thread_cpu_s(proc.pid)
                sample = run_respd(url, args.tokens)
                res.loop_cpu_ms.append((_thread_cpu_s(proc.pid) - cpu) * 1000 / args.tokens)
                return sample

            sides: list[tuple[list[Sample], Callable[[], Sample]]] = [
                (res.direct, lambda: run_direct(llm, args.tokens)),
                (res.respd, stored),
                (res.respd_nostore, lambda: run_respd(url, args.tokens, store=False)),
            ]
            for r in range(args.rounds):
                # back to back, the order turning each round, so a machine that slows or speeds up meanwhile
                # favours no side; each round's ratio compares runs a few seconds apart
                for samples, run in sides[r % 3 :] + sides[: r % 3]:
                    samples.append(run())
                print(f"round {r + 1}: direct {res.direct[-1].decode_tps:.1f} tok/s, respd {res.respd[-1].decode_tps:.1f} "
                      f"(no store {res.respd_nostore[-1].decode_tps:.1f}) tok/s", flush=True)  # fmt: skip
            for r in range(args.chain_rounds):
                run_chain(url, f"#{r}-{os.getpid()}", res)
                print(f"chain {r + 1}: ttft warm {res.ttft['warm'][-1] * 1000:.0f} ms, "
                      f"cold {res.ttft['cold'][-1] * 1000:.0f} ms", flush=True)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(10)
    text = report(res, args, (load0, os.getloadavg()[0]))
    print(text)
    if not args.no_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
