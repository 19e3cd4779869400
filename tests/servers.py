"""Real respd server processes for tests: ``respd serve`` on a free port, on SQLite or a fresh PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

PG_ADMIN_URL = os.environ.get("RESPD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


# Ports handed out, below Linux's ephemeral range (32768+, where bind(0) and clients' sockets land) and in a
# block of this pytest-xdist worker's own: a port found free here is not given to a server of another worker
# (or taken by a client socket) in the seconds before this one's server binds it.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORTS = itertools.count(12000 + 2500 * _WORKER)


def free_port() -> int:
    """A port nothing listens on, for a server to be started on."""
    while True:
        port = next(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _pg_admin(sql: str) -> None:
    """Run one statement on the admin database (CREATE/DROP DATABASE cannot run in a transaction)."""

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def create_pg_database() -> str:
    """A new, empty PostgreSQL database for this test run; returns its URL."""
    name = f"respd_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@dataclass
class RespdServer:
    """One ``respd serve`` process."""

    config: str
    database_url: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until healthy; a server that does not get there is stopped, not left behind."""
        try:
            self._start(timeout)
        except BaseException:
            self.kill()
            raise

    def _start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"server-{self.port}.log"
        env = {**os.environ, "RESPD_DATA_DIR": str(self.data_dir), **self.env}
        cmd = [sys.executable, "-m", "respd", "serve", "--port", str(self.port), "--config", self.config,
               "--database", self.database_url]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"respd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()  # not left running (and loading the machine) behind a failed start
        raise RuntimeError(f"respd did not become healthy:\n{self.log()}")

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        """The rows of one read-only SQL statement on this server's database (SQLite or PostgreSQL)."""
        if self.database_url.startswith("sqlite:///"):
            with sqlite3.connect(self.database_url.removeprefix("sqlite:///")) as conn:
                return list(conn.execute(statement).fetchall())

        async def run() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return [tuple(r) for r in await conn.fetch(statement)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def row_counts(self) -> dict[str, int]:
        """How many rows each table that requests write to holds."""
        tables = ("responses", "response_items", "response_events", "jobs", "conversations", "conversation_items")
        return {t: self.sql(f"SELECT count(*) FROM {t}")[0][0] for t in tables}

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_config(path: Path, upstream_url: str, extra: str = "") -> str:
    """A config with the test models: ``test-model`` on the fake upstream, ``dead-model`` on a closed port."""
    path.write_text(
        extra
        + f"""
[[models]]
name = "test-model"
backend = "openai"
base_url = "{upstream_url}"
api_key_env = "RESPD_TEST_UPSTREAM_KEY"
upstream_model = "fake-upstream-model"
timeout_s = 5

[[models]]
name = "dead-model"
backend = "openai"
base_url = "http://127.0.0.1:{free_port()}/v1"
connect_timeout_s = 2
"""
    )
    return str(path)
