"""The HTTP client MCP sessions use: httpx2 (the ``mcp`` SDK's client library) behind respd's outbound policy.

Every connection it opens, redirects' too, is checked by :meth:`respd.outbound.OutboundPolicy.resolve` on
the addresses it really connects to, as :meth:`~respd.outbound.OutboundPolicy.httpx_client` does for httpx.
It also remembers the last HTTP error status a server answered, which the SDK reduces to "Server returned
an error response": respd reports the status itself (an ``http_error`` on the ``mcp_call``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

import httpcore2
import httpx2

from respd.outbound import OutboundPolicy, connect_checked


class StatusMemory:
    """The last HTTP error status (>= 400) a client got, and from which URL."""

    __slots__ = ("status", "url")

    def __init__(self) -> None:
        self.status: int | None = None
        self.url = ""

    async def hook(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.status, self.url = response.status_code, str(response.url.copy_with(query=None))


def guarded_client(
    policy: OutboundPolicy, memory: StatusMemory | None = None, *, max_connections: int = 8, **kwargs: Any
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose every connection passes ``policy``; environment proxies are ignored
    (a proxy would connect on respd's behalf to hosts the policy never saw)."""
    transport = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=max_connections))
    pool: Any = transport._pool  # httpx2 builds its pool with no way to pass a network backend; it keeps it here
    pool._network_backend = _GuardedBackend(policy, pool._network_backend)
    hooks = {"response": [memory.hook]} if memory is not None else {}
    return httpx2.AsyncClient(transport=transport, trust_env=False, event_hooks=hooks, **kwargs)


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, policy: OutboundPolicy, inner: httpcore2.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        def connect(address: str) -> Awaitable[httpcore2.AsyncNetworkStream]:
            return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

        return await connect_checked(self._policy, host, port, connect, httpcore2.ConnectError)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("Unix sockets are not reachable through the outbound policy.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
