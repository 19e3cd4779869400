"""Ingestion as durable jobs, with an embeddings upstream (``[embeddings]``) that can be slowed or broken:
a server SIGKILLed in the middle of indexing a file, then another process takes the job over and finishes
it; an upstream that refuses makes the file fail with a last_error that says so. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import UPSTREAM_KEY, Sdk
from tests.fake_embeddings import FakeEmbeddings
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config

TEXT = "\n".join(f"Paragraph {i}: the harbour master recorded ship number {i} arriving with {i * 7} crates of "
                 f"tea, and the customs officer stamped form TX-{1000 + i} before noon." for i in range(60))  # fmt: skip
SMALL = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}}


def start_server(tmp: Path, config: str, database_url: str, env: dict[str, str] | None = None) -> RespdServer:
    """conftest's start_server with a longer wait for health: the embedder's first load, and busy machines."""
    server = RespdServer(config=config, database_url=database_url, data_dir=tmp,
                         env={"RESPD_TEST_UPSTREAM_KEY": UPSTREAM_KEY, **(env or {})})  # fmt: skip
    server.start(timeout=120)
    return server


@pytest.fixture(scope="module")
def embeddings() -> Iterator[FakeEmbeddings]:
    fake = FakeEmbeddings()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def embed_config(tmp_path_factory: pytest.TempPathFactory, fake_upstream_url: str, embeddings: FakeEmbeddings) -> str:
    extra = f'lease_s = 2\n\n[embeddings]\nbase_url = "{embeddings.base_url}"\nmodel = "hash-64"\nbatch = 2\n'
    return write_config(tmp_path_factory.mktemp("embed-config") / "respd.toml", fake_upstream_url, extra)


@pytest.fixture(scope="module")
def fake_upstream_url(fake: object) -> str:
    return fake.base_url  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (on PostgreSQL, no other test's replica may take these jobs)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'respd.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_during_ingestion_then_takeover(tmp_path: Path, embed_config: str, database: str,
                                                embeddings: FakeEmbeddings, sdk: Sdk) -> None:  # fmt: skip
    first = start_server(tmp_path / "a", embed_config, database)
    second: RespdServer | None = None
    try:
        client = sdk(first, "x")
        vs = client.vector_stores.create(name="harbour")
        uploaded = client.files.create(file=("harbour.txt", TEXT.encode()), purpose="assistants")
        embeddings.delay_s, start = 0.2, embeddings.requests
        f = client.vector_stores.files.create(vector_store_id=vs.id, file_id=uploaded.id, chunking_strategy=SMALL)  # type: ignore[arg-type]
        assert f.status == "in_progress"
        _wait(lambda: embeddings.requests >= start + 3, 20, "ingestion to be under way")
        first.kill()  # SIGKILL: nothing is cleaned up
        embeddings.delay_s = 0.0
        second = start_server(tmp_path / "b", embed_config, database)
        client = sdk(second, "x")
        _wait(lambda: client.vector_stores.files.retrieve(vector_store_id=vs.id, file_id=uploaded.id).status != "in_progress",
              30, "the takeover to finish the file")  # fmt: skip
        done = client.vector_stores.files.retrieve(vector_store_id=vs.id, file_id=uploaded.id)
        assert done.status == "completed" and done.last_error is None and done.usage_bytes > len(TEXT)
        parts = [c.text for c in client.vector_stores.files.content(vector_store_id=vs.id, file_id=uploaded.id)]
        assert "TX-1000" in parts[0] and "TX-1059" in parts[-1]  # every chunk once, in order: no half of the first try
        assert len(parts) == len(set(parts))
        hits = client.vector_stores.search(vs.id, query="TX-1042").data
        assert "TX-1042" in hits[0].content[0].text
        assert "taking over the ingestion" in second.log()
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_upstream_refusing_fails_the_file_with_a_reason(tmp_path: Path, embed_config: str, database: str,
                                                       embeddings: FakeEmbeddings, sdk: Sdk) -> None:  # fmt: skip
    server = start_server(tmp_path, embed_config, database)
    try:
        client = sdk(server, "x")
        vs = client.vector_stores.create()
        embeddings.fail_status = 503
        try:
            f = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=("n.txt", b"some words here"),
                                                           poll_interval_ms=50)  # fmt: skip
        finally:
            embeddings.fail_status = None
        assert f.status == "failed" and f.last_error is not None
        assert f.last_error.code == "server_error" and "503" in f.last_error.message
        assert client.vector_stores.retrieve(vs.id).file_counts.failed == 1
    finally:
        server.stop()
