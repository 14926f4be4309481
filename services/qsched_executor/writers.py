"""Where data files are written: a small pool of writer processes (`--data-writers`, default 3),
so that building and fsyncing HDF5 files neither holds the board thread nor competes with the
event loop for the GIL. With 0 writers, files are written on one thread of this process.

The processes come from a forkserver (never a fork of this multi-threaded gRPC process) that
has the HDF5 writer imported, and are started at once, so the first run does not pay for it."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import queue
import select
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from qsched_core.execution import INLINE_DATA_MAX_BYTES
from qsched_hardware import datafile

Written = tuple[str, int, bytes]  # (sha256 hex, size, the bytes when small enough to send inline)


def write_file(
    path: str, datasets: dict[str, Any], attrs: dict[str, Any], labels: dict[str, dict[str, Any]]
) -> Written:
    """(In a writer) the run file, written durably; a small file's bytes come back too (they are
    in memory already), for its terminal update (INLINE_DATA_MAX_BYTES)."""
    image = datafile.build_run_file(datasets, attrs, labels)
    datafile.write_image(path, image)
    inline = image if len(image) <= INLINE_DATA_MAX_BYTES else b""
    return hashlib.sha256(image).hexdigest(), len(image), inline


def _warm(executor_pid: int) -> None:
    """Runs in each writer once: the imports and HDF5's own start-up are paid here. A writer
    exits when the executor does (even on kill -9): its parent is the forkserver, which lives
    as long as any writer does, so the writer watches the executor itself."""
    datafile.build_run_file({}, {"warm": True})

    def watch() -> None:
        try:
            fd = os.pidfd_open(executor_pid)
        except OSError:  # already gone
            os._exit(0)
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(0)

    threading.Thread(target=watch, name="executor-watch", daemon=True).start()


class DataWriters:
    """`write` only queues the file: a thread of its own gathers its attributes (when given a
    function) and feeds the pool. Both were the board thread's work between two runs (~0.2 ms
    of the 50 ms-run gap: submitting to a process pool wakes its manager thread, which takes the
    GIL); a put on a SimpleQueue hands nothing over."""

    def __init__(self, processes: int):
        self.processes = processes
        self._pool = self._start()
        self._queued: queue.SimpleQueue[tuple[Future[Written], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._feeder = threading.Thread(target=self._feed, name="datafile-submit", daemon=True)
        self._feeder.start()

    def _start(self) -> Executor:
        if self.processes <= 0:
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="datafile")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["qsched_hardware.datafile"])
        pool = ProcessPoolExecutor(
            max_workers=self.processes, mp_context=context, initializer=_warm, initargs=(os.getpid(),)
        )
        for _ in range(self.processes):  # start every worker now
            pool.submit(int)
        return pool

    def write(
        self,
        path: Path,
        datasets: dict[str, Any],
        attrs: dict[str, Any] | Callable[[], dict[str, Any]],
        labels: dict[str, dict[str, Any]],
    ) -> Future[Written]:
        """(sha256, size, a small file's bytes) once the file is complete and fsynced under its
        final name. `attrs` may be a function that gathers them: it is called on the feeding
        thread, not the caller's."""
        future: Future[Written] = Future()
        self._queued.put((future, (path, datasets, attrs, labels)))
        return future

    def _feed(self) -> None:
        while (item := self._queued.get()) is not None:
            future, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                path, datasets, attrs, labels = args
                written = self._submit(path, datasets, attrs() if callable(attrs) else attrs, labels)
            except BaseException as exc:  # e.g. a pool that cannot start: the run's write failed
                future.set_exception(exc)
                continue
            written.add_done_callback(lambda done, future=future: _settle(future, done))

    def _submit(
        self, path: Path, datasets: dict[str, Any], attrs: dict[str, Any], labels: dict[str, dict[str, Any]]
    ) -> Future[Written]:
        try:
            return self._pool.submit(write_file, str(path), datasets, attrs, labels)
        except BrokenProcessPool:  # a writer was killed: a fresh pool for this and later files
            self._pool.shutdown(wait=False)
            self._pool = self._start()
            return self._pool.submit(write_file, str(path), datasets, attrs, labels)

    def close(self) -> None:
        self._queued.put(None)  # after every file queued before: each is submitted first
        self._feeder.join()
        self._pool.shutdown(wait=True)


def _settle(future: Future[Written], done: Future[Written]) -> None:
    error = done.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(done.result())
