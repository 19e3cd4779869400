"""Sealed blobs: opaque, authenticated, tenant-bound ciphertext the server hands to clients and gets back.

Reasoning items carry their text this way as ``encrypted_content`` (for ``store:false`` clients that replay
items by value). AES-256-GCM from ``cryptography``; the key comes from the config (``secret_key`` /
``RESPD_SECRET_KEY``, base64 of 32 bytes; replicas must share it) or is generated once into the data dir.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "respd1."
KEY_FILE = "secret.key"


class SealError(ValueError):
    """A blob this server did not seal for this tenant and purpose, or one that was altered."""


class Sealer:
    """Seals and opens JSON payloads, bound to a tenant and a purpose."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, tenant: str, purpose: str, payload: Any) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, orjson.dumps(payload), f"{purpose}|{tenant}".encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, tenant: str, purpose: str, blob: str) -> Any:
        if not blob.startswith(PREFIX):
            raise SealError("not sealed by this server")
        try:
            raw = base64.urlsafe_b64decode(blob[len(PREFIX) :])
            plain = self._aead.decrypt(raw[:12], raw[12:], f"{purpose}|{tenant}".encode())
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise SealError("altered, or sealed with another key") from exc
        return orjson.loads(plain)


def load_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, else the one in the data dir, else a new one written there (mode 0600)."""
    if configured:
        key = base64.b64decode(configured)
        if len(key) != 32:
            raise ValueError("secret_key must be base64 of 32 bytes")
        return key
    path = data_dir / KEY_FILE
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode())
    try:
        os.link(tmp, path)  # another process may have won the race: its key wins, ours is dropped
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return base64.b64decode(path.read_text().strip())
