"""Vector stores end to end through the openai SDK, on SQLite and PostgreSQL, with the bundled embedder:
upload → vector store → upload_and_poll → search by paraphrase and by exact identifier; filters; batches;
files that cannot be indexed; keys that cannot see each other's stores."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.servers import RespdServer
from tests.test_files import sql

ROUTER = (
    "Restoring access to your wireless router. If you can no longer sign in to the router's administration "
    "page, press and hold the small reset button on the back of the device for ten seconds. The router "
    "restarts with the factory password printed on the label underneath it, and you can choose a new one."
)
PAYROLL = (
    "Quarterly payroll is processed on the last business day of March, June, September and December. "
    "Employees receive their salary statements by email, and tax withholding is adjusted every January."
)
RECIPE = (
    "To bake sourdough bread, mix flour, water and salt with an active starter, let the dough rise overnight "
    "in a cool kitchen, shape the loaf and bake it in a hot covered pot for forty minutes."
)
CODES = [("ERR-1001", "the disk quota of the workspace is exhausted"),
         ("ERR-2040", "the upload was interrupted before the last part arrived"),
         ("ERR-3310", "the session token has expired and must be renewed"),
         ("ERR-4417", "the printer queue is paused by an administrator"),
         ("ERR-4470", "the backup job could not reach the storage bucket"),
         ("ERR-4471", "the license server rejected the activation because the machine clock is skewed"),
         ("ERR-5002", "the mail relay refused the message as too large"),
         ("ERR-6120", "the report generator ran out of memory on a large export"),
         ("ERR-7301", "the calendar sync found two events with the same identifier"),
         ("ERR-8800", "the search index is being rebuilt and results may be incomplete")]  # fmt: skip
ERRORS = "\n".join(f"Error code {code}: {what}. Contact support if it persists." for code, what in CODES)
SMALL_CHUNKS = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}


def start_server(tmp: Path, config: str, database_url: str, env: dict[str, str] | None = None) -> RespdServer:
    """conftest's start_server with a longer wait for health: the embedder's first load, and busy machines."""
    server = RespdServer(config=config, database_url=database_url, data_dir=tmp,
                         env={"RESPD_TEST_UPSTREAM_KEY": UPSTREAM_KEY, **(env or {})})  # fmt: skip
    server.start(timeout=120)
    return server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def vs_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              config_path: str) -> Iterator[RespdServer]:  # fmt: skip
    tmp = tmp_path_factory.mktemp(f"vectors-{request.param}")
    url = f"sqlite:///{tmp / 'respd.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server = start_server(tmp, config_path, url, {"RESPD_API_KEYS": "key-alice,key-bob"})
    yield server
    server.stop()


def _client(server: RespdServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def alice(vs_server: RespdServer) -> Iterator[openai.OpenAI]:
    with _client(vs_server, "key-alice") as c:
        yield c


@pytest.fixture(scope="module")
def bob(vs_server: RespdServer) -> Iterator[openai.OpenAI]:
    with _client(vs_server, "key-bob") as c:
        yield c


@pytest.fixture(scope="module")
def library(alice: openai.OpenAI) -> dict[str, str]:
    """A vector store of four files with attributes, indexed; returns the ids by name (and ``store``)."""
    vs = alice.vector_stores.create(name="library", metadata={"team": "docs"})
    ids = {"store": vs.id}
    for name, text, attributes in (("router.txt", ROUTER, {"category": "it", "year": 2024}),
                                   ("payroll.txt", PAYROLL, {"category": "finance", "year": 2023}),
                                   ("recipe.md", RECIPE, {"category": "food", "year": 2024})):  # fmt: skip
        f = alice.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=(name, text.encode()),
                                                      poll_interval_ms=100)  # fmt: skip
        assert f.status == "completed", f.last_error
        alice.vector_stores.files.update(vector_store_id=vs.id, file_id=f.id, attributes=attributes)
        ids[name] = f.id
    uploaded = alice.files.create(file=("errors.md", ERRORS.encode()), purpose="assistants")
    f = alice.vector_stores.files.create_and_poll(vector_store_id=vs.id, file_id=uploaded.id,
                                                  chunking_strategy=SMALL_CHUNKS,
                                                  attributes={"category": "it", "year": 2025}, poll_interval_ms=100)  # type: ignore[arg-type]  # fmt: skip
    assert f.status == "completed", f.last_error
    ids["errors.md"] = f.id
    return ids


def test_store_counts_usage_and_files(alice: openai.OpenAI, library: dict[str, str]) -> None:
    vs = alice.vector_stores.retrieve(library["store"])
    assert vs.status == "completed" and vs.name == "library" and vs.metadata == {"team": "docs"}
    assert vs.file_counts.completed == 4 and vs.file_counts.total == 4 and vs.file_counts.in_progress == 0
    assert vs.usage_bytes > len(ROUTER + PAYROLL + RECIPE + ERRORS)
    files = alice.vector_stores.files.list(vector_store_id=vs.id, filter="completed", order="asc")
    assert [f.id for f in files.data] == [library[n] for n in ("router.txt", "payroll.txt", "recipe.md", "errors.md")]
    errors = alice.vector_stores.files.retrieve(vector_store_id=vs.id, file_id=library["errors.md"])
    assert errors.attributes == {"category": "it", "year": 2025}
    assert errors.chunking_strategy.type == "static" and errors.chunking_strategy.static.max_chunk_size_tokens == 100  # type: ignore[union-attr]
    content = alice.vector_stores.files.content(vector_store_id=vs.id, file_id=library["errors.md"])
    parts = [c.text for c in content]
    assert len(parts) > 2 and "ERR-4471" in " ".join(parts)
    assert not alice.vector_stores.files.list(vector_store_id=vs.id, filter="failed").data


def test_search_by_paraphrase(alice: openai.OpenAI, library: dict[str, str]) -> None:
    page = alice.vector_stores.search(
        library["store"], query="I forgot the admin login of my wifi box; how do I get back in?"
    )
    assert page.data[0].file_id == library["router.txt"] and page.data[0].filename == "router.txt"
    assert page.data[0].attributes == {"category": "it", "year": 2024}
    assert "reset button" in page.data[0].content[0].text
    scores = [r.score for r in page.data]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    page = alice.vector_stores.search(library["store"], query="when are wages paid out?", max_num_results=2)
    assert page.data[0].file_id == library["payroll.txt"] and len(page.data) <= 2


def test_search_by_exact_identifier(alice: openai.OpenAI, library: dict[str, str]) -> None:
    page = alice.vector_stores.search(library["store"], query="ERR-4471")
    top = page.data[0]
    assert top.file_id == library["errors.md"]
    assert "ERR-4471: the license server" in top.content[0].text
    page = alice.vector_stores.search(library["store"], query=["what does ERR-4471 mean", "license activation"])
    assert "ERR-4471" in page.data[0].content[0].text


def test_search_filters(alice: openai.OpenAI, library: dict[str, str]) -> None:
    store = library["store"]
    page = alice.vector_stores.search(
        store, query="reset password", filters={"type": "eq", "key": "category", "value": "finance"}
    )
    assert page.data and {r.file_id for r in page.data} == {library["payroll.txt"]}
    both = {"type": "and", "filters": [{"type": "eq", "key": "category", "value": "it"},
                                       {"type": "gte", "key": "year", "value": 2025}]}  # fmt: skip
    page = alice.vector_stores.search(store, query="router password", filters=both)  # type: ignore[arg-type]
    assert page.data and {r.file_id for r in page.data} == {library["errors.md"]}
    either = {"type": "or", "filters": [{"type": "in", "key": "category", "value": ["food", "finance"]},
                                        {"type": "lt", "key": "year", "value": 2000}]}  # fmt: skip
    page = alice.vector_stores.search(store, query="bread", filters=either)  # type: ignore[arg-type]
    assert page.data[0].file_id == library["recipe.md"]
    assert {r.file_id for r in page.data} <= {library["recipe.md"], library["payroll.txt"]}
    none = alice.vector_stores.search(store, query="bread", filters={"type": "eq", "key": "category", "value": "none"})
    assert none.data == []
    with pytest.raises(openai.BadRequestError) as err:
        alice.vector_stores.search(store, query="x", filters={"type": "like", "key": "a", "value": "b"})  # type: ignore[typeddict-item]
    assert err.value.body["param"] == "filters.type"  # type: ignore[index]


def test_score_threshold_and_bad_requests(alice: openai.OpenAI, library: dict[str, str]) -> None:
    store = library["store"]
    page = alice.vector_stores.search(store, query="sourdough", ranking_options={"score_threshold": 0.99})
    assert all(r.score >= 0.99 for r in page.data)
    with pytest.raises(openai.BadRequestError) as err:
        alice.vector_stores.search(store, query="x", max_num_results=51)
    assert err.value.body["param"] == "max_num_results"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        alice.vector_stores.create(
            chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150}}
        )
    assert err.value.body["param"] == "chunking_strategy.static.chunk_overlap_tokens"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        alice.vector_stores.search("vs_missing", query="x")
    with pytest.raises(openai.NotFoundError) as nf:
        alice.vector_stores.files.create(vector_store_id=store, file_id="file-missing")
    assert nf.value.body["param"] == "file_id"  # type: ignore[index]


def test_batches_failures_and_removal(alice: openai.OpenAI) -> None:
    vs = alice.vector_stores.create(name="batch", expires_after={"anchor": "last_active_at", "days": 7})
    assert vs.expires_at == vs.last_active_at + 7 * 86400
    files = [("a.txt", b"The lighthouse keeper logged every passing ship in a leather book."),
             ("empty.txt", b"   \n\n  "),
             ("blob.bin", bytes(range(256)) * 64)]  # fmt: skip
    batch = alice.vector_stores.file_batches.upload_and_poll(vs.id, files=files, poll_interval_ms=100)
    assert batch.status == "completed" and batch.file_counts.completed == 1 and batch.file_counts.failed == 2
    listed = {f.id: f for f in alice.vector_stores.file_batches.list_files(batch.id, vector_store_id=vs.id)}
    failed = [f for f in listed.values() if f.status == "failed"]
    assert len(failed) == 2 and all(f.last_error and f.last_error.message for f in failed)
    assert {f.last_error.code for f in failed if f.last_error} <= {"invalid_file", "unsupported_file"}
    page = alice.vector_stores.search(vs.id, query="lighthouse ships")
    assert len(page.data) == 1 and page.data[0].filename == "a.txt"
    done = next(f for f in listed.values() if f.status == "completed")
    deleted = alice.vector_stores.files.delete(file_id=done.id, vector_store_id=vs.id)
    assert deleted.deleted
    assert alice.vector_stores.search(vs.id, query="lighthouse ships").data == []
    assert alice.files.retrieve(done.id).id == done.id  # the file itself stays
    assert alice.vector_stores.retrieve(vs.id).file_counts.total == 2
    assert alice.vector_stores.delete(vs.id).deleted
    with pytest.raises(openai.NotFoundError):
        alice.vector_stores.retrieve(vs.id)


def test_cross_key_isolation(alice: openai.OpenAI, bob: openai.OpenAI, library: dict[str, str]) -> None:
    store = library["store"]
    for call in (lambda: bob.vector_stores.retrieve(store),
                 lambda: bob.vector_stores.search(store, query="router"),
                 lambda: bob.vector_stores.files.list(vector_store_id=store),
                 lambda: bob.vector_stores.delete(store),
                 lambda: bob.vector_stores.files.retrieve(vector_store_id=store, file_id=library["router.txt"])):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            call()
    assert store not in [v.id for v in bob.vector_stores.list()]
    mine = bob.vector_stores.create(name="bob's")
    with pytest.raises(openai.NotFoundError):  # alice's file cannot go into bob's store
        bob.vector_stores.files.create(vector_store_id=mine.id, file_id=library["router.txt"])
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.create(file_ids=[library["router.txt"]])
    assert alice.vector_stores.retrieve(store).file_counts.completed == 4


def test_list_pages_and_modify(alice: openai.OpenAI, vs_server: RespdServer) -> None:
    made = [alice.vector_stores.create(name=f"page-{i}").id for i in range(3)]
    first = alice.vector_stores.list(limit=2, order="desc")
    assert [v.id for v in first.data] == made[::-1][:2] and first.has_more
    rest = alice.vector_stores.list(limit=2, order="desc", after=first.data[-1].id)
    assert rest.data[0].id == made[0]
    changed = alice.vector_stores.update(made[0], name="renamed", metadata={"k": "v"})
    assert changed.name == "renamed" and changed.metadata == {"k": "v"}
    reply = httpx.post(f"{vs_server.url}/v1/vector_stores/{made[0]}", json={"nme": "x"},
                       headers={"Authorization": "Bearer key-alice"})  # fmt: skip
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "nme"


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def chunks_of(server: RespdServer, column: str, value: str) -> int:
    return int(sql(server, f"SELECT count(*) FROM vs_chunks WHERE {column} = $1", value)[0][0])


def test_deleting_a_file_takes_it_out_of_every_store(alice: openai.OpenAI, vs_server: RespdServer) -> None:
    shared = alice.files.create(file=("zeppelin.txt", b"The zeppelin hangar at the airfield holds two airships."),
                                purpose="assistants")  # fmt: skip
    kept = alice.files.create(file=("kept.txt", b"Lemon trees need a sunny, sheltered spot and little water."),
                              purpose="assistants")  # fmt: skip
    one = alice.vector_stores.create(name="one", file_ids=[shared.id, kept.id])
    two = alice.vector_stores.create(name="two", file_ids=[shared.id])
    def indexed() -> bool:
        return all(alice.vector_stores.retrieve(v.id).file_counts.in_progress == 0 for v in (one, two))

    _poll(indexed, 60, "ingestion")
    assert alice.vector_stores.search(one.id, query="zeppelin airships").data[0].file_id == shared.id
    kept_bytes = alice.vector_stores.files.retrieve(vector_store_id=one.id, file_id=kept.id).usage_bytes
    assert chunks_of(vs_server, "file_id", shared.id) >= 2  # in both stores

    assert alice.files.delete(shared.id).deleted
    for vs, left in ((one, [kept.id]), (two, [])):
        after = alice.vector_stores.retrieve(vs.id)
        assert after.file_counts.total == after.file_counts.completed == len(left)
        assert after.usage_bytes == (kept_bytes if left else 0)
        assert [f.id for f in alice.vector_stores.files.list(vector_store_id=vs.id)] == left
        with pytest.raises(openai.NotFoundError):
            alice.vector_stores.files.retrieve(vector_store_id=vs.id, file_id=shared.id)
    assert chunks_of(vs_server, "file_id", shared.id) == 0
    assert all(h.file_id == kept.id for h in alice.vector_stores.search(one.id, query="zeppelin airships").data)
    assert alice.vector_stores.search(two.id, query="zeppelin airships").data == []


def test_the_sweep_empties_expired_stores(alice: openai.OpenAI, vs_server: RespdServer,
                                          library: dict[str, str]) -> None:  # fmt: skip
    vs = alice.vector_stores.create(name="old", expires_after={"anchor": "last_active_at", "days": 1})
    f = alice.vector_stores.files.upload_and_poll(vector_store_id=vs.id, poll_interval_ms=100,
                                                  file=("old.txt", b"An archive of expired ferry timetables."))  # fmt: skip
    assert f.status == "completed" and alice.vector_stores.retrieve(vs.id).usage_bytes > 0
    assert chunks_of(vs_server, "vector_store_id", vs.id) > 0
    live = chunks_of(vs_server, "vector_store_id", library["store"])
    sql(vs_server, "UPDATE vector_stores SET expires_at = $1 WHERE id = $2", int(time.time()) - 1, vs.id)
    vs_server.stop()
    vs_server.start(timeout=120)  # the sweep runs as a replica starts, then every minute
    _poll(lambda: chunks_of(vs_server, "vector_store_id", vs.id) == 0, 30, "the sweep")
    swept = alice.vector_stores.retrieve(vs.id)  # the store stays, expired, with its file rows, using nothing
    assert swept.status == "expired" and swept.usage_bytes == 0 and swept.file_counts.total == 1
    assert sql(vs_server, "SELECT count(*) FROM vs_centroids WHERE vector_store_id = $1", vs.id) == [(0,)]
    with pytest.raises(openai.BadRequestError):
        alice.vector_stores.search(vs.id, query="ferry timetables")
    assert chunks_of(vs_server, "vector_store_id", library["store"]) == live  # a live store is untouched
    assert alice.vector_stores.search(library["store"], query="ERR-4471").data
