"""Opaque, tamper-evident page tokens (AIP-158).

A token carries the keyset cursor and a fingerprint of the request it was made
for (its scope: the filters of ListJobs, the job of ListRuns), signed with the
server's key: a token is refused if it was altered or is reused with another
scope."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from qsched_scheduler.domain import JobFilter
from qsched_scheduler.errors import InvalidArgument


def filter_scope(flt: JobFilter) -> str:
    """The part of a ListJobs request a token is bound to."""
    return json.dumps(
        [
            flt.view.value,
            sorted(s.value for s in flt.states),
            flt.owner,
            flt.device,
            flt.kind and flt.kind.value,
        ]
    )


def _fingerprint(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


class PageTokens:
    def __init__(self, key: bytes):
        self._key = key

    def encode(self, scope: str, cursor: tuple[int, ...]) -> str:
        body = json.dumps({"f": _fingerprint(scope), "c": list(cursor)}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def decode(self, token: str, scope: str) -> tuple[int, ...]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:16], raw[16:]
            if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()[:16]):
                raise ValueError("bad signature")
            data = json.loads(body)
            cursor = tuple(int(v) for v in data["c"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(
                "INVALID_PAGE_TOKEN", "page_token is not a token this server issued"
            ) from exc
        if data.get("f") != _fingerprint(scope):
            raise InvalidArgument(
                "PAGE_TOKEN_MISMATCH",
                "page_token was issued for a different request; repeat the same request",
            )
        return cursor
