"""Identifiers in the API's style: a type prefix and 48 hex characters.

Like the API's own ids (``resp_67ccd2be…``), the first 8 hex characters are the creation time in seconds
and the other 40 are random. That is not cosmetic: ids created together sort together, so the stored
rows' indexes grow at their right edge instead of taking every insert at a random page — a random id
dirties one more index page per row per commit, which more than doubled the SQLite write-ahead log per
response (bench/README.md).
"""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    """A fresh id like ``resp_67ccd2be…``: creation second, then 160 random bits (ids cannot be guessed
    across tenants)."""
    return f"{prefix}_{int(time.time()) & 0xFFFFFFFF:08x}{os.urandom(20).hex()}"
