"""uvicorn's HTTP/1.1 protocol with one change: a request it cannot parse gets the API's error envelope.

uvicorn answers an unparseable request itself, before any application code runs, with a plain-text 400
("Invalid HTTP request received."): a malformed request line or header, or a URL longer than its parser
takes (about 64 KB: an id of 100k characters in a path). Clients of this API read every error as the JSON
envelope, so that answer is the envelope too, with the same status.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from respd.errors import InvalidRequest, envelope

_BODY = orjson.dumps(
    envelope(
        InvalidRequest(
            "The server could not parse this HTTP request: its request line or headers are malformed, or its URL "
            "is longer than the server accepts (about 64 KB).",
            code="invalid_http_request",
        )
    )
)


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """``http="httptools"``, answering an unparseable request with the JSON envelope."""

    def send_400_response(self, msg: str) -> None:
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(_BODY),
                 b"connection: close\r\n\r\n"]  # fmt: skip
        self.transport.write(b"".join(head) + _BODY)
        self.transport.close()
