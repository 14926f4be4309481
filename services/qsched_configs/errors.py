"""Errors of the config-versioning service. Each names a canonical status code and a
stable UPPER_SNAKE reason; the servicer sends them as google.rpc.Status with an
ErrorInfo whose domain is "qsched.configs.v1". Dynamic values of the message are
repeated in the ErrorInfo metadata.

| code                | reason                   | when                                                    |
| ------------------- | ------------------------ | ------------------------------------------------------- |
| INVALID_ARGUMENT    | INVALID_CONFIG_TYPE_NAME | a type name empty, not lower_snake, over 64 characters  |
| INVALID_ARGUMENT    | INVALID_ABBREVIATION     | RegisterConfigType: not two of A-Z 0-9                  |
| INVALID_ARGUMENT    | INVALID_DESCRIPTION      | RegisterConfigType: description over 1024 characters    |
| INVALID_ARGUMENT    | INVALID_REVISION_ID      | not CFG-<ABBR>-YYYYMMDD-NNNNN                           |
| INVALID_ARGUMENT    | EMPTY_CONTENT            | content of 0 bytes                                      |
| INVALID_ARGUMENT    | CONTENT_TOO_LARGE        | content over MAX_CONTENT_BYTES (4 MiB)                  |
| INVALID_ARGUMENT    | INVALID_CONTENT          | YAML/JSON that does not parse; text that is not UTF-8   |
| INVALID_ARGUMENT    | INVALID_CONTENT_TYPE     | a ContentType value this server does not know           |
| INVALID_ARGUMENT    | INVALID_FILENAME         | original_filename over 255 chars or with control chars  |
| INVALID_ARGUMENT    | MISSING_USER             | creator / changed_by empty (they are the audit trail)   |
| INVALID_ARGUMENT    | INVALID_USER             | creator / changed_by over 128 chars or not printable    |
| INVALID_ARGUMENT    | INVALID_JOB_ID           | PinConfigs: job_id empty or over 64 characters          |
| INVALID_ARGUMENT    | CONFLICTING_PIN          | PinConfigs: a type in both revision_ids and overrides   |
| INVALID_ARGUMENT    | INVALID_PAGE_SIZE        | negative page_size                                      |
| INVALID_ARGUMENT    | INVALID_PAGE_TOKEN       | a page_token this server did not issue                  |
| INVALID_ARGUMENT    | PAGE_TOKEN_MISMATCH      | a page_token reused with other filters                  |
| INVALID_ARGUMENT    | INVALID_CHANGE_ID        | WatchMainRevisions: negative after_change_id            |
| INVALID_ARGUMENT    | INVALID_HEARTBEAT_INTERVAL | WatchMainRevisions: not 0.1 s to 60 s                 |
| NOT_FOUND           | CONFIG_TYPE_NOT_FOUND    | the type is not registered                              |
| NOT_FOUND           | REVISION_NOT_FOUND       | no revision has that id                                 |
| NOT_FOUND           | MAIN_NOT_SET             | GetMain: the type has no main revision yet              |
| FAILED_PRECONDITION | REVISION_TYPE_MISMATCH   | SetMain / PinConfigs: the revision is of another type   |
| FAILED_PRECONDITION | NO_MAIN_REVISION         | PinConfigs: a type to pin from main has no main         |
| FAILED_PRECONDITION | CONTENT_NOT_TEXT         | DiffRevisions: a content is not UTF-8 text              |
| FAILED_PRECONDITION | CHANGE_ID_AHEAD          | WatchMainRevisions: after_change_id beyond the history  |
| ABORTED             | ETAG_MISMATCH            | SetMain / PushToMain: the etag is not the current one   |
|                     |                          | (also: an empty etag while the type has a main)         |
| ALREADY_EXISTS      | CONFIG_TYPE_EXISTS       | RegisterConfigType: name taken by another definition    |
| ALREADY_EXISTS      | ABBREVIATION_IN_USE      | RegisterConfigType: another type uses the abbreviation  |
"""

from __future__ import annotations

from qsched_core.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

__all__ = ["DOMAIN", "Aborted", "AlreadyExists", "FailedPrecondition", "InvalidArgument", "NotFound"]

DOMAIN = "qsched.configs.v1"


def type_not_found(config_type: str) -> NotFound:
    return NotFound(
        "CONFIG_TYPE_NOT_FOUND",
        f"config type {config_type!r} is not registered (see ListConfigTypes)",
        config_type=config_type,
    )


def revision_not_found(revision_id: str) -> NotFound:
    return NotFound("REVISION_NOT_FOUND", f"revision {revision_id} not found", revision_id=revision_id)


def type_mismatch(revision_id: str, revision_type: str, config_type: str) -> FailedPrecondition:
    return FailedPrecondition(
        "REVISION_TYPE_MISMATCH",
        f"revision {revision_id} is a {revision_type} revision, not {config_type}",
        revision_id=revision_id,
        revision_type=revision_type,
        config_type=config_type,
    )


def etag_mismatch(config_type: str, etag: str, current_revision_id: str) -> Aborted:
    if not etag:
        message = (
            f"main of {config_type} is {current_revision_id} already; "
            "pass the etag from GetMain to replace it"
        )
    else:
        message = (
            f"main of {config_type} changed since etag {etag} was read "
            f"(it is {current_revision_id or 'unset'} now); read it again with GetMain "
            "and retry if you still want to replace it"
        )
    return Aborted(
        "ETAG_MISMATCH", message, config_type=config_type, etag=etag, current_revision_id=current_revision_id
    )
