"""Hosted-tool calls in the database: what the model called and read back (see ``schema.hosted_calls``).

A call's row is written with its output item's ``added`` event (:class:`Started`) and completed with its
``done`` event (:class:`Finished`), each in the same transaction as that event, so the log and the rows
never disagree: a call whose item is done in the log has its output here, and one whose item is open has a
row without output (it was in flight).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from respd.store.batch import Sql
from respd.store.schema import hosted_calls


@dataclass(frozen=True, slots=True)
class StoredCall:
    """One call's row, read back."""

    item_id: str
    name: str
    arguments: Any  # parsed JSON (the model's raw text when it was not JSON)
    output: str | None  # None: the call had not finished
    sources: list[tuple[int, dict[str, Any]]]  # (number, source as JSON)


@dataclass(frozen=True, slots=True)
class Started:
    """Calls that begin (their items are added in this transaction)."""

    response_id: str
    tenant: str
    calls: Sequence[tuple[str, str, Any]]  # (item id, function name, arguments)

    def apply(self, sql: Sql) -> None:
        rows = [{"item_id": item_id, "response_id": self.response_id, "tenant": self.tenant, "name": name,
                 "arguments": orjson.dumps(arguments).decode()} for item_id, name, arguments in self.calls]  # fmt: skip
        sql.execute("INSERT INTO hosted_calls (item_id, response_id, tenant, name, arguments) "
                    "VALUES (:item_id, :response_id, :tenant, :name, :arguments)", rows)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Finished:
    """Calls that ended (their items are done in this transaction), with what the model reads back."""

    calls: Sequence[tuple[str, str, list[tuple[int, dict[str, Any]]]]]  # (item id, output, numbered sources)

    def apply(self, sql: Sql) -> None:
        rows = [{"item_id": item_id, "output": output, "sources": orjson.dumps(sources).decode()}
                for item_id, output, sources in self.calls]  # fmt: skip
        sql.execute("UPDATE hosted_calls SET output = :output, sources = :sources WHERE item_id = :item_id", rows)


@dataclass(frozen=True, slots=True)
class Deleted:
    """A deleted response's calls."""

    response_id: str

    def apply(self, sql: Sql) -> None:
        sql.execute("DELETE FROM hosted_calls WHERE response_id = :rid", [{"rid": self.response_id}])


async def read(engine: AsyncEngine, tenant: str, item_ids: Sequence[str]) -> dict[str, StoredCall]:
    """The stored calls among ``item_ids`` that this tenant's responses made."""
    q = select(hosted_calls).where(hosted_calls.c.tenant == tenant, hosted_calls.c.item_id.in_(list(item_ids)))
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return {
        r.item_id: StoredCall(r.item_id, r.name, orjson.loads(r.arguments), r.output,
                              [(int(n), s) for n, s in orjson.loads(r.sources or "[]")])
        for r in rows
    }  # fmt: skip
