"""API keys and tenants. With keys configured every /v1 call needs ``Authorization: Bearer <key>``,
and each key is its own tenant; without keys everything belongs to one anonymous tenant.
"""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from respd.config import key_tenant
from respd.errors import AuthenticationFailed


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
