"""One executor per board, enforced by the OS: an exclusive `fcntl.flock` on
`<lock_dir>/<board_id>.lock`, held for the life of the process (the kernel releases it when the
process dies, even on kill -9, so a crash never leaves a stale lock)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class BoardLocked(OSError):
    """Another process owns the board."""


class BoardLock:
    def __init__(self, lock_dir: Path, board_id: str):
        self.path = Path(lock_dir) / f"{board_id}.lock"
        self.board_id = board_id
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise BoardLocked(
                f"board {self.board_id} is already owned by another executor "
                f"(lock file {self.path} is held by pid {holder}); refusing to start"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
