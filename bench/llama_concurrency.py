"""The embedded model under concurrent requests: respd's continuous batching against its one-at-a-time
engine and against llama.cpp's own ``llama-server``, same model, threads and slots.

    bash bench/build_llama_server.sh        # once: builds llama-server from the llama.cpp llama-cpp-python ships
    uv run python bench/llama_concurrency.py [--tokens 64] [--rounds 3] [--levels 1,2,4,8] [--no-readme]

Three servers run side by side on the bundled GGUF (Qwen2.5-Coder-0.5B-Instruct Q4_K_M), with the same threads
(`--threads`, default every core):

* **respd** (``respd serve``, SQLite, store on), route ``batched``: the default slot count;
* **respd**, route ``serial``: ``slots = 1``, requests one at a time (what respd did before batching);
* **llama-server** with ``-np <slots> --kv-unified``, the same context per slot, ``--no-repack`` where
  respd's loader leaves out llama.cpp's extra buffer types (a CPU with AMX, see respd/backends/llama_load.py).

For each concurrency level c, c clients each send one streamed request (a distinct counting prompt, greedy,
at most ``--tokens`` output tokens) at once; aggregate tokens/s = all output tokens / time from the first
request sent to the last one done, and time to first token is each request's own (median over the c
requests). Sides and levels are interleaved, the order turning each round, so load from other processes on
the machine hits every side alike; the tables give medians over rounds and per-round ratios.
Rewrites the part of bench/README.md between the ``llama-concurrency`` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from respd.backends import llama_load
from respd.backends.bundled import bundled_path
from respd.backends.llama_engine import default_slots

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_bench import write_readme  # bench/ is not a package: this directory is on sys.path

BENCH = Path(__file__).resolve().parent
START, END = "<!-- llama-concurrency:start -->", "<!-- llama-concurrency:end -->"
N_CTX = 2048  # per slot, on every side


def _post_stream(port: int, path: str, body: dict[str, Any], delta: bytes) -> tuple[float, float, float, bytes]:
    """POST a streamed request; (start, first delta, end, last event line)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise SystemExit(f"{path} answered {r.status}: {r.read()[:300]!r}")
    first, last = 0.0, b""
    while line := r.readline():
        if not first and delta in line:
            first = time.perf_counter()
        if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
            last = line
    conn.close()
    return start, first, time.perf_counter(), last


# respd's repetition guard on free text (respd/backends/llama_sampling.py), asked of llama-server too, so both
# sample alike: the same answers, the same sampler work per token
SAME_GUARD = {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 1024,
              "repeat_penalty": 1.1, "repeat_last_n": 64}  # fmt: skip
Sent = tuple[float, float, float, int]  # start, first token, end, output tokens


def _prompt(k: int) -> str:
    return f"Request {k}. Count from 1 to 1000, separated by commas."  # distinct, so no slot shares a prompt


def respd_request(port: int, model: str, k: int, tokens: int) -> Sent:
    body = {"model": model, "input": _prompt(k), "temperature": 0, "max_output_tokens": tokens, "stream": True}
    start, first, end, last = _post_stream(port, "/v1/responses", body, b"response.output_text.delta")
    return start, first, end, json.loads(last[6:])["response"]["usage"]["output_tokens"]


def server_request(port: int, k: int, tokens: int) -> Sent:
    body = {"messages": [{"role": "user", "content": _prompt(k)}], "temperature": 0, "max_tokens": tokens,
            "stream": True, "stream_options": {"include_usage": True}, **SAME_GUARD}  # fmt: skip
    start, first, end, last = _post_stream(port, "/v1/chat/completions", body, b'"content":"')
    return start, first, end, json.loads(last[6:])["usage"]["completion_tokens"]


def burst(send: Callable[[int], Sent], c: int, seed: int) -> tuple[float, float]:
    """c requests at once; (aggregate output tokens/s, median time to first token)."""
    results: list[Sent] = []
    threads = [threading.Thread(target=lambda i=i: results.append(send(seed + i))) for i in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == c, "a request failed"
    wall = max(r[2] for r in results) - min(r[0] for r in results)
    return sum(r[3] for r in results) / wall, statistics.median(r[1] - r[0] for r in results)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], path: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server on {port} did not start")


def start_respd(tmp: Path, slots: int, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    config = tmp / "respd.toml"
    config.write_text(f'log_level = "warning"\n'
                      f'[[models]]\nname = "batched"\nbackend = "llama_cpp"\nn_ctx = {N_CTX}\nslots = {slots}\n'
                      f'n_threads = {threads}\nmax_queue = 64\n'
                      f'[[models]]\nname = "serial"\nbackend = "llama_cpp"\nn_ctx = {N_CTX}\nslots = 1\n'
                      f'n_threads = {threads}\nmax_queue = 64\n')  # fmt: skip
    port = 18500 + os.getpid() % 500
    log = tmp / "respd.log"
    proc = subprocess.Popen([sys.executable, "-m", "respd", "serve", "--port", str(port), "--config", str(config)],
                            env={**os.environ, "RESPD_DATA_DIR": str(tmp)}, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))  # fmt: skip
    _wait_ready(port, proc, "/healthz", log)
    return proc, port


def start_llama_server(binary: str, tmp: Path, slots: int, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    port = 19000 + os.getpid() % 500
    args = [binary, "-m", str(bundled_path()), "--port", str(port), "-t", str(threads), "-tb", str(threads),
            "-np", str(slots), "-c", str(N_CTX * slots), "--kv-unified", "-b", "512", "-ub", "512",
            "--no-webui", "--jinja"]  # fmt: skip
    if llama_load.uses_amx():
        args.append("--no-repack")  # as respd loads it there: without llama.cpp's extra buffer types
    log = tmp / "llama-server.log"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    _wait_ready(port, proc, "/health", log)
    return proc, port


def report(res: dict[str, dict[int, list[tuple[float, float]]]], args: argparse.Namespace, slots: int,
           threads: int, load: tuple[float, float]) -> str:  # fmt: skip
    def agg(side: str, c: int) -> list[float]:
        return [tps for tps, _ in res[side][c]]

    lines = [
        f"Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {threads} threads and "
        f"{slots} slots on every side, {N_CTX} tokens of context per slot, {args.tokens} output tokens per "
        f"request at most (greedy), {args.rounds} rounds interleaved, medians; load average before/after "
        f"{load[0]:.2f}/{load[1]:.2f} (the machine is shared).",
        "",
        "| concurrent requests | respd batched tok/s | respd one at a time tok/s | llama-server tok/s | "
        "batched / one at a time | **respd / llama-server** | time to first token: respd / one at a time / "
        "llama-server |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]

    def med(values: list[float], fmt: str) -> str:
        return format(statistics.median(values), fmt) if values else "n/a"

    for c in args.levels:
        b, s, ls = agg("batched", c), agg("serial", c), agg("server", c)
        vs_serial = [x / y for x, y in zip(b, s, strict=True)]
        vs_server = [x / y for x, y in zip(b, ls, strict=False)]
        ttft = [med([t * 1000 for _, t in res[side][c]], ".0f") for side in ("batched", "serial", "server")]
        lines.append(f"| {c} | {med(b, '.1f')} | {med(s, '.1f')} | {med(ls, '.1f')} | {med(vs_serial, '.2f')}x "
                     f"| **{med(vs_server, '.0%')}** | {ttft[0]} / {ttft[1]} / {ttft[2]} ms |")  # fmt: skip
    single = statistics.median(agg("batched", 1)) if 1 in args.levels else float("nan")
    if 4 in args.levels:
        four = statistics.median(agg("batched", 4))
        vs = med([x / y for x, y in zip(agg("batched", 4), agg("server", 4), strict=False)], ".0%")
        lines += ["", f"Targets at 4 concurrent: aggregate {four:.1f} tok/s = **{four / single:.2f}x** the single-request "
                      f"rate (target ≥ 2x); **{vs}** of llama-server's (target ≥ 85 %)."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--levels", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4, 8])
    p.add_argument("--slots", type=int, default=default_slots(), help="slots on both servers (respd's default)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads on both servers (default every core; on a machine busy with other work, fewer)")
    p.add_argument("--llama-server", default="", help="the binary (default: built by bench/build_llama_server.sh)")
    p.add_argument("--no-llama-server", action="store_true", help="respd's two sides only (no reference build)")
    p.add_argument("--no-readme", action="store_true")
    args = p.parse_args()
    binary = "" if args.no_llama_server else (
        args.llama_server or subprocess.check_output(["bash", str(BENCH / "build_llama_server.sh")], text=True).strip()
    )
    threads = args.threads
    res: dict[str, dict[int, list[tuple[float, float]]]] = {s: {c: [] for c in args.levels} for s in ("batched", "serial", "server")}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            rp, rport = start_respd(Path(tmp), args.slots, threads)
            procs.append(rp)
            sides: list[tuple[str, Callable[[int], Sent]]] = [
                ("batched", lambda k: respd_request(rport, "batched", k, args.tokens)),
                ("serial", lambda k: respd_request(rport, "serial", k, args.tokens)),
            ]
            if binary:
                sp, sport = start_llama_server(binary, Path(tmp), args.slots, threads)
                procs.append(sp)
                sides.append(("server", lambda k: server_request(sport, k, args.tokens)))
            for _, send in sides:  # warm-up: page the weights in, fill caches
                burst(send, 2, 900)
            for r in range(args.rounds):
                for c in args.levels:
                    for side, send in sides[r % len(sides) :] + sides[: r % len(sides)]:
                        res[side][c].append(burst(send, c, 10 * r + c))
                    print(f"round {r + 1} c={c}: " + ", ".join(
                        f"{side} {res[side][c][-1][0]:.1f} tok/s" for side, _ in sides), flush=True)  # fmt: skip
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    text = report(res, args, args.slots, threads, (load0, os.getloadavg()[0]))
    print(text)
    if not args.no_readme:
        write_readme(text, START, END)


if __name__ == "__main__":
    main()
