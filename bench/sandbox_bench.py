"""Sandbox benchmark: cold start of a container, warm call latency, and how many live containers fit.

    python bench/sandbox_bench.py [--calls 200] [--live 8,32,64]

1. Cold start (spawn → kernel ready, then the first ``print(1)``) for each isolation considered, against the
   kernel started with no isolation at all (the baseline, same run): respd's bubblewrap (as root: private
   mount namespace + uid drop + bwrap), plain ``unshare`` (namespaces only, after a uid drop; no filesystem
   isolation), and firejail if installed.
2. Warm ``print(1)`` through respd's pool (``Pool.execute``: request, exec, reply, limits set and reset):
   p50/p90/p99 over ``--calls`` calls.
3. Live containers: N idle containers started at once (each ran ``import numpy``), their memory (PSS, from
   /proc/<pid>/smaps_rollup, summed over each sandbox's processes), and warm call latency while they live.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from respd.sandbox.detect import find_sandbox
from respd.sandbox.isolation import KERNEL_SOURCE
from respd.sandbox.pool import Pool, Sandbox
from respd.sandbox.process import KernelProcess
from respd.sandbox.settings import SandboxSettings

CONFIG = json.dumps({"memory_bytes": 1 << 30, "max_processes": 64, "max_file_bytes": 64 << 20,
                     "max_open_files": 256, "cpu_total_s": resource.RLIM_INFINITY})  # fmt: skip


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def alternatives(sandbox: Sandbox, kernel_file: str) -> dict[str, list[str]]:
    """Command lines that start the kernel. The kernel needs a /mnt/data to work in: the ones without
    filesystem isolation get a private mount namespace with a tmpfs there, so nothing lands on the host."""
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable  # readable by any uid
    tmpfs = 'mount -t tmpfs -o size=64m none /mnt && mount -t tmpfs -o size=64m none /tmp && exec "$@"'
    kernel = [py, "-I", "-B", kernel_file, CONFIG]
    out = {"none (baseline: mount ns only)": ["unshare", "--mount", "--", "/bin/sh", "-c", tmpfs, "sh", *kernel],
           "bubblewrap (respd)": sandbox.isolation.argv(sandbox.limits(1 << 30), CONFIG)}  # fmt: skip
    uid = str(1_000_000_000 + secrets.randbelow(1_000_000))
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"]
    unshare = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--net", "--ipc", "--uts", "--mount",
               "--mount-proc", "--", "/bin/sh", "-c", tmpfs, "sh"]  # fmt: skip
    out["unshare (namespaces, uid drop)"] = (drop if os.geteuid() == 0 else []) + unshare + kernel
    if shutil.which("firejail"):
        out["firejail"] = ["firejail", "--quiet", "--noprofile", "--net=none", "--private-tmp", "--tmpfs=/mnt",
                           "--caps.drop=all", "--nonewprivs", "--rlimit-as=1073741824", "--rlimit-nproc=64",
                           *kernel]  # fmt: skip
    return out


async def cold(argv: list[str], rounds: int) -> tuple[list[float], list[float], str]:
    ready, first, error = [], [], ""
    for _ in range(rounds):
        t0 = time.perf_counter()
        try:
            kernel = await KernelProcess.start(argv, max_payload=1 << 20, wait_s=30)
        except Exception as exc:  # an alternative that cannot run here
            return [], [], str(exc)[:200]
        t1 = time.perf_counter()
        await kernel.request({"op": "exec", "code": "print(1)", "cpu_s": 5, "wall_s": 5, "max_output": 100}, wait_s=10)
        t2 = time.perf_counter()
        await kernel.kill()
        ready.append((t1 - t0) * 1000)
        first.append((t2 - t0) * 1000)
    return ready, first, error


def pss_kib(root_pid: int) -> int:
    """PSS of a process and its descendants."""
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


async def nothing() -> list[tuple[str, bytes]]:
    return []


async def warm(pool: Pool, cid: str, calls: int) -> list[float]:
    await pool.execute(cid, 1 << 30, nothing, "print(1)")
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        result = await pool.execute(cid, 1 << 30, nothing, "print(1)")
        times.append((time.perf_counter() - t0) * 1000)
        assert result.logs == "1\n", result
    return times


def write_kernel() -> str:
    path = f"/run/respd-bench-kernel-{os.getpid()}.py"  # not /tmp: firejail's --private-tmp hides it
    Path(path).write_text(KERNEL_SOURCE)
    os.chmod(path, 0o644)
    return path


def mem_available_mib() -> float:
    line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable"))
    return int(line.split()[1]) / 1024


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--live", default="8,32,64")
    args = ap.parse_args()
    sandbox = await find_sandbox(SandboxSettings(sandbox="bubblewrap", max_live=1000))
    assert sandbox is not None
    print(f"host: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, euid {os.geteuid()}")
    print("\n## cold start (ms): spawn -> ready | spawn -> first print(1) done, median of", args.rounds)
    kernel_file = write_kernel()
    for name, argv in alternatives(sandbox, kernel_file).items():
        ready, first, error = await cold(argv, args.rounds)
        if error:
            print(f"{name:34s} does not run here: {error}")
        else:
            print(f"{name:34s} {statistics.median(ready):7.1f} | {statistics.median(first):7.1f}")
    os.unlink(kernel_file)
    pool = Pool(Sandbox(sandbox.isolation, SandboxSettings(sandbox="bubblewrap", memory_limit="1g",
                                                           max_live=1000), sandbox.cgroups))
    times = await warm(pool, "warm", args.calls)
    print(f"\n## warm print(1) through Pool.execute, {args.calls} calls (ms): p50 {pct(times, 50):.2f}  "
          f"p90 {pct(times, 90):.2f}  p99 {pct(times, 99):.2f}")  # fmt: skip
    firsts = []
    for i in range(args.rounds):  # a new container's first call, the spare kernel started in the meantime
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        await pool.execute(f"new{i}", 1 << 30, nothing, "print(1)")
        firsts.append((time.perf_counter() - t0) * 1000)
    print(f"new container's first print(1), spare ready (ms): median {statistics.median(firsts):.1f}")
    await pool.close()
    print("\n## live containers (each ran `import numpy`)")
    for n in [int(x) for x in args.live.split(",")]:
        pool = Pool(sandbox)

        async def numpy() -> list[tuple[str, bytes]]:
            return []

        t0 = time.perf_counter()
        for i in range(n):
            await pool.execute(f"c{i}", 1 << 30, numpy, "import numpy")
        started = time.perf_counter() - t0
        pss = sum(pss_kib(k.proc.pid) for k in pool.live.values()) / 1024
        times = await warm(pool, "c0", 50)
        avail = mem_available_mib()
        print(f"{n:4d} live: started in {started:.1f} s, PSS {pss:.0f} MiB ({pss / n:.1f} MiB each), "
              f"warm print(1) p50 {pct(times, 50):.2f} ms, MemAvailable now {avail:.0f} MiB")  # fmt: skip
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
