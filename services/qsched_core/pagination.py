"""Opaque, tamper-evident page tokens (AIP-158) for every List RPC.

A token carries the keyset cursor and a fingerprint of the request it was made
for (the list and its filters), signed with the server's key: a token is
refused if it was altered or is reused with other filters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from qsched_core.errors import InvalidArgument

Cursor = tuple[int | str, ...]
MAC_BYTES = 16


def _fingerprint(filters: Sequence[object]) -> str:
    return hashlib.sha256(json.dumps(list(filters)).encode()).hexdigest()[:16]


class PageTokens:
    def __init__(self, key: bytes):
        self._key = key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:MAC_BYTES]

    def encode(self, filters: Sequence[object], cursor: Cursor) -> str:
        body = json.dumps({"f": _fingerprint(filters), "c": list(cursor)}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._mac(body) + body).decode().rstrip("=")

    def decode(self, token: str, filters: Sequence[object]) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:MAC_BYTES], raw[MAC_BYTES:]
            if not hmac.compare_digest(mac, self._mac(body)):
                raise ValueError("bad signature")
            data = json.loads(body)
            cursor = tuple(data["c"])
            if not all(isinstance(v, int | str) for v in cursor):
                raise ValueError("bad cursor")
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(
                "INVALID_PAGE_TOKEN", "page_token is not a token this server issued"
            ) from exc
        if data.get("f") != _fingerprint(filters):
            raise InvalidArgument(
                "PAGE_TOKEN_MISMATCH", "page_token was issued for different filters; repeat the same request"
            )
        return cursor


def page_key(path: Path) -> bytes:
    """The signing key kept at `path` (mode 0600, created on first use), so tokens survive a
    restart. Written under a temporary name and linked into place: a concurrent reader never
    sees it half-written."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    finally:
        tmp.unlink()
    return key
