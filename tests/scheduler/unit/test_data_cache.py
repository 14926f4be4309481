"""The scheduler's in-memory cache of recently finished runs' data files (data_cache.py): bounded
by bytes, least recently used out first, a miss for a name the run does not have."""

from __future__ import annotations

import hashlib

from qsched_core.execution import DataRef, Succeeded
from qsched_scheduler.data_cache import MAX_CACHE_BYTES, CachedFile, RecentData
from qsched_scheduler.domain import Job, JobState
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from tests.scheduler.unit.test_lab_dispatch import engine, on_board, started, state_of, sub
from tests.support.memory_executor import MemoryExecutor


def file(task_id: str, size: int, name: str = "") -> CachedFile:
    return CachedFile(task_id, name or f"2026/12/08/{task_id}.h5", "ab" * 32, bytes([len(task_id)]) * size)


def test_a_file_put_is_found_by_task_id_and_name():
    cache = RecentData()
    cache.put(file("t1", 100))
    assert cache.get("t1", "2026/12/08/t1.h5") == file("t1", 100)
    assert cache.get("t1", "2026/12/08/other.h5") is None  # not the run's file: not served
    assert cache.get("t2", "2026/12/08/t2.h5") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)
    assert cache.max_bytes == MAX_CACHE_BYTES == 64 * 1024 * 1024


def test_the_bytes_held_stay_within_the_bound_oldest_out_first():
    cache = RecentData(max_bytes=1000)
    for n in range(5):
        cache.put(file(f"t{n}", 300))
        assert cache.size <= 1000
    assert len(cache) == 3 and cache.size == 900 and cache.stats.evicted == 2
    assert cache.get("t0", "2026/12/08/t0.h5") is None and cache.get("t1", "2026/12/08/t1.h5") is None
    assert all(cache.get(f"t{n}", f"2026/12/08/t{n}.h5") is not None for n in (2, 3, 4))


def test_a_file_read_is_kept_over_one_put_later():
    cache = RecentData(max_bytes=900)
    for n in range(3):
        cache.put(file(f"t{n}", 300))
    assert cache.get("t0", "2026/12/08/t0.h5") is not None  # t0 now the most recently used
    cache.put(file("t3", 300))
    assert cache.get("t1", "2026/12/08/t1.h5") is None  # the least recently used went
    assert cache.get("t0", "2026/12/08/t0.h5") is not None


def test_a_file_bigger_than_the_cache_is_not_kept_and_evicts_nothing():
    cache = RecentData(max_bytes=1000)
    cache.put(file("t1", 600))
    cache.put(file("big", 1001))
    assert cache.get("big", "2026/12/08/big.h5") is None and cache.stats.refused == 1
    assert cache.get("t1", "2026/12/08/t1.h5") is not None and cache.size == 600


def test_the_same_run_put_again_replaces_its_file():
    cache = RecentData(max_bytes=1000)
    cache.put(file("t1", 600))
    cache.put(file("t1", 200))
    assert len(cache) == 1 and cache.size == 200


# -- the engine: results put it in, FetchJobData serves from it, falls back to the executor ----------
class CountingExecutor(MemoryExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.fetches: list[str] = []

    async def fetch_data(self, task_id: str, name: str = ""):
        self.fetches.append(task_id)
        async for chunk in super().fetch_data(task_id, name):
            yield chunk


async def finish(scheduler: Scheduler, board, body_of) -> Job:
    job = (await scheduler.submit(sub())).job
    await on_board(board, job.job_id)
    task_id = board.current
    board.finish_current(body_of(job.job_id, task_id))
    return await state_of(scheduler, job.job_id, JobState.SUCCEEDED)


async def fetched(scheduler: Scheduler, job_id: str) -> bytes:
    return b"".join([c.data async for c in scheduler.fetch_data(job_id)])


async def test_fetch_data_serves_a_cached_result_file_and_falls_back_to_the_executor():
    executor = CountingExecutor()
    executor.board.hold()
    scheduler = await started(engine(MemoryJobStore(), executor, default_run_seconds=0.01))
    try:
        board = executor.board
        content = b"\x89HDF\r\n\x1a\n" + b"run data " * 1000

        def inline(job_id: str, task_id: str) -> Succeeded:
            ref = DataRef(f"2026/12/08/{job_id}.h5", hashlib.sha256(content).hexdigest(), len(content))
            return Succeeded(ref, inline_data=content)

        cached = await finish(scheduler, board, inline)
        assert await fetched(scheduler, cached.job_id) == content
        assert executor.fetches == []  # served from memory: no call to the executor
        chunks = [c async for c in scheduler.fetch_data(cached.job_id)]
        assert [(c.offset, c.total_size, c.file_name) for c in chunks] == [
            (0, len(content), f"{cached.job_id}.h5")
        ]
        assert chunks[0].sha256 == cached.current_run.data.sha256

        plain = await finish(scheduler, board, lambda job_id, task_id: None)  # no inline bytes
        assert await fetched(scheduler, plain.job_id) == board.data_of(plain.current_run.task_id)
        assert executor.fetches == [plain.current_run.task_id]

        # A size that is not the DataRef's: not the file it names, never cached.
        def wrong(job_id: str, task_id: str) -> Succeeded:
            return Succeeded(DataRef(f"{job_id}.h5", "00" * 32, len(content) + 1), inline_data=content)

        odd = await finish(scheduler, board, wrong)
        await fetched(scheduler, odd.job_id)
        assert executor.fetches[-1] == odd.current_run.task_id

        # Evicted (a cache too small for it): fetched from the executor again.
        scheduler.results.recent_data = RecentData(max_bytes=10)
        assert await fetched(scheduler, cached.job_id) == board.data_of(cached.current_run.task_id)
        assert executor.fetches[-1] == cached.current_run.task_id
    finally:
        await scheduler.stop()
