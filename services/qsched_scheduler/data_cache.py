"""Recently finished runs' data files, in memory: the bytes a small file's terminal update brought
from the executor (Succeeded.inline_data), so FetchJobData and WatchJob (include_data) can send
them without going back to the executor.

Only a cache, bounded by bytes (least recently used go first): nothing durable depends on it.
The database holds each run's DataRef and the executor holds the file; a file not here (too big,
evicted, a restarted scheduler, another replica) is fetched from the executor as before."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CachedFile:
    """A run's whole data file: `name` as in its DataRef (relative to the executor's data root)."""

    task_id: str
    name: str
    sha256: str
    data: bytes


@dataclass
class CacheStats:
    stored: int = 0  # files put in
    refused: int = 0  # larger than the whole cache: never kept
    evicted: int = 0  # pushed out by newer files
    hits: int = 0
    misses: int = 0


class RecentData:
    """Data files by task id, at most `max_bytes` of them in all."""

    def __init__(self, max_bytes: int = MAX_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.size = 0  # bytes held
        self.stats = CacheStats()
        self._files: OrderedDict[str, CachedFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._files)

    def put(self, file: CachedFile) -> None:
        if len(file.data) > self.max_bytes:
            self.stats.refused += 1
            return
        old = self._files.pop(file.task_id, None)
        if old is not None:
            self.size -= len(old.data)
        self._files[file.task_id] = file
        self.size += len(file.data)
        self.stats.stored += 1
        while self.size > self.max_bytes:
            _, gone = self._files.popitem(last=False)
            self.size -= len(gone.data)
            self.stats.evicted += 1

    def get(self, task_id: str, name: str) -> CachedFile | None:
        """The run's file when held under that name (a run's name never changes; checked anyway)."""
        file = self._files.get(task_id)
        if file is None or file.name != name:
            self.stats.misses += 1
            return None
        self._files.move_to_end(task_id)
        self.stats.hits += 1
        return file
