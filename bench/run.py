"""respd overhead benchmark: respd in front of a fast fake upstream vs. that upstream called directly.

    uv run python bench/run.py [--duration 10] [--warmup 2] [--rounds 1] [--no-readme]

Starts ``bench/fast_upstream.py`` and one respd worker process (fresh SQLite database in a temp dir), then
drives 8 scenarios with ``wrk`` (one wrk thread, keep-alive):
{direct upstream, through respd} x {non-stream, stream of 64 tokens} x {concurrency 1, 32}.
The direct baseline is measured in the same run, right before its respd counterpart, so respd rows can be
reported as differences (added p50) and ratios (throughput) on a shared, noisy machine. With ``--rounds N``
the scenarios are repeated N times (interleaved) and the median of each metric is reported.

Prints a table and rewrites the part of bench/README.md between ``<!-- results:start -->`` and
``<!-- results:end -->``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
README = BENCH / "README.md"
LUA = BENCH / "wrk_post.lua"
START, END = "<!-- results:start -->", "<!-- results:end -->"
MODEL = "bench-model"
TOKENS = 64

# Targets for one respd worker process.
TARGET_ADDED_P50_MS = 1.0  # non-stream, concurrency 1
TARGET_RPS_C32 = 1000.0  # non-stream, concurrency 32
TARGET_ADDED_STREAM_MS = 3.0  # 64-token stream, concurrency 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {timeout:.0f}s")


def _post(url: str, body: dict[str, object]) -> bytes:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 200:
            raise SystemExit(f"POST {url} answered {r.status}")
        return bytes(r.read())


def _machine_busy_seconds() -> float:
    """CPU time used on the whole machine (all cores, all processes) since boot, in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    name: str
    url: str
    pid: int
    bodies: dict[bool, dict[str, object]]  # stream? -> request body


@dataclass
class Result:
    target: str
    stream: bool
    conc: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rps: float
    cpu_pct: float  # CPU of the server process under test (upstream for direct, respd for respd)
    upstream_cpu_pct: float
    wrk_cpu_pct: float
    other_cpu_pct: float  # CPU used by processes that are not part of the benchmark (noise)

    @property
    def mode(self) -> str:
        return f"stream {TOKENS} tok" if self.stream else "non-stream"


def wrk(url: str, body: dict[str, object], conc: int, seconds: float) -> dict[str, float]:
    env = {**os.environ, "BENCH_BODY": json.dumps(body, separators=(",", ":"))}
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(LUA), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no results:\n{out}")
    data: dict[str, float] = json.loads(line[len("BENCH_JSON ") :])
    errors = {k: v for k, v in data.items() if k.startswith("err_") and v}
    if errors:
        raise SystemExit(f"wrk saw errors against {url} ({body}): {errors}\n{out}")
    return data


def measure(t: Target, stream: bool, conc: int, seconds: float, warmup: float, upstream_pid: int) -> Result:
    if warmup > 0:
        wrk(t.url, t.bodies[stream], conc, warmup)
    pids = {t.pid, upstream_pid}
    m0, k0, w0 = _machine_busy_seconds(), _children_cpu(), time.monotonic()
    c0, u0, a0 = _cpu_seconds(t.pid), _cpu_seconds(upstream_pid), sum(_cpu_seconds(p) for p in pids)
    d = wrk(t.url, t.bodies[stream], conc, seconds)
    c1, u1, a1 = _cpu_seconds(t.pid), _cpu_seconds(upstream_pid), sum(_cpu_seconds(p) for p in pids)
    m1, k1, w1 = _machine_busy_seconds(), _children_cpu(), time.monotonic()
    wall = w1 - w0
    own = (a1 - a0) + (k1 - k0)
    return Result(
        target=t.name,
        stream=stream,
        conc=conc,
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
        rps=d["requests"] / (d["duration_us"] / 1e6),
        cpu_pct=100 * (c1 - c0) / wall,
        upstream_cpu_pct=100 * (u1 - u0) / wall,
        wrk_cpu_pct=100 * (k1 - k0) / wall,
        other_cpu_pct=max(0.0, 100 * ((m1 - m0) - own) / wall),
    )


def _median(results: list[Result]) -> Result:
    r0 = results[0]
    return Result(
        r0.target, r0.stream, r0.conc,
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        statistics.median(r.max_ms for r in results),
        statistics.median(r.rps for r in results),
        statistics.median(r.cpu_pct for r in results),
        statistics.median(r.upstream_cpu_pct for r in results),
        statistics.median(r.wrk_cpu_pct for r in results),
        statistics.median(r.other_cpu_pct for r in results),
    )  # fmt: skip


def _check_respd(url: str) -> None:
    """One request of each kind through respd, checked, before anything is timed."""
    body = json.loads(_post(url, {"model": MODEL, "input": "hello"}))
    if body.get("status") != "completed" or not body.get("output"):
        raise SystemExit(f"respd non-stream answer is not a completed response: {str(body)[:500]}")
    text = _post(url, {"model": MODEL, "input": "hello", "stream": True}).decode()
    deltas = text.count("event: response.output_text.delta\n")
    if "event: response.completed" not in text or deltas != TOKENS:
        raise SystemExit(f"respd stream is not {TOKENS} deltas + response.completed:\n{text[:1000]}")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, {platform.system()} {platform.release()}"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src")
    return f"{sha}{' + uncommitted changes in src/' if dirty else ''}"


LABELS = {"direct": "upstream direct", "respd": "**respd**", "respd-nostore": "respd, `store: false`",
          "respd-nometrics": "respd, `metrics = false`"}


def render(results: list[Result], args: argparse.Namespace) -> str:
    by = {(r.target, r.stream, r.conc): r for r in results}
    targets = [t for t in LABELS if any(r.target == t for r in results)]
    lines = [
        f"Measured {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {machine()}; respd commit {commit()}; "
        f"Python {platform.python_version()}; wrk 1 thread, {args.duration:g} s per scenario after "
        f"{args.warmup:g} s warm-up; {args.rounds} round(s), median shown.",
        "",
        "| scenario | conc | through | p50 ms | p99 ms | max ms | req/s | added p50 ms | req/s ratio "
        "| server CPU % | CPU µs/req | other load % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stream in (False, True):
        for conc in (1, 32):
            d = by[("direct", stream, conc)]
            for t in targets:
                r = by[(t, stream, conc)]
                row = (f"| {r.mode} | {conc} | {LABELS[t]} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.max_ms:.1f} "
                       f"| {r.rps:,.0f} ")  # fmt: skip
                per_req = f"{r.cpu_pct / 100 / r.rps * 1e6:,.0f}"
                if t == "direct":
                    row += f"| | | {r.cpu_pct:.0f} | {per_req} | {r.other_cpu_pct:.0f} |"
                else:
                    row += (
                        f"| {r.p50_ms - d.p50_ms:+.3f} | {r.rps / d.rps:.3f} "
                        f"| {r.cpu_pct:.0f} | {per_req} | {r.other_cpu_pct:.0f} |"
                    )
                lines.append(row)
    t1 = by[("respd", False, 1)].p50_ms - by[("direct", False, 1)].p50_ms
    t2 = by[("respd", False, 32)].rps
    t3 = by[("respd", True, 1)].p50_ms - by[("direct", True, 1)].p50_ms

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines += [
        "",
        "| target (one respd worker, default `store: true`) | measured | |",
        "|---|---:|---|",
        f"| added p50 ≤ {TARGET_ADDED_P50_MS:g} ms, non-stream, concurrency 1 | {t1:.3f} ms | "
        f"{verdict(t1 <= TARGET_ADDED_P50_MS)} |",
        f"| ≥ {TARGET_RPS_C32:,.0f} req/s, non-stream, concurrency 32 | {t2:,.0f} req/s | "
        f"{verdict(t2 >= TARGET_RPS_C32)} |",
        f"| added p50 ≤ {TARGET_ADDED_STREAM_MS:g} ms, {TOKENS}-token stream, concurrency 1 | {t3:.3f} ms | "
        f"{verdict(t3 <= TARGET_ADDED_STREAM_MS)} |",
        "",
        "*server CPU %*: CPU of the process under test (the upstream for direct rows, respd for respd rows), "
        "in % of one core; *CPU µs/req*: that CPU per completed request. *other load %*: CPU used meanwhile by "
        "processes outside the benchmark (noise). *p99* is wrk's, which corrects for coordinated omission: each "
        "request slower than twice the mean interval also counts as the requests that would have waited behind "
        "it, so at concurrency 1 a few stalls (see *max*) set the p99.",
    ]
    return "\n".join(lines)


def write_readme(section: str) -> None:
    text = README.read_text() if README.exists() else f"# respd benchmark\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n## Results\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{section}\n{END}{tail}")


def main() -> None:
    p = argparse.ArgumentParser(description="respd vs. direct upstream overhead benchmark")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each scenario (default 2)")
    p.add_argument("--rounds", type=int, default=1, help="repeat all scenarios N times, report medians")
    p.add_argument(
        "--also-no-store",
        action="store_true",
        help='also measure respd with "store": false (diagnostic rows; targets use the default)',
    )
    p.add_argument(
        "--also-metrics-off",
        action="store_true",
        help="also measure a second respd process with metrics off (RESPD_METRICS=false): what metrics cost",
    )
    p.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    p.add_argument("--keep-db", action="store_true", help="keep the temp dir (respd.db, logs) and print its path")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")

    respd_bin = Path(sys.executable).parent / "respd"
    if not respd_bin.exists():
        raise SystemExit(f"{respd_bin} not found: run `uv sync` first")

    tmp = Path(tempfile.mkdtemp(prefix="respd-bench-"))
    up_port, respd_port = _free_port(), _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_log = (tmp / "upstream.log").open("wb")
        upstream = subprocess.Popen(
            [sys.executable, str(BENCH / "fast_upstream.py"), "--port", str(up_port), "--tokens", str(TOKENS)],
            stdout=up_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs.append(upstream)
        cfg = tmp / "respd.toml"
        cfg.write_text(
            f'[[models]]\nname = "{MODEL}"\nbackend = "openai"\nbase_url = "http://127.0.0.1:{up_port}/v1"\n'
        )
        env = {**os.environ, "RESPD_DATA_DIR": str(tmp), "RESPD_LOG_LEVEL": "warning"}
        respd_log = (tmp / "respd.log").open("wb")
        respd = subprocess.Popen(
            [str(respd_bin), "serve", "--port", str(respd_port), "--config", str(cfg),
             "--database", f"sqlite:///{tmp / 'respd.db'}"],
            env=env, stdout=respd_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs.append(respd)
        _wait_http(f"http://127.0.0.1:{up_port}/healthz", upstream)
        _wait_http(f"http://127.0.0.1:{respd_port}/healthz", respd)
        plain = None
        if args.also_metrics_off:  # the same server, metrics off, its own database; measured interleaved
            plain_port = _free_port()
            (tmp / "plain").mkdir()
            plain = subprocess.Popen(
                [str(respd_bin), "serve", "--port", str(plain_port), "--config", str(cfg),
                 "--database", f"sqlite:///{tmp / 'plain' / 'respd.db'}"],
                env={**env, "RESPD_DATA_DIR": str(tmp / "plain"), "RESPD_METRICS": "false"},
                stdout=(tmp / "plain.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            procs.append(plain)
            _wait_http(f"http://127.0.0.1:{plain_port}/healthz", plain)
        respd_url = f"http://127.0.0.1:{respd_port}/v1/responses"
        _check_respd(respd_url)

        messages = [{"role": "user", "content": "hello"}]
        direct = Target(
            "direct", f"http://127.0.0.1:{up_port}/v1/chat/completions", upstream.pid,
            {False: {"model": MODEL, "messages": messages},
             True: {"model": MODEL, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}},
        )  # fmt: skip
        through = Target(
            "respd", respd_url, respd.pid,
            {False: {"model": MODEL, "input": "hello"}, True: {"model": MODEL, "input": "hello", "stream": True}},
        )  # fmt: skip

        nostore = Target(
            "respd-nostore", respd_url, respd.pid,
            {k: {**v, "store": False} for k, v in through.bodies.items()},
        )  # fmt: skip
        targets = [direct, through, nostore] if args.also_no_store else [direct, through]
        if plain is not None:
            plain_url = f"http://127.0.0.1:{plain_port}/v1/responses"
            _check_respd(plain_url)
            targets.append(Target("respd-nometrics", plain_url, plain.pid, through.bodies))

        runs: dict[tuple[str, bool, int], list[Result]] = {}
        for rnd in range(args.rounds):
            for stream in (False, True):
                for conc in (1, 32):
                    for t in targets:
                        r = measure(t, stream, conc, args.duration, args.warmup, upstream.pid)
                        runs.setdefault((t.name, stream, conc), []).append(r)
                        print(
                            f"[round {rnd + 1}] {t.name:13} {r.mode:14} c={conc:<2} p50 {r.p50_ms:7.3f} ms  "
                            f"p99 {r.p99_ms:7.3f} ms  {r.rps:9,.0f} req/s  server CPU {r.cpu_pct:4.0f}%  "
                            f"other load {r.other_cpu_pct:4.0f}%",
                            flush=True,
                        )
        if respd.poll() is not None:
            raise SystemExit(f"respd exited during the run; see {tmp / 'respd.log'}")
        results = [_median(v) for v in runs.values()]
        section = render(results, args)
        print()
        print(section)
        if not args.no_readme:
            write_readme(section)
            print(f"\nwrote {README.relative_to(ROOT)}")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if args.keep_db:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
