"""Progress display for waiting on a job: a `\\r` text bar on a terminal, tqdm's notebook bar
in Jupyter when tqdm is installed (an HTML-free text line otherwise), one line per state change
when the output is not a terminal, nothing at all when quiet."""

from __future__ import annotations

import sys
from typing import Any, TextIO

BAR_WIDTH = 30


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {fraction:4.0%}"


class Progress:
    """Call `update(state, fraction, message)` as the job moves; `close()` at the end."""

    def __init__(self, job_id: str, verbose: bool = True, stream: TextIO | None = None):
        self.job_id = job_id
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._tqdm: Any = None
        self._notebook = verbose and not self.tty and _in_notebook()
        self._state = ""
        self._fraction = -1.0
        self._line_open = False

    def _print(self, text: str) -> None:
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, state: str, fraction: float | None = None, message: str = "") -> None:
        if not self.verbose:
            return
        changed = state != self._state
        self._state = state
        if self._notebook and self._tqdm is None and state == "running":
            try:
                from tqdm.auto import tqdm  # only when already installed

                self._tqdm = tqdm(total=100, desc=self.job_id, unit="%")
            except ImportError:
                self._notebook = False
        if changed:
            detail = f" ({message})" if message else ""
            self._print(f"{self.job_id}: {state}{detail}")
        if fraction is None or state != "running" or fraction == self._fraction:
            return
        self._fraction = fraction
        if self._tqdm is not None:
            self._tqdm.n = round(fraction * 100)
            self._tqdm.refresh()
        elif self.tty:
            self.stream.write(f"\r{self.job_id} {bar(fraction)}")
            self.stream.flush()
            self._line_open = True

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False
