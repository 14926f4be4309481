"""Provider credentials: from the environment, else from a JSON file named by
QSCHED_GATEWAY_CREDENTIALS (an object with the same variable names as keys). Values are handed to the
provider SDKs only: never logged, never written to the task registry, never returned by an RPC."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
FILE_VARIABLE = "QSCHED_GATEWAY_CREDENTIALS"


class Credentials:
    def __init__(self, environ: dict[str, str] | None = None):
        self._env = dict(os.environ if environ is None else environ)
        self._file: dict[str, str] = {}
        path = self._env.get(FILE_VARIABLE, "")
        if path:
            try:
                data = json.loads(Path(path).expanduser().read_text())
                self._file = {str(k): str(v) for k, v in data.items() if v is not None}
            except (OSError, ValueError, AttributeError) as exc:
                # The path is not secret; the content is never shown.
                log.warning("cannot read %s=%s: %s", FILE_VARIABLE, path, type(exc).__name__)

    def get(self, name: str) -> str:
        return self._env.get(name) or self._file.get(name, "")

    def source(self, *names: str) -> str:
        """'environment' or 'file' for the first name that is set, else 'none'."""
        for name in names:
            if self._env.get(name):
                return "environment"
        for name in names:
            if self._file.get(name):
                return "file"
        return "none"

    def has_all(self, *names: str) -> bool:
        return all(self.get(name) for name in names)
