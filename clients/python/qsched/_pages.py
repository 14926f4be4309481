"""Walking a paginated List RPC (AIP-158 page tokens) to the end or to a limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
MAX_PAGE_SIZE = 1000  # what every qsched List RPC allows


def _size(limit: int | None, have: int) -> int:
    return MAX_PAGE_SIZE if limit is None else min(limit - have, MAX_PAGE_SIZE)


def collect(
    fetch: Callable[[str, int], Any], items: Callable[[Any], Sequence[T]], limit: int | None = None
) -> list[T]:
    """Every item (up to `limit`): `fetch(page_token, page_size)` returns one page."""
    out: list[T] = []
    token = ""
    while limit is None or len(out) < limit:
        page = fetch(token, _size(limit, len(out)))
        out.extend(items(page))
        token = page.next_page_token
        if not token:
            break
    return out


async def collect_async(
    fetch: Callable[[str, int], Awaitable[Any]], items: Callable[[Any], Sequence[T]], limit: int | None = None
) -> list[T]:
    """`collect` for an asyncio stub."""
    out: list[T] = []
    token = ""
    while limit is None or len(out) < limit:
        page = await fetch(token, _size(limit, len(out)))
        out.extend(items(page))
        token = page.next_page_token
        if not token:
            break
    return out
