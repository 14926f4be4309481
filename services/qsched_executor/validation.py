"""The validation cache: an experiment is checked once per (experiment class and module, its
repository commit, settings hash, hardware-config sha, board config sha), since
`Experiment.validate()` (for the built-ins, a full program compile) depends on nothing else. What
can change between two runs with the same key is re-done every time: the allow-list and class
lookup (cheap, imports are cached) and the experiment object itself (the run needs a fresh one)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from qsched_hardware.experiments import Violation

CacheKey = tuple[str, str, str, str, str]


def cache_key(
    module: str, class_name: str, expt_json: str, hw_sha: str, board_sha: str, commit: str = ""
) -> CacheKey:
    """`commit`: the experiment repository's commit the class comes from ("" = not from it):
    the same module at two commits is two experiments."""
    settings = hashlib.sha256((expt_json or "{}").encode()).hexdigest()
    where = f"{module.strip()}@{commit}" if commit else module.strip()
    return (where, class_name, settings, hw_sha, board_sha)


class ValidationCache:
    """Least-recently-used (key -> violations); `hits` and `misses` are for tests and stats."""

    def __init__(self, size: int = 1024):
        self._size = size
        self._entries: OrderedDict[CacheKey, tuple[Violation, ...]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> tuple[Violation, ...] | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found

    def put(self, key: CacheKey, violations: list[Violation] | tuple[Violation, ...]) -> None:
        self._entries[key] = tuple(violations)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
