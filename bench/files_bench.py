"""Memory and speed of ``/v1/files`` with a large file: respd's peak RSS while a file goes in and comes out.

Starts ``respd serve`` (SQLite in a temp dir, or PostgreSQL with ``--pg URL``; no local model: the config
routes one model to a closed port), then for each round:

1. resets the server's peak-RSS mark (``echo 5 > /proc/PID/clear_refs``), uploads a file of ``--mib`` MiB
   of random bytes with the openai SDK (``client.files.create``, the file streamed from disk by httpx), and
   reads the peak (``VmHWM`` in ``/proc/PID/status``) against the resident size before (``VmRSS``);
2. does the same for the download (``GET /v1/files/{id}/content``, read in pieces and hashed);
3. checks the sha256 of what came back, then deletes the file.

A server that held the file whole would grow by at least its size; respd's growth should be a few MiB
whatever the size. Run::

    uv run python bench/files_bench.py --mib 512 [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RespdServer, create_pg_database, drop_pg_database, free_port

MIB = 1 << 20


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux 4.0+)


def _write_random(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            block = os.urandom(MIB)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _round(server: RespdServer, path: Path, digest: str, mib: int) -> dict[str, float]:
    assert server.proc is not None
    pid = server.proc.pid
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=600) as client:
        before = _kib(pid, "VmRSS")
        _reset_peak(pid)
        t0 = time.perf_counter()
        with path.open("rb") as f:
            created = client.files.create(file=f, purpose="user_data")
        up_s = time.perf_counter() - t0
        up_peak = _kib(pid, "VmHWM")
        assert created.bytes == mib * MIB, created
        mid = _kib(pid, "VmRSS")
        _reset_peak(pid)
        t0 = time.perf_counter()
        got = hashlib.sha256()
        with httpx.stream("GET", f"{server.url}/v1/files/{created.id}/content", timeout=600) as resp:
            for piece in resp.iter_raw():
                got.update(piece)
        down_s = time.perf_counter() - t0
        down_peak = _kib(pid, "VmHWM")
        assert got.hexdigest() == digest, "the bytes that came back differ"
        client.files.delete(created.id)
    return {"rss_before_mib": before / 1024, "upload_growth_mib": (up_peak - before) / 1024,
            "download_growth_mib": (down_peak - mid) / 1024, "upload_mib_s": mib / up_s,
            "download_mib_s": mib / down_s}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="file size in MiB")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pg", action="store_true", help="on a fresh PostgreSQL database (RESPD_TEST_PG's server)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        config = tmp / "respd.toml"
        config.write_text(f'[[models]]\nname = "m"\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n')
        url = create_pg_database() if args.pg else f"sqlite:///{tmp / 'respd.db'}"
        server = RespdServer(config=str(config), database_url=url, data_dir=tmp, env={"RESPD_LOG_LEVEL": "warning"})
        server.start()
        try:
            path = tmp / "upload.bin"
            digest = _write_random(path, args.mib)
            print(f"{args.mib} MiB file, {'PostgreSQL' if args.pg else 'SQLite'}")
            for i in range(args.rounds):
                r = _round(server, path, digest, args.mib)
                print(f"round {i + 1}: RSS before {r['rss_before_mib']:.0f} MiB; peak growth upload "
                      f"{r['upload_growth_mib']:.1f} MiB, download {r['download_growth_mib']:.1f} MiB; "
                      f"upload {r['upload_mib_s']:.0f} MiB/s, download {r['download_mib_s']:.0f} MiB/s")  # fmt: skip
        finally:
            server.stop()
            if args.pg:
                drop_pg_database(url)


if __name__ == "__main__":
    main()
