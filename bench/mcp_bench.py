"""What an MCP call costs beyond the MCP server's own time, with the connection reused.

The test MCP server (``tests/mcp_server.py``, the ``mcp`` SDK's server over Streamable HTTP) runs in its own
process. Two clients call its ``add`` tool one call at a time, in alternating rounds:

* **server alone**: the exact HTTP request respd's client sends for one ``tools/call`` (captured once),
  replayed on one kept-alive httpx2 connection: the server's own time plus loopback HTTP.
* **respd's client**: :class:`respd.tools.mcp.client.Sessions` (pooled session, outbound-policy-guarded
  connection, the SDK's JSON-RPC session), as the ``mcp`` tool uses it.

The difference of the medians is what respd's MCP client adds to a call.

Then **the whole step**: the same responses timed at the upstream, from the moment the fake upstream sent the
last byte of the model's tool call to the moment respd's next model request arrived (both clocks in this
process). That holds everything respd does for the call: reading the turn's end, the call's item and its
events, the commit before the call, the call, the commit after it, and building the next model request.
Its median minus the server-alone median is what respd adds to one MCP call in a response, all in.

Then **through respd**: ``respd serve`` (SQLite, ``store`` on) in front of the scripted fake upstream, whose
model calls the server's ``add`` once per response (``require_approval: "never"``; the first response's
``mcp_list_tools`` item is sent back in each later input, so the list is reused and the context stays the
same size: a growing ``previous_response_id`` chain would time the chain's reading, not the call). Streamed, the client timestamps ``response.mcp_call.in_progress`` (sent, and committed, before
respd calls the server) and ``response.mcp_call.completed`` (after the result is recorded): that gap, minus
the server-alone median, is what respd adds to one MCP call inside a response, its commits included.

Run: ``uv run python bench/mcp_bench.py`` (``--calls N --rounds R --responses M``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from bench.run import _free_port, _wait_http
from respd.outbound import OutboundPolicy
from respd.tools.mcp.client import Server, Sessions
from tests.fake_upstream import FakeUpstream, Reply


def start_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.mcp_server", "--port", str(port)],
                            cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx2.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            return proc
        except httpx2.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the MCP server did not start")


CPU: dict[str, float] = {}  # client process CPU time per call (ms), a measure the machine's load hardly moves
RESPD_CPU: list[float] = []  # respd's CPU time per response (ms), through respd


async def timed(n: int, call: Any, name: str = "") -> list[float]:
    out = []
    cpu = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - t) * 1000)
    CPU[name] = CPU.get(name, 0.0) + (time.process_time() - cpu) * 1000
    return out


async def measure(url: str, calls: int, rounds: int) -> dict[str, list[float]]:
    captured: dict[str, Any] = {}

    async def capture(request: httpx2.Request) -> None:
        if b'"tools/call"' in request.content:
            captured.update(headers=dict(request.headers), body=request.content, url=str(request.url))

    pool = Sessions()
    server = Server(url, OutboundPolicy(allow=("127.0.0.1:*",)), transport="streamable_http")
    await pool.call_tool(server, "add", {"a": 1, "b": 2})  # the session opens once, before timing
    raw = httpx2.AsyncClient(timeout=10)
    results: dict[str, list[float]] = {"server alone": [], "respd's client": []}

    async def via_pool(i: int) -> None:
        await pool.call_tool(server, "add", {"a": i, "b": 2})

    async def via_raw(i: int) -> None:
        reply = await raw.post(captured["url"], content=captured["body"], headers=captured["headers"])
        await reply.aread()
        assert reply.status_code == 200, reply.status_code

    # One tools/call request as the SDK sends it, captured from a session of its own that stays open
    # while the raw client replays it (its session header, if the server keeps sessions, stays valid).
    probe = httpx2.AsyncClient(event_hooks={"request": [capture]})
    async with probe, Client(streamable_http_client(url, http_client=probe), cache=None) as client:
        await client.call_tool("add", {"a": 1, "b": 2})
        await via_raw(0)  # the captured request stands alone (session headers included)
        for _ in range(rounds):
            results["respd's client"] += await timed(calls, via_pool, "respd's client")
            results["server alone"] += await timed(calls, via_raw, "server alone")
    await raw.aclose()
    await pool.aclose()
    return results


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in ms (Linux's /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def through_respd(mcp_url: str, responses: int) -> tuple[list[float], list[float]]:
    """Per response (ms): the client-seen gap between ``mcp_call.in_progress`` and ``.completed``, and the
    whole step as the upstream sees it (its tool-call answer sent → respd's next request)."""
    fake = FakeUpstream()
    fake.start()
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    port = _free_port()
    config = tmp / "respd.toml"
    config.write_text(f'outbound_allow = ["127.0.0.1:*"]\nlog_level = "warning"\n\n[[models]]\nname = "bench-model"\n'
                      f'backend = "openai"\nbase_url = "{fake.base_url}"\n')  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "respd", "serve", "--config", str(config), "--port", str(port),
                             "--database", f"sqlite:///{tmp / 'respd.db'}"], env={**os.environ, "RESPD_DATA_DIR": str(tmp)})  # fmt: skip
    gaps: list[float] = []
    steps: list[float] = []
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        tool = {"type": "mcp", "server_label": "srv", "server_url": mcp_url, "require_approval": "never"}
        listing = None  # the first response's mcp_list_tools item, sent back as input: reused, not fetched again
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            cpu = 0.0
            for i in range(responses + 1):
                if i == 1:
                    cpu = cpu_ms(proc.pid)
                fake.script(Reply(tool_calls=[{"id": f"c{i}", "name": "srv__add", "arguments": '{"a": 1, "b": 2}'}]),
                            Reply(text="3"))  # fmt: skip
                ask = {"role": "user", "content": "1+2?"}
                body = {"model": "bench-model", "input": [listing, ask] if listing else [ask], "tools": [tool],
                        "stream": True}  # fmt: skip
                seen: dict[str, float] = {}
                with http.stream("POST", "/v1/responses", json=body) as reply:
                    for line in reply.iter_lines():
                        if line.startswith("event: response.mcp_call."):
                            seen[line.split(".")[-1]] = time.perf_counter()
                        elif line.startswith("data: ") and '"response.completed"' in line[:60]:
                            listing = listing or json.loads(line[6:])["response"]["output"][0]
                if i:  # the first response also lists the server and opens the session
                    gaps.append((seen["completed"] - seen["in_progress"]) * 1000)
                    steps.append((fake.requests[2 * i + 1]["at"] - fake.replied[2 * i]) * 1000)
        RESPD_CPU.append((cpu_ms(proc.pid) - cpu) / responses)  # a whole response, both model turns included
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        fake.stop()
    return gaps, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--responses", type=int, default=200)
    args = parser.parse_args()
    port = _free_port()
    proc = start_server(port)
    try:
        results = asyncio.run(measure(f"http://127.0.0.1:{port}/mcp", args.calls, args.rounds))
        results["through respd"], results["whole step"] = through_respd(f"http://127.0.0.1:{port}/mcp",
                                                                        args.responses)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    medians = {k: statistics.median(v) for k, v in results.items()}
    for name, values in results.items():
        q = statistics.quantiles(values, n=100)
        cpu = f"   client CPU {CPU[name] / len(values):5.2f} ms/call" if name in CPU else ""
        if name == "whole step" and RESPD_CPU:
            cpu = f"   respd CPU {RESPD_CPU[0]:5.2f} ms/response"
        print(f"{name:16} p50 {medians[name]:6.2f} ms   p90 {q[89]:6.2f} ms   ({len(values)} calls){cpu}")
    added = medians["respd's client"] - medians["server alone"]
    print(f"added by respd's client: {added:+.2f} ms p50")
    added = medians["through respd"] - medians["server alone"]
    print(f"added by respd to an MCP call in a response (in_progress → completed): {added:+.2f} ms p50")
    added = medians["whole step"] - medians["server alone"]
    print(f"added by respd to an MCP call in a response (the whole step, both commits): {added:+.2f} ms p50")


if __name__ == "__main__":
    main()
