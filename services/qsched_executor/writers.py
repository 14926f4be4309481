"""Where data files are written: a small pool of writer processes (`--data-writers`, default 3),
so that building and fsyncing HDF5 files neither holds the board thread nor competes with the
event loop for the GIL. With 0 writers, files are written on one thread of this process.

The processes come from a forkserver (never a fork of this multi-threaded gRPC process) that
has the HDF5 writer imported, and are started at once, so the first run does not pay for it."""

from __future__ import annotations

import multiprocessing
import os
import select
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from qsched_hardware import datafile


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
    def __init__(self, processes: int):
        self.processes = processes
        self._pool = self._start()

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
        self, path: Path, datasets: dict[str, Any], attrs: dict[str, Any], labels: dict[str, dict[str, Any]]
    ) -> Future[tuple[str, int]]:
        """(sha256, size) once the file is complete and fsynced under its final name."""
        try:
            return self._pool.submit(datafile.write_run_file, str(path), datasets, attrs, labels)
        except BrokenProcessPool:  # a writer was killed: a fresh pool for this and later files
            self._pool.shutdown(wait=False)
            self._pool = self._start()
            return self._pool.submit(datafile.write_run_file, str(path), datasets, attrs, labels)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
