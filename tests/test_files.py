"""The Files API (``/v1/files``) with the openai SDK, on SQLite and PostgreSQL: upload, list and paging,
retrieve, content, delete, the size limit, expiry, and isolation between API keys."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from tests.checks import check_error
from tests.conftest import start_server
from tests.servers import RespdServer, create_pg_database, drop_pg_database, write_config
from tests.spec_schemas import validate_openai

MIB = 1 << 20


def check_file(body: dict[str, Any]) -> dict[str, Any]:
    """An ``OpenAIFile`` as the spec has it (the real API sends its unset optional fields as null)."""
    validate_openai("OpenAIFile", {k: v for k, v in body.items() if v is not None})
    assert body["object"] == "file" and body["id"].startswith("file-") and body["status"] == "processed", body
    return body


def sql(server: RespdServer, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run ``query`` (``$1`` placeholders) on the server's database: what the server stored, seen directly."""
    url = server.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            return conn.execute(query.replace("$1", "?").replace("$2", "?"), args).fetchall()

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def assert_gone(client: openai.OpenAI, file_id: str) -> None:
    """``file_id`` is a 404 to every call, and in no list."""
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(file_id)
    assert file_id not in [f.id for f in client.files.list()]


def chunk_count(server: RespdServer, file_id: str) -> int:
    return int(sql(server, "SELECT count(*) FROM file_chunks WHERE file_id = $1", file_id)[0][0])


def test_upload_retrieve_content_delete(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    data = b"hello, files\n" * 100
    created = any_client.files.create(file=("notes.txt", data, "text/plain"), purpose="user_data")
    body = check_file(created.model_dump())
    assert (body["filename"], body["bytes"], body["purpose"], body["expires_at"]) == (
        "notes.txt",
        len(data),
        "user_data",
        None,
    )
    assert abs(body["created_at"] - time.time()) < 60
    got = any_client.files.retrieve(created.id)
    assert got.model_dump() == created.model_dump()
    assert any_client.files.content(created.id).content == data
    raw = httpx.get(f"{any_server.url}/v1/files/{created.id}/content")
    assert raw.headers["content-type"].startswith("text/plain") and raw.headers["content-length"] == str(len(data))
    assert created.id in [f.id for f in any_client.files.list()]

    deleted = any_client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    assert chunk_count(any_server, created.id) == 0  # its bytes are gone with it
    assert_gone(any_client, created.id)
    err = check_error(httpx.get(f"{any_server.url}/v1/files/{created.id}"), 404, param="file_id")
    assert created.id in err["message"]


def test_empty_file_and_unicode_name(any_client: openai.OpenAI) -> None:
    created = any_client.files.create(file=("résumé ✓.md", b""), purpose="assistants")
    assert (created.filename, created.bytes) == ("résumé ✓.md", 0)
    assert any_client.files.content(created.id).content == b""
    any_client.files.delete(created.id)


def test_list_paging_order_and_purpose(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    # a purpose of their own, so that files other tests leave do not count
    made = [any_client.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="fine-tune").id for i in range(5)]
    made += [any_client.files.create(file=("other.txt", b"x"), purpose="vision").id]
    newest_first = [f.id for f in any_client.files.list(purpose="fine-tune", limit=2)]  # the SDK follows the pages
    assert newest_first == made[4::-1]
    page = any_client.files.list(purpose="fine-tune", limit=2, order="asc")
    assert [f.id for f in page.data] == made[:2] and page.has_more
    rest = httpx.get(
        f"{any_server.url}/v1/files", params={"purpose": "fine-tune", "order": "asc", "after": made[1]}
    ).json()
    assert [f["id"] for f in rest["data"]] == made[2:5] and rest["has_more"] is False
    assert (rest["first_id"], rest["last_id"]) == (made[2], made[4])
    for f in rest["data"]:
        check_file(f)
    any_client.files.delete(made[3])  # a deleted file still works as a cursor
    after_gone = any_client.files.list(purpose="fine-tune", order="asc", after=made[3])
    assert [f.id for f in after_gone.data] == [made[4]]
    empty = httpx.get(f"{any_server.url}/v1/files", params={"purpose": "batch_output"}).json()
    assert empty == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}
    validate_openai("ListFilesResponse", empty)
    for bad, param in (({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"order": "up"}, "order")):
        check_error(httpx.get(f"{any_server.url}/v1/files", params=bad), 400, param=param)
    for file_id in made:
        if file_id != made[3]:
            any_client.files.delete(file_id)


def test_large_file_is_stored_in_pieces(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    data = os.urandom(5 * MIB + 12345)
    created = any_client.files.create(file=("blob.bin", data), purpose="user_data")
    assert created.bytes == len(data)
    assert chunk_count(any_server, created.id) == 6
    with httpx.stream("GET", f"{any_server.url}/v1/files/{created.id}/content") as resp:
        digest = hashlib.sha256()
        for piece in resp.iter_raw():
            digest.update(piece)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    any_client.files.delete(created.id)
    assert chunk_count(any_server, created.id) == 0


def test_expires_after(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    f = any_client.files.create(file=("a.txt", b"a"), purpose="user_data",
                                expires_after={"anchor": "created_at", "seconds": 3600})  # fmt: skip
    assert f.expires_at == f.created_at + 3600
    batch = any_client.files.create(file=("b.jsonl", b"{}"), purpose="batch")
    assert batch.expires_at == batch.created_at + 30 * 24 * 3600  # the API's default for batch files
    # an hour on: the file is gone for every call, as if deleted
    sql(any_server, "UPDATE files SET expires_at = $1 WHERE id = $2", int(time.time()) - 1, f.id)
    assert_gone(any_client, f.id)
    any_client.files.delete(batch.id)


@pytest.mark.parametrize(
    ("form", "param"),
    [
        ({"purpose": "fine-tuning"}, "purpose"),
        ({}, "purpose"),
        ({"purpose": "user_data", "expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
         "expires_after.seconds"),
        ({"purpose": "user_data", "expires_after[anchor]": "last_active_at", "expires_after[seconds]": "3600"},
         "expires_after.anchor"),
        ({"purpose": "user_data", "expires_after[seconds]": "3600"}, "expires_after.anchor"),
        ({"purpose": "user_data", "colour": "blue"}, "colour"),
    ],
)  # fmt: skip
def test_bad_uploads_are_400_and_store_nothing(any_server: RespdServer, form: dict[str, str], param: str) -> None:
    before = sql(any_server, "SELECT count(*) FROM files")[0][0]
    resp = httpx.post(f"{any_server.url}/v1/files", data=form, files={"file": ("x.txt", b"x" * 1000)})
    check_error(resp, 400, param=param)
    assert sql(any_server, "SELECT count(*) FROM files")[0][0] == before


def test_upload_needs_a_file_in_a_multipart_body(any_server: RespdServer) -> None:
    check_error(httpx.post(f"{any_server.url}/v1/files", data={"purpose": "user_data"},
                           files={"other": ("x.txt", b"x")}), 400, param="other")  # fmt: skip
    check_error(httpx.post(f"{any_server.url}/v1/files", json={"purpose": "user_data"}), 400,
                code="invalid_content_type")  # fmt: skip
    resp = httpx.post(f"{any_server.url}/v1/files", content=b"--b\r\nContent-Disposition: form-data; name=\"purpose\""
                      b"\r\n\r\nuser_data\r\n", headers={"content-type": "multipart/form-data; boundary=b"})  # fmt: skip
    check_error(resp, 400, param="file")


# -- the size limit -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def small(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: Any) -> Iterator[RespdServer]:
    """A server whose files may be at most 1 MiB."""
    tmp = tmp_path_factory.mktemp(f"respd-small-{request.param}")
    config = write_config(tmp / "respd.toml", fake.base_url, extra=f"max_file_bytes = {MIB}\n")
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else create_pg_database()
    srv = start_server(tmp, config, url)  # a database of its own: these tests count every stored row
    yield srv
    srv.stop()
    if request.param == "postgres":
        drop_pg_database(url)


def test_limit(small: RespdServer) -> None:
    with openai.OpenAI(base_url=small.url + "/v1", api_key="x", max_retries=0) as client:
        ok = client.files.create(file=("max.bin", b"m" * MIB), purpose="user_data")
        assert ok.bytes == MIB
        before = sql(small, "SELECT count(*) FROM file_chunks")[0][0]
        with pytest.raises(openai.APIStatusError) as caught:
            client.files.create(file=("big.bin", b"b" * (3 * MIB)), purpose="user_data")
        assert caught.value.status_code == 413
        err = caught.value.body
        assert isinstance(err, dict) and err["code"] == "file_too_large" and err["param"] == "file", err
        assert f"{MIB:,}" in err["message"]
        client.files.delete(ok.id)

    # a body with no declared length (chunked): read up to the limit, not beyond, and nothing kept
    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for _ in range(40):
            yield b"c" * (64 * 1024)
        yield b"\r\n--b--\r\n"

    resp = httpx.post(
        f"{small.url}/v1/files", content=body(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    check_error(resp, 413, param="file", code="file_too_large")
    assert sql(small, "SELECT count(*) FROM file_chunks")[0][0] == before - 1
    assert sql(small, "SELECT count(*) FROM files WHERE status <> 'processed'") == [(0,)]


# -- API keys -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def keyed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, config_path: str
) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp(f"respd-files-keys-{request.param}")
    url = f"sqlite:///{tmp / 'db.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    srv = start_server(tmp, config_path, url, {"RESPD_API_KEYS": "key-alice,key-bob"})
    yield srv
    srv.stop()


def test_files_are_isolated_between_keys(keyed: RespdServer) -> None:
    base = keyed.url + "/v1"
    with openai.OpenAI(base_url=base, api_key="key-alice", max_retries=0) as alice, \
            openai.OpenAI(base_url=base, api_key="key-bob", max_retries=0) as bob:  # fmt: skip
        mine = alice.files.create(file=("secret.txt", b"alice's secret"), purpose="user_data")
        assert_gone(bob, mine.id)
        for part in ({"type": "input_file", "file_id": mine.id}, {"type": "input_image", "file_id": mine.id}):
            with pytest.raises(openai.NotFoundError) as caught:
                bob.responses.create(model="test-model", input=[{"role": "user", "content": [part]}])
            assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "input[0].content[0].file_id"
        assert alice.files.content(mine.id).content == b"alice's secret"
        assert [f.id for f in alice.files.list()] == [mine.id]
        check_error(httpx.get(f"{base}/files"), 401)


def test_client_that_leaves_mid_upload_leaves_nothing(small: RespdServer) -> None:
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n\r\n'
    with socket.create_connection(("127.0.0.1", small.port)) as conn:
        conn.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 900000\r\n\r\n" + head + b"x" * 600_000)  # fmt: skip
        deadline = time.monotonic() + 10  # a piece is stored, then the client is gone
        while not sql(small, "SELECT count(*) FROM files WHERE status = 'uploading'")[0][0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while sql(small, "SELECT count(*) FROM files WHERE status <> 'processed'")[0][0] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sql(small, "SELECT count(*) FROM files WHERE status <> 'processed'") == [(0,)]


def test_sweep_frees_expired_deleted_and_abandoned_files(small: RespdServer) -> None:
    with openai.OpenAI(base_url=small.url + "/v1", api_key="x", max_retries=0) as client:
        kept = client.files.create(file=("kept.txt", b"k" * 1000), purpose="user_data")
        expired = client.files.create(file=("old.txt", b"o" * 1000), purpose="user_data",
                                      expires_after={"anchor": "created_at", "seconds": 3600})  # fmt: skip
    now = int(time.time())
    sql(small, "UPDATE files SET expires_at = $1 WHERE id = $2", now - 1, expired.id)
    # what a replica killed mid-upload, and one killed mid-delete, leave behind
    for file_id, status, updated in (("file-abandoned", "uploading", now - 3600), ("file-halfgone", "deleted", now)):
        sql(small, "INSERT INTO files (id, tenant, status, filename, purpose, mime, bytes, sha256, created_at, "
            f"updated_at, expires_at) VALUES ($1, '', '{status}', 'x', '', 'text/plain', 5, '', {updated}, "
            f"{updated}, NULL)", file_id)  # fmt: skip
        sql(small, "INSERT INTO file_chunks (file_id, seq, data) VALUES ($1, 0, $2)", file_id, b"hello")
    small.stop()
    small.start()  # the sweep runs as a replica starts, then every minute
    gone = [expired.id, "file-abandoned", "file-halfgone"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(chunk_count(small, f) for f in gone):
        time.sleep(0.1)
    assert [chunk_count(small, f) for f in gone] == [0, 0, 0]
    assert sql(small, "SELECT id FROM files ORDER BY id") == [(kept.id,)]
    assert chunk_count(small, kept.id) == 1
