"""Config versioning from Python: push, pull, list, show, set main, diff, history.

The seed's push / pull / set-main examples, against the config service::

    from qsched.configs import ConfigClient

    cfg = ConfigClient()  # QSCHED_CONFIGS_ADDRESS, else 127.0.0.1:50052

    # PUSH: store a file and make it the main hardware config (seed: push_hardware_config_to_main)
    rev = cfg.push("configs/hardware_config_202505.yml", "hardware_config")
    print(f"Pushed new main config: {rev.revision_id}")

    # PULL: the main hardware config (seed: get_main_version / get_main_config_path)
    data = cfg.pull("hardware_config", path="hardware_config.yml")  # bytes, also written to the file
    print(cfg.main("hardware_config").revision.revision_id)
    print(cfg.mains())  # {type: main revision id or None} (seed: get_all_main_configs)

    # SET MAIN: list the versions, make an existing one main (seed: list_versions, set_main_version)
    for r in cfg.list("hardware_config"):
        print(f"{r.revision_id}: {r.original_filename} ({r.create_time})")
    cfg.set_main("CFG-HW-20260113-00001")

Two people calibrating at once: every change of main carries the etag of the main
the caller last saw, and the service refuses a stale one (QschedError with code
ABORTED, reason ETAG_MISMATCH) instead of silently overwriting. To protect a whole
calibration, read main first and pass its etag back::

    main = cfg.main("hardware_config", include_content=True)
    new_yaml = calibrate(main.revision.content)
    cfg.push(new_yaml, "hardware_config", filename="hardware_config.yml", etag=main.etag)

Without an etag, `push` and `set_main` read the current etag themselves just before
changing main: that only guards the milliseconds between the two calls, i.e. it
means "replace whatever is main right now" (the change is still recorded in the
history with who and when).

Errors are raised as qsched.errors.QschedError (code, reason, message)."""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from qsched._pages import collect
from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.calls import Calls
from qsched.credentials import find_token, tls_from_env
from qsched.errors import QschedError
from qsched.wire import sync_channel

DEFAULT_ADDRESS = "127.0.0.1:50052"
ADDRESS_ENV = "QSCHED_CONFIGS_ADDRESS"
DEFAULT_TIMEOUT_S = 30.0
# Revisions hold up to 4 MiB; the default client receive limit (4 MiB) would refuse the largest.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

CONTENT_TYPES = {
    "yaml": pb.CONTENT_TYPE_YAML,
    "json": pb.CONTENT_TYPE_JSON,
    "csv": pb.CONTENT_TYPE_CSV,
    "binary": pb.CONTENT_TYPE_BINARY,
}
_CONTENT_TYPE_NAMES = {value: name for name, value in CONTENT_TYPES.items()}


def configs_address(explicit: str | None = None) -> str:
    return explicit or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


def default_user() -> str:
    """ "" lets the config service record the authenticated user ($QSCHED_USER overrides,
    and must then match the token)."""
    return os.environ.get("QSCHED_USER", "")


# -- results ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Revision:
    """One immutable config revision. `content` is set by show(), main(include_content=True)."""

    revision_id: str
    config_type: str
    sha256: str
    size_bytes: int
    content_type: str  # yaml | json | csv | binary
    original_filename: str
    creator: str
    create_time: datetime | None
    first_job_id: str = ""
    content: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MainChange:
    config_type: str
    from_revision_id: str  # "" for the first main of a type
    to_revision_id: str
    changed_by: str
    change_time: datetime | None


@dataclass(frozen=True)
class Main:
    """The main revision of a type, the etag to pass back when changing it, and how it got there."""

    revision: Revision
    etag: str
    last_change: MainChange


@dataclass(frozen=True)
class ConfigType:
    name: str
    abbreviation: str
    description: str = ""
    required_for_lab_runs: bool = False


def _time(ts) -> datetime | None:  # google.protobuf.Timestamp
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _revision(message: pb.ConfigRevision, with_content: bool = False) -> Revision:
    return Revision(
        revision_id=message.revision_id,
        config_type=message.config_type,
        sha256=message.sha256,
        size_bytes=message.size_bytes,
        content_type=_CONTENT_TYPE_NAMES.get(message.content_type, "unspecified"),
        original_filename=message.original_filename,
        creator=message.creator,
        create_time=_time(message.create_time),
        first_job_id=message.first_job_id,
        content=message.content if with_content else None,
    )


def _change(message: pb.MainChange) -> MainChange:
    return MainChange(
        config_type=message.config_type,
        from_revision_id=message.from_revision_id,
        to_revision_id=message.to_revision_id,
        changed_by=message.changed_by,
        change_time=_time(message.change_time),
    )


def _type(message: pb.ConfigType) -> ConfigType:
    return ConfigType(message.name, message.abbreviation, message.description, message.required_for_lab_runs)


# -- the client ------------------------------------------------------------------------------------------
class ConfigClient:
    """A synchronous client of qsched.configs.v1.ConfigService. Reuse one per process; close()
    (or `with ConfigClient() as cfg:`) releases the channel."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        user: str | None = None,
        token: str | None = None,
    ):
        self.address = configs_address(address)
        self.user = user or default_user()
        self._channel = sync_channel(
            self.address,
            find_token(token),
            tls_from_env(),
            [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        )
        self.calls = Calls(self._channel, "ConfigService", pb, self.address, timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ConfigClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------
    @staticmethod
    def _content(path_or_bytes: str | os.PathLike[str] | bytes, filename: str | None) -> tuple[bytes, str]:
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            return bytes(path_or_bytes), filename or ""
        path = Path(path_or_bytes)
        # Only the base name travels: the service keeps it as metadata.
        return path.read_bytes(), filename or path.name

    def push(
        self,
        path_or_bytes: str | os.PathLike[str] | bytes,
        config_type: str,
        creator: str | None = None,
        *,
        etag: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Revision:
        """Store a file (or bytes) and make it the main revision of `config_type`. Identical content
        reuses the existing revision. `content_type` (yaml, json, csv, binary) defaults to a guess from
        the file name. With `etag=None` the current etag is read first (see the module docstring)."""
        content, name = self._content(path_or_bytes, filename)
        if etag is None:
            etag = self.main_etag(config_type)
        response = self.calls(
            "PushToMain",
            pb.PushToMainRequest(
                config_type=config_type,
                content=content,
                content_type=CONTENT_TYPES[content_type] if content_type else pb.CONTENT_TYPE_UNSPECIFIED,
                original_filename=name,
                creator=creator or self.user,
                etag=etag,
            ),
        )
        return _revision(response.revision)

    def upload(
        self,
        path_or_bytes: str | os.PathLike[str] | bytes,
        config_type: str,
        creator: str | None = None,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Revision:
        """Store a revision without touching main (identical content returns the existing revision)."""
        content, name = self._content(path_or_bytes, filename)
        response = self.calls(
            "CreateRevision",
            pb.CreateRevisionRequest(
                config_type=config_type,
                content=content,
                content_type=CONTENT_TYPES[content_type] if content_type else pb.CONTENT_TYPE_UNSPECIFIED,
                original_filename=name,
                creator=creator or self.user,
            ),
        )
        return _revision(response.revision)

    def set_main(
        self,
        revision_id: str,
        config_type: str | None = None,
        etag: str | None = None,
        changed_by: str | None = None,
    ) -> MainChange:
        """Make an existing revision main of its type (`config_type` defaults to the revision's own).
        With `etag=None` the current etag is read first: that replaces whatever is main right now; pass
        the etag from main() to refuse (ABORTED / ETAG_MISMATCH) if someone changed it since."""
        if etag is None:
            etag = self.main_etag(config_type or self._type_of(revision_id))
        response = self.calls(
            "SetMain",
            pb.SetMainRequest(
                config_type=config_type or "",
                revision_id=revision_id,
                etag=etag,
                changed_by=changed_by or self.user,
            ),
        )
        return _change(response.change)

    def register_type(
        self, name: str, abbreviation: str, description: str = "", required_for_lab_runs: bool = False
    ) -> ConfigType:
        """Add a site config type (lower_snake name, two-character abbreviation used in revision ids)."""
        response = self.calls(
            "RegisterConfigType",
            pb.RegisterConfigTypeRequest(
                config_type=pb.ConfigType(
                    name=name,
                    abbreviation=abbreviation,
                    description=description,
                    required_for_lab_runs=required_for_lab_runs,
                )
            ),
        )
        return _type(response.config_type)

    # -- reading ---------------------------------------------------------------------------------------
    def main(self, config_type: str, include_content: bool = False) -> Main:
        """The main revision of a type with its etag. QschedError NOT_FOUND / MAIN_NOT_SET if it has none."""
        response = self.calls(
            "GetMain", pb.GetMainRequest(config_type=config_type, include_content=include_content)
        )
        return Main(
            _revision(response.revision, with_content=include_content),
            response.etag,
            _change(response.last_change),
        )

    def main_etag(self, config_type: str) -> str:
        """The current etag of a type's main ("" while it has none)."""
        try:
            return self.main(config_type).etag
        except QschedError as error:
            if error.reason == "MAIN_NOT_SET":
                return ""
            raise

    def mains(self) -> dict[str, str | None]:
        """{config type: main revision id, or None} for every type."""
        out: dict[str, str | None] = {}
        for config_type in self.types():
            try:
                out[config_type.name] = self.main(config_type.name).revision.revision_id
            except QschedError as error:
                if error.reason != "MAIN_NOT_SET":
                    raise
                out[config_type.name] = None
        return out

    def pull(self, config_type: str, path: str | os.PathLike[str] | None = None) -> bytes:
        """The content of the main revision of a type; also written to `path` when given."""
        content = self.main(config_type, include_content=True).revision.content or b""
        if path is not None:
            Path(path).write_bytes(content)
        return content

    def show(self, revision_id: str) -> Revision:
        """One revision with its content."""
        response = self.calls("GetRevision", pb.GetRevisionRequest(revision_id=revision_id))
        return _revision(response.revision, with_content=True)

    def list(self, config_type: str | None = None, limit: int = 50) -> builtins.list[Revision]:
        """Up to `limit` revisions, newest first, of one type or all."""
        revisions = collect(
            lambda token, size: self.calls(
                "ListRevisions",
                pb.ListRevisionsRequest(config_type=config_type or "", page_size=size, page_token=token),
            ),
            lambda page: page.revisions,
            limit,
        )
        return [_revision(r) for r in revisions]

    def diff(self, a: str, b: str) -> str:
        """Unified diff from revision `a` to revision `b` ("" when the contents are identical)."""
        response = self.calls("DiffRevisions", pb.DiffRevisionsRequest(from_revision_id=a, to_revision_id=b))
        return response.unified_diff

    def history(self, config_type: str | None = None, limit: int = 50) -> builtins.list[MainChange]:
        """Changes of main (who, when, from, to), newest first, of one type or all."""
        changes = collect(
            lambda token, size: self.calls(
                "ListMainHistory",
                pb.ListMainHistoryRequest(config_type=config_type or "", page_size=size, page_token=token),
            ),
            lambda page: page.changes,
            limit,
        )
        return [_change(c) for c in changes]

    def types(self) -> builtins.list[ConfigType]:
        """Every registered config type, by name."""
        types = collect(
            lambda token, size: self.calls(
                "ListConfigTypes", pb.ListConfigTypesRequest(page_size=size, page_token=token)
            ),
            lambda page: page.config_types,
        )
        return [_type(t) for t in types]

    def _type_of(self, revision_id: str) -> str:
        """The config type of a revision, from the abbreviation in its id."""
        parts = revision_id.split("-")
        abbreviation = parts[1] if len(parts) == 4 and parts[0] == "CFG" else ""
        for config_type in self.types():
            if config_type.abbreviation == abbreviation:
                return config_type.name
        return self.show(revision_id).config_type  # lets the service explain what is wrong
