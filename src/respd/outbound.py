"""The one outbound policy: which hosts respd may reach on a user's behalf.

Everything a request or a hosted tool makes respd fetch (MCP servers, web search, webhooks, file URLs) goes
through :class:`OutboundPolicy`. By default only public addresses are reachable: never loopback, private,
link-local, shared (CGNAT), multicast or reserved ones, so a user cannot make respd probe the network it runs
in (its database, cloud metadata at 169.254.169.254, an admin port on localhost). The operator widens it with
``outbound_allow`` patterns, and may narrow it to the list alone with ``outbound_public = false``.

Names are checked after resolution, on the addresses respd really connects to: :meth:`OutboundPolicy.httpx_client`
resolves, checks and connects in one step for every connection (redirects included), so a name that resolves to
a public address when checked and a private one when used (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """A URL or host the policy does not let respd reach; the message names it and says why."""

    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.host = host


@dataclass(frozen=True, slots=True)
class Pattern:
    """One ``outbound_allow`` entry: a host (name or address) and a port, each with ``*`` wildcards."""

    host: re.Pattern[str]
    port: re.Pattern[str]
    text: str

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address; raises ValueError."""
        raw = text.strip()
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0 or (raw[end + 1 :] and not raw[end + 1 :].startswith(":")):
                raise ValueError(f"bad outbound pattern {text!r}")
            host, port = raw[1:end], raw[end + 2 :] or "*"
        elif raw.count(":") == 1:
            host, port = raw.split(":")
        else:  # a name, an IPv4 address, or a bare IPv6 address: any port
            host, port = raw, "*"
            if ":" in host and _address(host) is None:
                raise ValueError(f"bad outbound pattern {text!r}: write an IPv6 pattern as [address]:port")
        if not host or not port or not re.fullmatch(r"[0-9*]+", port) or any(c in host for c in "/?#@ "):
            raise ValueError(f"bad outbound pattern {text!r}: use host, host:port or [v6]:port, with * wildcards")
        return cls(_glob(host.lower().rstrip(".")), _glob(port), raw)

    def matches(self, host: str, port: int) -> bool:
        return bool(self.host.fullmatch(host) and self.port.fullmatch(str(port)))


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _address(host: str) -> Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip


def is_public(ip: Address) -> bool:
    """Whether ``ip`` is on the public internet (not loopback, private, link-local, shared, reserved…)."""
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Which hosts respd may connect to for a user: public ones (``public``) plus ``allow``'s patterns."""

    allow: tuple[str, ...] = ()
    public: bool = True
    _patterns: tuple[Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple(Pattern.parse(p) for p in self.allow))

    def _listed(self, host: str, port: int) -> bool:
        return any(p.matches(host, port) for p in self._patterns)

    def _check_address(self, ip: Address, port: int, name: str) -> None:
        if self._listed(str(ip), port) or (self.public and is_public(ip)):
            return
        where = f"{name} ({ip})" if name != str(ip) else str(ip)
        why = "it is not in outbound_allow" if is_public(ip) else "it is a loopback, private or reserved address"
        raise OutboundRefused(f"Connections to {where} port {port} are not allowed: {why}.", host=name)

    def check_url(self, url: str) -> tuple[str, int]:
        """The ``(host, port)`` of an ``http(s)`` URL the policy may allow; raises :class:`OutboundRefused`.

        Checks what can be known without DNS: the scheme, and the address when the host is one. A name is
        checked again, on its addresses, when it is resolved (:meth:`resolve`, :meth:`httpx_client`).
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise OutboundRefused(f"Invalid URL {url!r}: {exc}.") from None
        scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
        if scheme not in DEFAULT_PORTS or not host:
            raise OutboundRefused(f"Invalid URL {url!r}: only http and https URLs with a host can be fetched.")
        port = port or DEFAULT_PORTS[scheme]
        ip = _address(host)
        if ip is not None:
            self._check_address(ip, port, host)
        elif not self.public and not self._listed(host, port):
            raise OutboundRefused(f"Connections to {host} port {port} are not allowed: it is not in outbound_allow.",
                                  host=host)  # fmt: skip
        return host, port

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` respd may connect to, each checked; raises :class:`OutboundRefused`.

        A name listed in ``outbound_allow`` may resolve anywhere (the operator named it). Otherwise every
        address must pass: a name with one private address among public ones is refused, not filtered.
        """
        name = host.lower().rstrip(".").strip("[]")
        ip = _address(name)
        if ip is not None:
            self._check_address(ip, port, name)
            return [str(ip)]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise OutboundRefused(f"Cannot resolve host {name}: {exc}.", host=name) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self._listed(name, port):
            for address in addresses:
                checked = _address(address)
                assert checked is not None
                self._check_address(checked, port, name)
        return addresses

    def httpx_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` whose every connection is checked against this policy as it is made.

        Environment proxies are ignored (``trust_env=False``): a proxy would connect on respd's behalf to
        hosts the policy never saw. ``kwargs`` go to the client (timeout, headers, follow_redirects…).
        """
        kwargs.setdefault("trust_env", False)
        return httpx.AsyncClient(transport=GuardedTransport(self), **kwargs)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with a network backend that resolves and checks each host before connecting."""

    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # httpx builds its connection pool without a way to pass a network backend; the pool keeps it in
        # this attribute (httpcore 1.x), and every new connection, redirects' too, goes through it.
        pool: Any = self._pool
        pool._network_backend = _GuardedBackend(policy, pool._network_backend)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: OutboundPolicy, inner: httpcore.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._policy.resolve(host, port)
        except OutboundRefused as exc:
            raise httpcore.ConnectError(exc.message) from exc
        error: Exception | None = None
        for address in addresses:  # the checked addresses, not the name: no second lookup to race
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not reachable through the outbound policy.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def refusal(exc: BaseException) -> OutboundRefused | None:
    """The :class:`OutboundRefused` behind an httpx error raised by a guarded client, if that was the cause."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OutboundRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
