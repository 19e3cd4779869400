"""The Containers API (``/v1/containers``) through the ``openai`` SDK, on SQLite and PostgreSQL: containers,
their files (upload, list, retrieve, content, delete), paging, scoping by API key, expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Sdk, start_server
from tests.servers import RespdServer, write_config

KEYS = ("sk-containers-a", "sk-containers-b")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: object
) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp(f"containers-{request.param}")
    config = write_config(tmp / "respd.toml", fake.base_url, 'api_keys = ["sk-containers-a", "sk-containers-b"]\n')  # type: ignore[attr-defined]
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    srv = start_server(tmp, config, url)
    yield srv
    srv.stop()


def set_last_active(server: RespdServer, container_id: str, when: int) -> None:
    """Move a container's last use into the past, as if that much time had gone by."""
    sql = "UPDATE containers SET last_active_at = :t WHERE id = :id"
    if server.database_url.startswith("sqlite"):
        engine = create_engine(server.database_url)
        with engine.begin() as conn:
            conn.execute(text(sql), {"t": when, "id": container_id})
        engine.dispose()
    else:

        async def run() -> None:
            conn = await asyncpg.connect(server.database_url)
            try:
                await conn.execute("UPDATE containers SET last_active_at = $1 WHERE id = $2", when, container_id)
            finally:
                await conn.close()

        asyncio.run(run())


def test_create_retrieve_list_delete(server: RespdServer, sdk: Sdk) -> None:
    c = sdk(server, KEYS[0])
    made = c.containers.create(name="analysis", expires_after={"anchor": "last_active_at", "minutes": 5},
                               memory_limit="1g")  # fmt: skip
    assert made.id.startswith("cntr_") and made.object == "container" and made.name == "analysis"
    assert made.status == "running" and made.memory_limit == "1g"
    assert made.expires_after is not None and made.expires_after.minutes == 5
    assert made.expires_after.anchor == "last_active_at"
    assert abs(made.created_at - time.time()) < 60 and made.last_active_at is not None
    got = c.containers.retrieve(made.id)
    assert got.id == made.id and got.name == "analysis"
    default = c.containers.create(name="defaults")
    assert default.memory_limit == "1g" and default.expires_after.minutes == 20  # type: ignore[union-attr]
    ids = [x.id for x in c.containers.list(limit=100)]
    assert ids.index(default.id) < ids.index(made.id)  # newest first
    asc = [x.id for x in c.containers.list(order="asc", limit=100)]
    assert asc.index(made.id) < asc.index(default.id)
    named = c.containers.list(name="analysis", limit=100).data
    assert [x.id for x in named if x.id in (made.id, default.id)] == [made.id]
    deleted = httpx.delete(f"{server.url}/v1/containers/{made.id}", headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert deleted.json() == {"id": made.id, "object": "container.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        c.containers.retrieve(made.id)


def test_paging(server: RespdServer, sdk: Sdk) -> None:
    c = sdk(server, KEYS[0])
    made = [c.containers.create(name="page-test").id for _ in range(5)]
    page = c.containers.list(name="page-test", limit=2, order="asc")
    assert [x.id for x in page.data] == made[:2] and page.has_more
    seen = [x.id for x in c.containers.list(name="page-test", limit=2, order="asc")]  # pages through
    assert seen == made


def test_scoped_by_key(server: RespdServer, sdk: Sdk) -> None:
    mine = sdk(server, KEYS[0]).containers.create(name="private")
    other = sdk(server, KEYS[1])
    with pytest.raises(openai.NotFoundError):
        other.containers.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.containers.files.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.containers.delete(mine.id)
    assert mine.id not in [x.id for x in other.containers.list(limit=100)]
    assert sdk(server, KEYS[0]).containers.retrieve(mine.id).id == mine.id


def test_files_upload_list_content_delete(server: RespdServer, sdk: Sdk, tmp_path: Path) -> None:
    c = sdk(server, KEYS[0])
    box = c.containers.create(name="files")
    upload = tmp_path / "data.csv"
    upload.write_bytes(b"a,b\n1,2\n")
    with upload.open("rb") as f:
        made = c.containers.files.create(box.id, file=f)
    assert made.id.startswith("cfile_") and made.object == "container.file"
    assert made.path == "/mnt/data/data.csv" and made.bytes == 8 and made.source == "user"
    assert made.container_id == box.id
    assert c.containers.files.retrieve(made.id, container_id=box.id).path == "/mnt/data/data.csv"
    assert c.containers.files.content.retrieve(made.id, container_id=box.id).read() == b"a,b\n1,2\n"
    second = c.containers.files.create(box.id, file=("notes.txt", b"hello"))
    listed = c.containers.files.list(box.id)
    assert [f.id for f in listed.data] == [second.id, made.id]
    # the same name again replaces the file (one file per path, as in the container's directory)
    again = c.containers.files.create(box.id, file=("notes.txt", b"hello again"))
    paths = {f.path: f.id for f in c.containers.files.list(box.id).data}
    assert paths == {"/mnt/data/data.csv": made.id, "/mnt/data/notes.txt": again.id}
    c.containers.files.delete(again.id, container_id=box.id)
    with pytest.raises(openai.NotFoundError):
        c.containers.files.retrieve(again.id, container_id=box.id)
    assert [f.id for f in c.containers.files.list(box.id).data] == [made.id]


def test_files_from_file_ids(server: RespdServer, sdk: Sdk) -> None:
    c = sdk(server, KEYS[0])
    uploaded = c.files.create(file=("report.csv", b"q,n\n1,10\n"), purpose="user_data")
    box = c.containers.create(name="with files", file_ids=[uploaded.id])
    (made,) = c.containers.files.list(box.id).data
    assert made.path == "/mnt/data/report.csv" and made.source == "user" and made.bytes == 9
    copy = c.containers.files.create(box.id, file_id=uploaded.id)
    assert copy.path == "/mnt/data/report.csv" and copy.id != made.id  # the same path: replaced
    assert c.containers.files.content.retrieve(copy.id, container_id=box.id).read() == b"q,n\n1,10\n"
    c.files.delete(uploaded.id)  # the container keeps its copy
    assert c.containers.files.content.retrieve(copy.id, container_id=box.id).read() == b"q,n\n1,10\n"


def test_bad_requests(server: RespdServer, sdk: Sdk) -> None:
    c = sdk(server, KEYS[0])
    with pytest.raises(openai.BadRequestError) as err:
        c.containers.create(name="big", memory_limit="64g")
    assert err.value.body["param"] == "memory_limit"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        c.containers.create(
            name="net", extra_body={"network_policy": {"type": "allowlist", "allowed_domains": ["x.io"]}}
        )
    assert "network" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        c.containers.create(name="x", expires_after={"anchor": "created_at", "minutes": 5})  # type: ignore[typeddict-item]
    assert err.value.body["param"] == "expires_after.anchor"  # type: ignore[index]
    missing = httpx.post(f"{server.url}/v1/containers", json={}, headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "name"
    box = c.containers.create(name="nofile")
    with pytest.raises(openai.NotFoundError) as nf:
        c.containers.files.create(box.id, file_id="file-doesnotexist")
    assert nf.value.body["param"] == "file_id"  # type: ignore[index]
    theirs = sdk(server, KEYS[1]).files.create(file=("theirs.txt", b"secret"), purpose="user_data")
    with pytest.raises(openai.NotFoundError):  # another key's file
        c.containers.files.create(box.id, file_id=theirs.id)
    with pytest.raises(openai.NotFoundError) as nf:
        c.containers.create(name="x", file_ids=[theirs.id])
    assert nf.value.body["param"] == "file_ids[0]"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        c.containers.list(limit=1000)
    with pytest.raises(openai.NotFoundError):
        c.containers.files.retrieve("cfile_nope", container_id=box.id)


def test_expiry(server: RespdServer, sdk: Sdk) -> None:
    c = sdk(server, KEYS[0])
    box = c.containers.create(name="short", expires_after={"anchor": "last_active_at", "minutes": 1})
    made = c.containers.files.create(box.id, file=("x.txt", b"x"))
    set_last_active(server, box.id, int(time.time()) - 61)
    expired = c.containers.retrieve(box.id)
    assert expired.status == "expired" and expired.name == "short"  # a snapshot of its metadata stays
    with pytest.raises(openai.BadRequestError) as err:
        c.containers.files.retrieve(made.id, container_id=box.id)
    assert "expired" in err.value.message and err.value.code == "container_expired"
    with pytest.raises(openai.BadRequestError):
        c.containers.files.create(box.id, file=("y.txt", b"y"))
    # using a container (here: retrieving it) restarts its idle time
    alive = c.containers.create(name="used", expires_after={"anchor": "last_active_at", "minutes": 1})
    set_last_active(server, alive.id, int(time.time()) - 50)
    assert c.containers.retrieve(alive.id).last_active_at >= int(time.time()) - 2  # type: ignore[operator]
    c.containers.delete(box.id)
    with pytest.raises(openai.NotFoundError):
        c.containers.retrieve(box.id)
