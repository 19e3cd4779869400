"""Identifiers in the API's style: a type prefix and 48 hex characters of randomness."""

from __future__ import annotations

import os


def new_id(prefix: str) -> str:
    """A fresh id like ``resp_4f…``; 192 random bits, so ids cannot be guessed across tenants."""
    return f"{prefix}_{os.urandom(24).hex()}"
