"""Conversations in the database: reads, and the writes the group-commit writer runs as :class:`Op` s.

A conversation is a row with a position counter, and its items are rows ordered by position. Every
append — items added through the API, or a response's input and output when it ends — takes a block of
positions by bumping the counter inside the transaction that inserts the items. The bump locks the row
(PostgreSQL) or runs under SQLite's single writer, so two appends to one conversation never interleave
and neither is lost: each one's items are contiguous, in commit order.

The SQL is plain text with ``:name`` parameters, which the writer runs on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from respd.store.schema import conversation_items, conversations, findable
from respd.store.writer import Sql


def resource(row: Any) -> dict[str, Any]:
    """The ``ConversationResource`` of a ``conversations`` row."""
    return {"id": row.id, "object": "conversation", "created_at": row.created_at,
            "metadata": orjson.loads(row.metadata)}  # fmt: skip


async def get(engine: AsyncEngine, tenant: str, conversation_id: str) -> dict[str, Any] | None:
    """The conversation, or ``None`` when it does not exist for this tenant (or was deleted)."""
    if not findable(conversation_id):
        return None
    c = conversations.c
    q = select(c.id, c.created_at, c.metadata).where(c.id == conversation_id, c.tenant == tenant)
    async with engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else resource(row)


async def items(engine: AsyncEngine, conversation_id: str) -> list[dict[str, Any]]:
    """Every item of the conversation, oldest first."""
    ci = conversation_items.c
    q = select(ci.body).where(ci.conversation_id == conversation_id).order_by(ci.position)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [orjson.loads(r.body) for r in rows]


async def page(
    engine: AsyncEngine, conversation_id: str, limit: int, *, ascending: bool, after: str | None
) -> tuple[list[dict[str, Any]], bool] | None:
    """Up to ``limit`` items in position order after the item ``after`` (a keyset page: the read costs the page,
    not the conversation), and whether more follow; ``None`` when ``after`` names no item of it."""
    ci = conversation_items.c
    q = select(ci.body).where(ci.conversation_id == conversation_id)
    async with engine.connect() as conn:
        if after is not None:
            if not findable(after):
                return None
            at = (await conn.execute(select(ci.position).where(ci.conversation_id == conversation_id,
                                                               ci.item_id == after))).scalar()  # fmt: skip
            if at is None:
                return None
            q = q.where(ci.position > at if ascending else ci.position < at)
        q = q.order_by(ci.position if ascending else ci.position.desc()).limit(limit + 1)
        rows = (await conn.execute(q)).all()
    return [orjson.loads(r.body) for r in rows[:limit]], len(rows) > limit


async def duplicate_ids(engine: AsyncEngine, conversation_id: str, item_ids: list[str]) -> list[str]:
    """Which of ``item_ids`` the conversation already has (the loser of a race to add one learns which)."""
    ci = conversation_items.c
    q = select(ci.item_id).where(ci.conversation_id == conversation_id, ci.item_id.in_(item_ids))
    async with engine.connect() as conn:
        found = {r.item_id for r in (await conn.execute(q)).all()}
    return [i for i in item_ids if i in found]


async def item(engine: AsyncEngine, conversation_id: str, item_id: str) -> dict[str, Any] | None:
    """One item of the conversation by id."""
    if not findable(item_id):
        return None
    ci = conversation_items.c
    q = select(ci.body).where(ci.conversation_id == conversation_id, ci.item_id == item_id).order_by(ci.position)
    async with engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else orjson.loads(row.body)


_INSERT_ITEM = (
    "INSERT INTO conversation_items (conversation_id, position, item_id, body) "
    "VALUES (:conversation_id, :position, :item_id, :body)"
)


def _insert_items(sql: Sql, conversation_id: str, first: int, new: list[dict[str, Any]]) -> None:
    rows = [{"conversation_id": conversation_id, "position": first + i, "item_id": it["id"],
             "body": orjson.dumps(it).decode()} for i, it in enumerate(new)]  # fmt: skip
    if rows:
        sql.execute(_INSERT_ITEM, rows)


@dataclass(frozen=True, slots=True)
class Create:
    """A new conversation with its initial items."""

    tenant: str
    conversation: dict[str, Any]  # the ConversationResource
    items: list[dict[str, Any]]

    def apply(self, sql: Sql) -> None:
        conv = self.conversation
        sql.execute(
            "INSERT INTO conversations (id, tenant, created_at, metadata, next_position) "
            "VALUES (:id, :tenant, :created_at, :metadata, :next_position)",
            {"id": conv["id"], "tenant": self.tenant, "created_at": conv["created_at"],
             "metadata": orjson.dumps(conv["metadata"]).decode(), "next_position": len(self.items)},
        )  # fmt: skip
        _insert_items(sql, conv["id"], 0, self.items)


@dataclass(frozen=True, slots=True)
class Append:
    """Items added after everything appended before; nothing happens if the conversation is gone."""

    tenant: str
    conversation_id: str
    items: list[dict[str, Any]]

    def apply(self, sql: Sql) -> None:
        if not self.items:
            return
        # The UPDATE takes the row's lock (or SQLite's write lock) until commit, so the counter read next is
        # this transaction's alone. (Two statements rather than RETURNING, which SQLite < 3.35 lacks.)
        key = {"id": self.conversation_id, "tenant": self.tenant}
        sql.execute("UPDATE conversations SET next_position = next_position + :n WHERE id = :id AND tenant = :tenant",
                    {**key, "n": len(self.items)})  # fmt: skip
        rows = sql.execute("SELECT next_position FROM conversations WHERE id = :id AND tenant = :tenant", key)
        if rows:  # deleted while a response ran in it: there is nothing to add to
            _insert_items(sql, self.conversation_id, rows[0][0] - len(self.items), self.items)


@dataclass(frozen=True, slots=True)
class SetMetadata:
    tenant: str
    conversation_id: str
    metadata: dict[str, str]

    def apply(self, sql: Sql) -> None:
        sql.execute(
            "UPDATE conversations SET metadata = :metadata WHERE id = :id AND tenant = :tenant",
            {"metadata": orjson.dumps(self.metadata).decode(), "id": self.conversation_id, "tenant": self.tenant},
        )


@dataclass(frozen=True, slots=True)
class DeleteItem:
    conversation_id: str
    item_id: str

    def apply(self, sql: Sql) -> None:
        sql.execute(
            "DELETE FROM conversation_items WHERE conversation_id = :id AND item_id = :item_id",
            {"id": self.conversation_id, "item_id": self.item_id},
        )


@dataclass(frozen=True, slots=True)
class Delete:
    """The conversation and its item list. Responses that ran in it keep their own input and output."""

    tenant: str
    conversation_id: str

    def apply(self, sql: Sql) -> None:
        key = {"id": self.conversation_id, "tenant": self.tenant}
        sql.execute("DELETE FROM conversation_items WHERE conversation_id IN "
                    "(SELECT id FROM conversations WHERE id = :id AND tenant = :tenant)", key)  # fmt: skip
        sql.execute("DELETE FROM conversations WHERE id = :id AND tenant = :tenant", key)
