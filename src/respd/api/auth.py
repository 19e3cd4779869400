"""API keys and tenants. With keys configured every /v1 call needs ``Authorization: Bearer <key>``,
and each key is its own tenant; without keys everything belongs to one anonymous tenant.

The key is checked by :class:`Authenticate`, around every route, before a handler reads anything of the
request: a caller without a valid key learns nothing (not whether its body or query would be valid, nor
whether a route or an id exists) and every route, including ones added later, gets the check.
"""

from __future__ import annotations

import hmac

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from respd.config import key_tenant
from respd.errors import AuthenticationFailed, envelope

TENANT = "respd.tenant"  # the scope key under which Authenticate leaves the caller's tenant


class KeyRing:
    """The configured keys, and the tenant each maps to."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._tenants = {k: key_tenant(k) for k in keys}

    @property
    def enabled(self) -> bool:
        return bool(self._tenants)

    def tenant(self, request: HTTPConnection) -> str:
        """The caller's tenant (an HTTP request or a WebSocket handshake), or a 401."""
        if not self._tenants:
            return ""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationFailed(
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        key = key.strip()
        for known, tenant in self._tenants.items():
            if hmac.compare_digest(known, key):
                return tenant
        shown = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"
        raise AuthenticationFailed(f"Incorrect API key provided: {shown}.")


class Authenticate:
    """ASGI middleware: the API key of every ``/v1`` request (and WebSocket handshake) is checked first; a
    missing or wrong one is refused at once with 401, the caller's tenant is left in the scope otherwise."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys.enabled and scope["type"] in ("http", "websocket") and scope["path"].startswith("/v1"):
            try:
                scope[TENANT] = self.keys.tenant(HTTPConnection(scope))
            except AuthenticationFailed as exc:
                refusal = Response(orjson.dumps(envelope(exc)), status_code=exc.status, headers=exc.headers(),
                                   media_type="application/json")  # fmt: skip
                if scope["type"] == "http":
                    await refusal(scope, receive, send)
                else:  # refused before the upgrade, with the status and body a POST would get
                    await WebSocket(scope, receive, send).send_denial_response(refusal)
                return
        await self.app(scope, receive, send)
