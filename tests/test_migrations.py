"""The schema's migrations form one line of revisions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from respd.config import normalize_database_url
from respd.store.migrate import head_revision, migrate
from respd.store.schema import metadata
from respd.store.store import create_engine
from tests.servers import create_pg_database, drop_pg_database


def test_the_migrations_have_one_head() -> None:
    # Work merged from parallel branches adds revisions side by side; each must be re-pointed onto the one
    # before it, or alembic finds several heads and every server refuses to start.
    head_revision.cache_clear()
    assert head_revision() == "0010_file_holders"


# What the migrations make beyond the declared tables, on purpose: SQLite's FTS5 index (its virtual table,
# shadow tables and vocabulary), PostgreSQL's generated tsvector and its GIN index, and the IVF probe's
# covering index (declared as a plain index; the migration adds the columns it covers).
_DATABASE_OWN = {"vs_chunks_fts", "vs_chunks_vocab", "ix_vs_chunks_tsv", "tsv", "ix_vs_chunks_store_list"}


def _named(diff: Any) -> str:
    """The name of the table, column or index one ``compare_metadata`` difference is about."""
    if isinstance(diff, list):  # column changes come as lists of tuples
        return _named(diff[0])
    kind, *rest = diff
    if kind in ("add_column", "remove_column"):
        return str(rest[2].name)
    obj = rest[0]
    return str(getattr(obj, "name", obj))


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_the_migrations_make_the_declared_schema(database: str, tmp_path: Path) -> None:
    # A table, column or index declared in schema.py but never migrated (or migrated differently) works in
    # nothing but a test that builds the schema from the declarations: a real server migrates.
    url = f"sqlite:///{tmp_path / 'm.db'}" if database == "sqlite" else create_pg_database()

    async def compare() -> list[Any]:
        engine = create_engine(normalize_database_url(url))
        try:
            await migrate(engine)
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        finally:
            await engine.dispose()

    try:
        diffs = asyncio.run(compare())
    finally:
        if database == "postgres":
            drop_pg_database(url)
    unexpected = [d for d in diffs if not any(own in _named(d) for own in _DATABASE_OWN)]
    assert unexpected == []
