"""Real git repositories in temp directories, for the code-provenance tests (issue 20)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_ENV = {
    "GIT_AUTHOR_NAME": "qsched test",
    "GIT_AUTHOR_EMAIL": "test@qsched.invalid",
    "GIT_COMMITTER_NAME": "qsched test",
    "GIT_COMMITTER_EMAIL": "test@qsched.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,  # the person's own git config plays no part
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A working tree with helpers to write files and commit them."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | _ENV
        done = subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        """Write `files`, commit everything; the new commit id."""
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")
