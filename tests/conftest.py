"""Fixtures: a scripted fake upstream, and real respd servers on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from respd.config import normalize_database_url
from tests.fake_searxng import FakeSearxng
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config

UPSTREAM_KEY = "upstream-secret"


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(autouse=True)
def _reset_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture(scope="session")
def searxng() -> Iterator[FakeSearxng]:
    """A fake SearXNG instance for web_search (reset before each test that uses it)."""
    with FakeSearxng() as fake_search:
        yield fake_search


@pytest.fixture(autouse=True)
def _reset_searxng(request: pytest.FixtureRequest) -> None:
    if "searxng" in request.fixturenames:
        request.getfixturevalue("searxng").reset()


@pytest.fixture(scope="session")
def config_path(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> str:
    return write_config(tmp_path_factory.mktemp("config") / "respd.toml", fake.base_url)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database for one test, SQLite or PostgreSQL (its async URL). Not the session's: the
    servers of other tests run on that one and sweep what is left there (a test's expired replica had a
    response taken over by one of them, before the test's own replica could, on a CI run)."""
    if request.param == "sqlite":
        yield normalize_database_url(f"sqlite:///{tmp_path / 'respd.db'}")
        return
    plain = create_pg_database()
    yield normalize_database_url(plain)
    drop_pg_database(plain)


def start_server(tmp: Path, config: str, database_url: str, env: dict[str, str] | None = None) -> RespdServer:
    """A started respd on ``database_url``, with the test upstream key and ``env`` in its environment."""
    server = RespdServer(config=config, database_url=database_url, data_dir=tmp,
                         env={"RESPD_TEST_UPSTREAM_KEY": UPSTREAM_KEY, **(env or {})})  # fmt: skip
    server.start()
    return server


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def any_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, config_path: str
) -> Iterator[RespdServer]:
    """A respd server on each storage backend: tests using it run twice."""
    tmp = tmp_path_factory.mktemp(f"respd-{request.param}")
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server = start_server(tmp, config_path, url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, config_path: str) -> Iterator[RespdServer]:
    """A respd server on SQLite, for tests whose subject is not storage."""
    tmp = tmp_path_factory.mktemp("respd-main")
    srv = start_server(tmp, config_path, f"sqlite:///{tmp / 'respd.db'}")
    yield srv
    srv.stop()


Sdk = Callable[..., openai.OpenAI]  # the ``sdk`` fixture: sdk(server, key="unused", **client options)


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    """Makes ``openai.OpenAI`` clients for one test (``sdk(server, key, **options)``), each closed when the test
    ends: a client left to the garbage collector warns of its open socket in whatever test runs then, and
    that test fails (warnings are errors; a CI run failed that way)."""
    made: list[openai.OpenAI] = []

    def make(server: RespdServer, key: str = "unused", **options: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, **{"max_retries": 0, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _client(server: RespdServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture
def client(server: RespdServer) -> Iterator[openai.OpenAI]:
    with _client(server) as c:
        yield c


@pytest.fixture
def any_client(any_server: RespdServer) -> Iterator[openai.OpenAI]:
    with _client(any_server) as c:
        yield c
