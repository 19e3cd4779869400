"""Background responses across two replicas on one PostgreSQL database.

    uv run python bench/background_bench.py [--jobs 1000] [--resumes 10] [--no-readme]

1. **Many jobs.** ``--jobs`` background responses created at once (``background`` and ``stream`` true), split
   evenly over replicas A and B, in front of ``bench/fast_upstream.py`` (64 tokens per answer). Each client
   reads its stream to the end. Checked afterwards in the database: every response ``completed``, exactly one
   terminal event in each log, a continuous log, no job row left. *Time to claim* is, per response, the time
   between the client receiving ``response.queued`` and ``response.in_progress`` (the job started on some
   replica: at once if the accepting replica had room, else when one took it from the queue).
2. **Cross-replica live resume.** ``--resumes`` responses streamed from A by the creating client while a
   second client follows the same response from B (``GET ?stream=true``) and a third from A. For every
   delta event, the arrival time at each follower minus the arrival time at the creating client: the
   added latency of following from another replica (events reach B through the database and a NOTIFY)
   against following on the replica that runs it (from memory). The upstream here is the scripted fake of
   the tests, sending 40 chunks 20 ms apart.

3. **Cross-replica cancel.** ``--cancels`` times: a background response runs on A; the cancel is sent to B;
   the time until the upstream sees A hang up (B answers once the response is cancelled).

Writes the section between ``<!-- background-results:start/end -->`` of bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from bench.run import _free_port, _wait_http  # noqa: E402
from tests.fake_upstream import FakeUpstream, Reply  # noqa: E402

README = BENCH / "README.md"
START, END = "<!-- background-results:start -->", "<!-- background-results:end -->"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sse(session: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any] | None = None,
              first: asyncio.Future[str] | None = None) -> list[tuple[float, dict[str, Any]]]:  # fmt: skip
    """Every event of one SSE request with the monotonic time it arrived; ``first`` gets the response id."""
    out = []
    async with session.request(method, url, json=body) as r:
        if r.status != 200:
            raise SystemExit(f"{method} {url} answered {r.status}: {await r.text()}")
        buf = b""
        async for chunk in r.content.iter_any():
            now = time.monotonic()
            buf += chunk
            *frames, buf = buf.split(b"\n\n")
            for fr in frames:
                for line in fr.split(b"\n"):
                    if line.startswith(b"data: "):
                        out.append((now, json.loads(line[6:])))
                        if first is not None and not first.done():
                            first.set_result(out[0][1]["response"]["id"])
    return out


def start_replica(name: str, tmp: Path, config: Path, db: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "RESPD_DATA_DIR": str(tmp / name), "RESPD_LOG_LEVEL": "warning"}
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "respd"), "serve", "--port", str(port), "--config", str(config),
         "--database", db], env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}"


async def many_jobs(urls: list[str], n: int, db: str) -> dict[str, Any]:
    body = {"model": "bench-model", "input": "hello", "background": True, "stream": True}
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
        t0 = time.monotonic()
        results = await asyncio.gather(*(sse(s, "POST", urls[i % 2] + "/v1/responses", body) for i in range(n)))
        wall = time.monotonic() - t0
    claims, ids = [], []
    for events in results:
        times = {ev["type"]: t for t, ev in events}
        claims.append((times["response.in_progress"] - times["response.queued"]) * 1000)
        ids.append(events[0][1]["response"]["id"])
        if events[-1][1]["type"] != "response.completed":
            raise SystemExit(f"a stream ended with {events[-1][1]['type']}")
    pg = await asyncpg.connect(db)
    try:
        # a client has its terminal event once it is durable; the check still waits for stragglers
        for _ in range(300):
            if not await pg.fetchval("SELECT count(*) FROM jobs"):
                break
            await asyncio.sleep(0.1)
        statuses = await pg.fetch("SELECT status, count(*) AS n FROM responses WHERE id = ANY($1) GROUP BY status", ids)
        jobs_left = await pg.fetchval("SELECT count(*) FROM jobs")
        logs = await pg.fetch("SELECT response_id, seq, last_seq, body FROM response_events WHERE response_id = ANY($1)"
                              " ORDER BY response_id, seq", ids)  # fmt: skip
    finally:
        await pg.close()
    terminal: dict[str, int] = {}
    next_seq: dict[str, int] = {}
    for row in logs:
        if row["seq"] != next_seq.get(row["response_id"], 0):
            raise SystemExit(f"log of {row['response_id']} has a gap or a duplicate at {row['seq']}")
        next_seq[row["response_id"]] = row["last_seq"] + 1
        terminal[row["response_id"]] = terminal.get(row["response_id"], 0) + row["body"].count('"response.completed"')
    return {
        "n": n, "wall_s": wall, "statuses": {r["status"]: r["n"] for r in statuses}, "jobs_left": jobs_left,
        "one_terminal_each": all(terminal.get(i) == 1 for i in ids) and len(set(ids)) == n,
        "claim_p50": pct(claims, 0.5), "claim_p99": pct(claims, 0.99), "claim_max": max(claims),
    }  # fmt: skip


async def resumes(a: str, b: str, fake: FakeUpstream, n: int) -> dict[str, Any]:
    cross: list[float] = []
    local: list[float] = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            fake.script(Reply(chunks=[f"w{i} " for i in range(40)], delay_s=0.02))
            body = {"model": "paced-model", "input": "go", "background": True, "stream": True}
            started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            creator = asyncio.create_task(sse(s, "POST", a + "/v1/responses", body, started))
            rid = await started
            on_b = asyncio.create_task(sse(s, "GET", f"{b}/v1/responses/{rid}?stream=true"))
            on_a = asyncio.create_task(sse(s, "GET", f"{a}/v1/responses/{rid}?stream=true"))
            made, seen_b, seen_a = await asyncio.gather(creator, on_b, on_a)
            t_made = {ev["sequence_number"]: t for t, ev in made if ev["type"] == "response.output_text.delta"}
            for follower, sink in ((seen_b, cross), (seen_a, local)):
                for t, ev in follower:
                    seq = ev["sequence_number"]
                    if seq in t_made and seq > min(t_made) + 3:  # skip the backlog a late follower replays
                        sink.append((t - t_made[seq]) * 1000)
    return {"n": n, "cross_p50": pct(cross, 0.5), "cross_p99": pct(cross, 0.99),
            "local_p50": pct(local, 0.5), "local_p99": pct(local, 0.99), "samples": len(cross)}  # fmt: skip


async def cancels(a: str, b: str, fake: FakeUpstream, n: int) -> dict[str, Any]:
    """Cancel on B a response running on A: time from sending the cancel to A hanging up on the upstream."""
    stops: list[float] = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            fake.reset()
            fake.script(Reply(chunks=[f"c{i} " for i in range(1000)], delay_s=0.02))
            body = {"model": "paced-model", "input": "go", "background": True}
            async with s.post(a + "/v1/responses", json=body) as r:
                rid = (await r.json())["id"]
            await asyncio.to_thread(fake.wait_for_requests, 1)
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            async with s.post(f"{b}/v1/responses/{rid}/cancel") as r:
                if (await r.json())["status"] != "cancelled":
                    raise SystemExit("cancel did not cancel")
            if not await asyncio.to_thread(fake.wait_for_disconnect, 10.0):
                raise SystemExit("A did not stop")
            stops.append((time.monotonic() - t0) * 1000)
    return {"n": n, "p50": pct(stops, 0.5), "max": max(stops)}


def write_readme(text: str) -> None:
    readme = README.read_text()
    if START not in readme:
        readme += f"\n{START}\n{END}\n"
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--resumes", type=int, default=10)
    ap.add_argument("--cancels", type=int, default=10)
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="respd-bg-bench-"))
    dbname = f"respd_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{dbname}"'))
    db = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    up_port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    fake = FakeUpstream()
    fake.start()
    try:
        upstream = subprocess.Popen([sys.executable, str(BENCH / "fast_upstream.py"), "--port", str(up_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(upstream)
        _wait_http(f"http://127.0.0.1:{up_port}/healthz", upstream)
        cfg = tmp / "respd.toml"
        cfg.write_text(
            f'[[models]]\nname = "bench-model"\nbackend = "openai"\nbase_url = "http://127.0.0.1:{up_port}/v1"\n'
            f'[[models]]\nname = "paced-model"\nbackend = "openai"\nbase_url = "{fake.base_url}"\n'
            'upstream_model = "fake-upstream-model"\n'
        )
        (pa, a), (pb, b) = start_replica("a", tmp, cfg, db), start_replica("b", tmp, cfg, db)
        procs += [pa, pb]
        jobs = asyncio.run(many_jobs([a, b], args.jobs, db))
        res = asyncio.run(resumes(a, b, fake, args.resumes))
        cancel = asyncio.run(cancels(a, b, fake, args.cancels))
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        fake.stop()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    load = os.getloadavg()[0]
    ok = jobs["statuses"] == {"completed": jobs["n"]} and jobs["jobs_left"] == 0 and jobs["one_terminal_each"]
    text = f"""Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} cores; two replicas (default `max_background = 32` each) on one PostgreSQL; load average after {load:.2f}.

| {jobs['n']:,} concurrent background streams (fast upstream, 64 tokens) | |
|---|---:|
| all completed, none lost or duplicated | {"**yes**" if ok else "**NO**"} (statuses {jobs['statuses']}, jobs left {jobs['jobs_left']}, one terminal event per log: {jobs['one_terminal_each']}) |
| wall time for all | {jobs['wall_s']:.2f} s ({jobs['n'] / jobs['wall_s']:.0f} responses/s) |
| time to claim p50 / p99 / max | {jobs['claim_p50']:.1f} / {jobs['claim_p99']:.1f} / {jobs['claim_max']:.1f} ms |

| live follow, {res['n']} responses, {res['samples']} delta events | p50 | p99 |
|---|---:|---:|
| follower on the other replica (B), after the creating client | {res['cross_p50']:.2f} ms | {res['cross_p99']:.2f} ms |
| follower on the running replica (A), after the creating client | {res['local_p50']:.2f} ms | {res['local_p99']:.2f} ms |
| **added by following from another replica** | **{res['cross_p50'] - res['local_p50']:.2f} ms** | {res['cross_p99'] - res['local_p99']:.2f} ms |

| cancel sent to B for a response running on A, {cancel['n']} times | p50 | max |
|---|---:|---:|
| until A hung up on the upstream (target: within 1 s) | {cancel['p50']:.1f} ms | {cancel['max']:.1f} ms |"""
    print(text)
    if not args.no_readme:
        write_readme(text)
    if not ok:
        raise SystemExit(1)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
