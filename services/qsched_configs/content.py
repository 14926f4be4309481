"""Config content: hashing, content types, validation and diffs. Pure functions."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import PurePosixPath, PureWindowsPath

from qsched_configs.domain import MAX_CONTENT_BYTES, ContentType
from qsched_configs.errors import FailedPrecondition, InvalidArgument
from qsched_core.json_bounds import TooDeep, loads_bounded

EXTENSIONS = {
    ".yaml": ContentType.YAML,
    ".yml": ContentType.YAML,
    ".json": ContentType.JSON,
    ".csv": ContentType.CSV,
}
TEXT_TYPES = frozenset({ContentType.YAML, ContentType.JSON, ContentType.CSV})
NO_NEWLINE = "\\ No newline at end of file\n"
DIFF_CONTEXT_LINES = 3


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def guess_content_type(filename: str) -> ContentType:
    """From the file name's extension (case-insensitive); binary when it says nothing."""
    # The name is metadata only: it is looked at, never opened. Take the last component
    # whichever separator the uploader's system uses.
    base = PureWindowsPath(PurePosixPath(filename).name).name
    suffix = PurePosixPath(base).suffix.lower()
    return EXTENSIONS.get(suffix, ContentType.BINARY)


def check_size(content: bytes) -> None:
    if not content:
        raise InvalidArgument("EMPTY_CONTENT", "content is empty", size_bytes=0)
    if len(content) > MAX_CONTENT_BYTES:
        raise InvalidArgument(
            "CONTENT_TOO_LARGE",
            f"content is {len(content)} bytes; the limit is {MAX_CONTENT_BYTES} bytes (4 MiB)",
            size_bytes=len(content),
            limit_bytes=MAX_CONTENT_BYTES,
        )


def check_content(content: bytes, content_type: ContentType) -> None:
    """Size limits for every type; UTF-8 for text types; YAML and JSON must parse."""
    check_size(content)
    if content_type not in TEXT_TYPES:
        return
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(content_type, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if content_type is ContentType.JSON:
        try:
            loads_bounded(text)
        except json.JSONDecodeError as exc:
            raise _invalid(content_type, f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc
        except TooDeep as exc:
            raise _invalid(content_type, str(exc)) from exc
    elif content_type is ContentType.YAML:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            yaml.load(text, Loader=loader)
        except yaml.YAMLError as exc:
            raise _invalid(content_type, " ".join(str(exc).split())) from exc
        except RecursionError:
            raise _invalid(content_type, "nested too deeply") from None


def _invalid(content_type: ContentType, problem: str) -> InvalidArgument:
    return InvalidArgument(
        "INVALID_CONTENT",
        f"content is not valid {content_type.value}: {problem}",
        content_type=content_type.value,
        problem=problem,
    )


def _text(content: bytes, revision_id: str) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FailedPrecondition(
            "CONTENT_NOT_TEXT",
            f"revision {revision_id} is not UTF-8 text; only text revisions can be diffed",
            revision_id=revision_id,
        ) from exc


def unified_diff(old: bytes, new: bytes, old_label: str, new_label: str) -> str:
    """A unified diff of two UTF-8 texts, git-style about a missing final newline."""
    old_lines = _text(old, old_label.split()[0]).splitlines(keepends=True)
    new_lines = _text(new, new_label.split()[0]).splitlines(keepends=True)
    out: list[str] = []
    for line in difflib.unified_diff(old_lines, new_lines, old_label, new_label, n=DIFF_CONTEXT_LINES):
        if line.endswith("\n"):
            out.append(line)
        else:
            out += [line, "\n", NO_NEWLINE]
    return "".join(out)
