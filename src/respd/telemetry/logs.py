"""Logging setup: plain lines or one JSON object per line, and the access log's one line per request."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

access = logging.getLogger("respd.access")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", …}``; an access line adds its fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure(level: str, fmt: str) -> None:
    """Log to stderr at ``level``, as text or JSON (``fmt``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def access_line(method: str, path: str, status: int, ms: float, response_id: str | None, key: str,
                request_id: str) -> None:  # fmt: skip
    """The access log's line for one request (never the API key: its label)."""
    fields = {"method": method, "path": path, "status": status, "duration_ms": round(ms, 3),
              "response_id": response_id, "key": key, "request_id": request_id}  # fmt: skip
    access.info("%s %s %d %.1fms %s key=%s %s", method, path, status, ms, response_id or "-", key, request_id,
                extra={"access": fields})  # fmt: skip
