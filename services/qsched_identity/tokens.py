"""Bearer tokens. A token is 256 random bits; the database keeps only its SHA-256.

A plain (unsalted, fast) hash is enough here because the input is a uniformly random
256-bit secret, not a password: nothing can be guessed, so slow hashing would only cost
every RPC a few milliseconds. The prefix makes a leaked token recognisable (secret
scanners, logs) and the token id (not secret) names it in listings and the audit log."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "qsched_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(6)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(PREFIX) and len(value) > len(PREFIX) + 20


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
