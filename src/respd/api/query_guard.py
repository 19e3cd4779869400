"""A NUL character anywhere in a request's query string is a 400 naming the parameter, before any route.

Query values end up in database queries (filters, cursors, names); PostgreSQL refuses a NUL in text outright
where SQLite would just match nothing, so without this one check every route that reads a query parameter
would have to guard it (the fuzz suite found the ones that did not). Checked once here, both databases
behave alike and a route added later cannot forget.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from respd.errors import InvalidRequest, envelope


def nul_parameter(query: bytes) -> str | None:
    """The name of the first query parameter whose name or value holds a NUL, if any."""
    if b"\x00" not in query and b"%00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\u0000")
    return None


class QueryGuard:
    """ASGI middleware: an HTTP request whose query holds a NUL is refused with the API's 400 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = nul_parameter(scope.get("query_string", b""))
            if name is not None:
                exc = InvalidRequest(f"Invalid '{name}': a NUL character is not allowed.", param=name,
                                     code="invalid_value")  # fmt: skip
                await Response(orjson.dumps(envelope(exc)), status_code=exc.status,
                               media_type="application/json")(scope, receive, send)  # fmt: skip
                return
        await self.app(scope, receive, send)
