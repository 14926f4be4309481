"""A finished run's small data file rides its result update (issue 12): the writer hands back the
bytes of a file up to INLINE_DATA_MAX_BYTES, the run queue sends at most INLINE_BATCH_MAX_BYTES of
them per batch, and nothing kept (the run's updates, the crash journal) holds them."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from qsched_core.execution import (
    INLINE_BATCH_MAX_BYTES,
    INLINE_DATA_MAX_BYTES,
    DataRef,
    ExecutionUpdate,
    Succeeded,
    UpdateBatch,
)
from qsched_executor.executor import QueueSession
from qsched_executor.journal import _body_to_json
from qsched_executor.writers import write_file


def test_the_writer_returns_a_small_files_bytes_and_not_a_big_ones(tmp_path):
    small = tmp_path / "small.h5"
    sha, size, inline = write_file(str(small), {"xpts": np.arange(10.0)}, {"job_id": "JOB-1"}, {})
    assert inline == small.read_bytes() and size == len(inline) <= INLINE_DATA_MAX_BYTES
    assert sha == hashlib.sha256(inline).hexdigest()
    big = tmp_path / "big.h5"
    points = INLINE_DATA_MAX_BYTES // 8 + 1000  # float64: over the cap
    _, size, inline = write_file(str(big), {"avgi": np.zeros(points)}, {}, {})
    assert inline == b"" and size == big.stat().st_size > INLINE_DATA_MAX_BYTES


def result(task_id: str, size: int) -> ExecutionUpdate:
    data = b"x" * size
    return ExecutionUpdate(task_id, 3, 0.0, Succeeded(DataRef(f"{task_id}.h5", "", size), inline_data=data))


async def test_a_batch_carries_at_most_the_batch_budget_of_files():
    session = QueueSession()
    count = INLINE_BATCH_MAX_BYTES // INLINE_DATA_MAX_BYTES + 2
    for n in range(count):
        session.push(result(f"t{n}", INLINE_DATA_MAX_BYTES))
    (batch,) = await session.next()
    assert isinstance(batch, UpdateBatch) and len(batch.updates) == count
    sent = [len(u.body.inline_data) for u in batch.updates]
    assert sum(sent) <= INLINE_BATCH_MAX_BYTES
    assert sent[: count - 2] == [INLINE_DATA_MAX_BYTES] * (count - 2) and sent[-2:] == [0, 0]
    assert all(u.body.data is not None for u in batch.updates)  # the rest go with their DataRef only


def test_the_journal_never_holds_the_bytes():
    raw = _body_to_json(result("t1", 100).body)
    assert "inline_data" not in raw and raw["data"]["size_bytes"] == 100
    json.dumps(raw)
