"""JSON documents from callers, parsed with a bound on their nesting.

Python's parser recurses once per level: 5,000 times `{"a":` raised RecursionError, which reached
callers as UNKNOWN. Experiment settings and config documents are a handful of levels deep; a
document nested deeper than `MAX_DEPTH` is refused as a caller's mistake."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class TooDeep(ValueError):
    def __init__(self, limit: int):
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def loads_bounded(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing (TooDeep) a document nested deeper than `max_depth`.
    Malformed text raises json.JSONDecodeError as usual."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(max_depth) from None
    _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, limit: int) -> None:
    # Iterative, so the check itself cannot overflow the stack.
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise TooDeep(limit)
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
