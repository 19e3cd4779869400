"""Where rate-limit counts live, so that every replica sees the same ones: Redis, or the database.

Counts are per tenant and per fixed one-minute window (``window`` = Unix minute). A stream holds a *slot*
that expires ``SLOT_TTL_S`` after it was last renewed: the replica running the stream renews its slots, so a
replica that dies frees its slots within that time instead of holding them forever.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Connection, text

from respd.store.store import Store

SLOT_TTL_S = 60
_WINDOW_TTL_S = 180


class Counters(Protocol):
    async def hit(self, tenant: str, window: int) -> tuple[int, int]:
        """Count a request in ``window``; return the window's ``(requests, tokens)`` counts, this one included."""
        ...

    async def add_tokens(self, tenant: str, window: int, tokens: int) -> None: ...

    async def open_slot(self, tenant: str, slot: str, cap: int, now: float) -> int:
        """Take a stream slot if fewer than ``cap`` are live; return the live count before (``cap``: refused)."""
        ...

    async def renew_slots(self, slots: dict[str, str], now: float) -> None:
        """Extend the slots ``{slot: tenant}`` that this replica holds."""
        ...

    async def close_slot(self, tenant: str, slot: str) -> None: ...

    async def close(self) -> None: ...


# -- Redis ---------------------------------------------------------------------------------------------------
# Take a slot atomically: drop the expired ones, count the rest, add this one if there is room.
_OPEN_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local live = redis.call('ZCARD', KEYS[1])
if live < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return live
end
return tonumber(ARGV[2])
"""


class RedisCounters:
    """Counts in Redis: ``respd:rl:{tenant}:{window}`` hashes, ``respd:streams:{tenant}`` sorted sets."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.Redis.from_url(url)
        self._open_slot = self._redis.register_script(_OPEN_SLOT)

    async def hit(self, tenant: str, window: int) -> tuple[int, int]:
        key = f"respd:rl:{tenant}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "requests", 1)
            pipe.hget(key, "tokens")
            pipe.expire(key, _WINDOW_TTL_S)
            requests, tokens, _ = await pipe.execute()
        return int(requests), int(tokens or 0)

    async def add_tokens(self, tenant: str, window: int, tokens: int) -> None:
        key = f"respd:rl:{tenant}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "tokens", tokens)
            pipe.expire(key, _WINDOW_TTL_S)
            await pipe.execute()

    async def open_slot(self, tenant: str, slot: str, cap: int, now: float) -> int:
        live = await self._open_slot(keys=[f"respd:streams:{tenant}"],
                                     args=[now, cap, now + SLOT_TTL_S, slot, SLOT_TTL_S * 2])  # fmt: skip
        return int(live)

    async def renew_slots(self, slots: dict[str, str], now: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for slot, tenant in slots.items():
                pipe.zadd(f"respd:streams:{tenant}", {slot: now + SLOT_TTL_S}, xx=True)
                pipe.expire(f"respd:streams:{tenant}", SLOT_TTL_S * 2)
            await pipe.execute()

    async def close_slot(self, tenant: str, slot: str) -> None:
        await self._redis.zrem(f"respd:streams:{tenant}", slot)

    async def close(self) -> None:
        await self._redis.aclose()


# -- the database --------------------------------------------------------------------------------------------
_HIT = text("""
INSERT INTO rate_limit_windows (tenant, window_start, requests, tokens) VALUES (:t, :w, 1, 0)
ON CONFLICT (tenant, window_start) DO UPDATE SET requests = rate_limit_windows.requests + 1
RETURNING requests, tokens
""")
_ADD_TOKENS = text("""
INSERT INTO rate_limit_windows (tenant, window_start, requests, tokens) VALUES (:t, :w, 0, :n)
ON CONFLICT (tenant, window_start) DO UPDATE SET tokens = rate_limit_windows.tokens + :n
""")


class DbCounters:
    """Counts in the database's ``rate_limit_windows`` and ``rate_limit_streams`` tables."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def hit(self, tenant: str, window: int) -> tuple[int, int]:
        def work(conn: Connection) -> tuple[int, int]:
            row = conn.execute(_HIT, {"t": tenant, "w": window}).one()
            if row[0] == 1:  # the window's first request: the old windows go
                conn.execute(text("DELETE FROM rate_limit_windows WHERE window_start < :w"), {"w": window - 2})
            return int(row[0]), int(row[1])

        return await self._store.transact(work)

    async def add_tokens(self, tenant: str, window: int, tokens: int) -> None:
        await self._store.transact(lambda conn: conn.execute(_ADD_TOKENS, {"t": tenant, "w": window, "n": tokens}))

    async def open_slot(self, tenant: str, slot: str, cap: int, now: float) -> int:
        def work(conn: Connection) -> int:
            if conn.dialect.name == "postgresql":  # one taker per tenant at a time, across replicas
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": "respd-streams:" + tenant})
            conn.execute(text("DELETE FROM rate_limit_streams WHERE tenant = :t AND expires_at < :now"),
                         {"t": tenant, "now": now})  # fmt: skip
            live = int(conn.execute(text("SELECT count(*) FROM rate_limit_streams WHERE tenant = :t"),
                                    {"t": tenant}).scalar_one())  # fmt: skip
            if live < cap:
                conn.execute(text("INSERT INTO rate_limit_streams (id, tenant, expires_at) VALUES (:id, :t, :e)"),
                             {"id": slot, "t": tenant, "e": now + SLOT_TTL_S})  # fmt: skip
                return live
            return cap

        return await self._store.transact(work)

    async def renew_slots(self, slots: dict[str, str], now: float) -> None:
        if slots:
            await self._store.transact(lambda conn: conn.execute(
                text("UPDATE rate_limit_streams SET expires_at = :e WHERE id = :id"),
                [{"id": slot, "e": now + SLOT_TTL_S} for slot in slots]))  # fmt: skip

    async def close_slot(self, tenant: str, slot: str) -> None:
        await self._store.transact(lambda conn: conn.execute(text("DELETE FROM rate_limit_streams WHERE id = :id"),
                                                             {"id": slot}))  # fmt: skip

    async def close(self) -> None:
        pass
