"""What a WebSocket connection remembers of the responses it ran, so ``previous_response_id`` finds them.

The API's WebSocket mode continues ``store: false`` responses from the connection's memory: nothing about
them is written anywhere, and they are gone when the connection closes. respd keeps, for each of the last
:data:`REMEMBERED` responses a connection ran, the whole context a continuation needs (the chain behind it,
its input, its output). The lists share their item dicts, so a long conversation costs its items once plus
a list of references per remembered response.

Stored responses are remembered too: a stored response that continues a ``store: false`` one has a chain the
database cannot rebuild (the link in the middle was never written), and on this connection it must still
continue whole. For those the database stays the authority on existence: one deleted since is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from respd.engine.run import Run
from respd.store.store import Store

REMEMBERED = 32  # responses kept per connection, least recently used first out


class ConnectionMemory:
    """The chains of one connection's recent responses, by response id (a :data:`context.LocalHistory`)."""

    def __init__(self, store: Store, tenant: str, limit: int = REMEMBERED) -> None:
        self._store = store
        self._tenant = tenant
        self._limit = limit
        self._chains: OrderedDict[str, tuple[bool, list[dict[str, Any]]]] = OrderedDict()

    def remember(self, run: Run) -> None:
        """Keep the chain that ends with ``run``'s output, once the run has ended."""
        if run.final is None:
            return
        # hosted calls as the model saw them: a store:false response's calls are recorded nowhere else
        self._chains[run.id] = (run.store, run.hosted.recall(run.history + run.inputs + run.final["output"]))
        while len(self._chains) > self._limit:
            self._chains.popitem(last=False)

    async def chain(self, response_id: str) -> list[dict[str, Any]] | None:
        """Every item up to and including ``response_id``'s output, or None if this connection does not know it."""
        kept = self._chains.get(response_id)
        if kept is None:
            return None
        stored, items = kept
        if stored and await self._store.get_response(self._tenant, response_id) is None:
            del self._chains[response_id]  # deleted over HTTP since: the usual not-found follows
            return None
        self._chains.move_to_end(response_id)
        return list(items)
