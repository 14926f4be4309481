"""Pure pieces of the config service: names and ids, content types and validation,
diffs, page tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qsched_configs import content, ids
from qsched_configs.domain import MAX_CONTENT_BYTES, ContentType
from qsched_configs.errors import FailedPrecondition, InvalidArgument
from qsched_core.pagination import PageTokens, page_key


# -- names and ids -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hardware_config", "man1_storage_swap", "x", "a1_b2", "t" * 64])
def test_type_names_are_lower_snake(name: str) -> None:
    assert ids.is_type_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "hardware_config\n",
        "Hardware",
        "hardware-config",
        "_x",
        "x_",
        "a__b",
        "1abc",
        "a b",
        "t" * 65,
        "hé",
    ],
)
def test_bad_type_names(name: str) -> None:
    assert not ids.is_type_name(name)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("HW", True),
        ("M1", True),
        ("42", True),
        ("hw", False),
        ("H", False),
        ("HWX", False),
        ("H-", False),
        ("", False),
    ],
)
def test_abbreviations_are_two_upper_case_alnum(text: str, ok: bool) -> None:
    assert ids.is_abbreviation(text) is ok


def test_revision_ids_use_the_utc_day_and_a_five_digit_counter() -> None:
    prefix = ids.counter_prefix("HW", datetime(2026, 1, 14, 23, 59, tzinfo=UTC))
    assert prefix == "CFG-HW-20260114"
    assert ids.format_revision_id(prefix, 7) == "CFG-HW-20260114-00007"
    assert ids.format_revision_id(prefix, 123456) == "CFG-HW-20260114-123456"
    assert ids.parse_revision_id("CFG-M1-20260114-00042") == ("M1", "20260114", 42)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "CFG-HW-20260114",
        "CFG-HW-20260114-0001",
        "CFG-hw-20260114-00001",
        "CFG-HWX-20260114-00001",
        "CFG-HW-20261314-00001",  # month 13
        "CFG-HW-20260114-00000",
        "JOB-20260114-00001",
        " CFG-HW-20260114-00001",
        "CFG-HW-20260114-00001\n",
    ],
)
def test_malformed_revision_ids(text: str) -> None:
    assert not ids.is_revision_id(text)


# -- content types and validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("hardware_config_202505.yml", ContentType.YAML),
        ("HW.YAML", ContentType.YAML),
        ("a/b/c.json", ContentType.JSON),
        ("C:\\configs\\man1_storage_swap.CSV", ContentType.CSV),
        ("table.csv.gz", ContentType.BINARY),
        ("noext", ContentType.BINARY),
        ("", ContentType.BINARY),
        (".yml", ContentType.BINARY),  # a dot file, not an extension
    ],
)
def test_content_type_is_guessed_from_the_extension(filename: str, expected: ContentType) -> None:
    assert content.guess_content_type(filename) is expected


def test_yaml_and_json_must_parse() -> None:
    content.check_content(b"device:\n  qubit: {f_ge: [4000.1]}\n", ContentType.YAML)
    content.check_content(b'{"a": [1, 2]}', ContentType.JSON)
    content.check_content(b"a,b\n1,2\n", ContentType.CSV)
    content.check_content(b"\x00\xff\xfe", ContentType.BINARY)
    for blob, content_type in [
        (b"a: [1, 2\n", ContentType.YAML),
        (b"a: b: c\n", ContentType.YAML),
        (b"{'a': 1}", ContentType.JSON),
        (b"\xff\xfe", ContentType.CSV),
        (b"\xff: 1", ContentType.YAML),
    ]:
        with pytest.raises(InvalidArgument) as info:
            content.check_content(blob, content_type)
        assert info.value.reason == "INVALID_CONTENT"
        assert info.value.metadata["content_type"] == content_type.value


def test_size_limits() -> None:
    content.check_content(b"x" * MAX_CONTENT_BYTES, ContentType.BINARY)
    with pytest.raises(InvalidArgument) as info:
        content.check_content(b"x" * (MAX_CONTENT_BYTES + 1), ContentType.BINARY)
    assert info.value.reason == "CONTENT_TOO_LARGE"
    assert info.value.metadata == {
        "size_bytes": str(MAX_CONTENT_BYTES + 1),
        "limit_bytes": str(MAX_CONTENT_BYTES),
    }
    with pytest.raises(InvalidArgument) as info:
        content.check_content(b"", ContentType.YAML)
    assert info.value.reason == "EMPTY_CONTENT"


def test_unified_diff() -> None:
    old = b"a: 1\nb: 2\nc: 3\n"
    new = b"a: 1\nb: 20\nc: 3\n"
    assert content.unified_diff(old, new, "CFG-HW-20260114-00001 (hw.yml)", "CFG-HW-20260114-00002") == (
        "--- CFG-HW-20260114-00001 (hw.yml)\n"
        "+++ CFG-HW-20260114-00002\n"
        "@@ -1,3 +1,3 @@\n"
        " a: 1\n"
        "-b: 2\n"
        "+b: 20\n"
        " c: 3\n"
    )


def test_diff_marks_a_missing_final_newline() -> None:
    text = content.unified_diff(b"a\nb", b"a\nb\n", "CFG-HW-20260114-00001", "CFG-HW-20260114-00002")
    assert text.endswith("-b\n\\ No newline at end of file\n+b\n")


def test_binary_content_cannot_be_diffed() -> None:
    with pytest.raises(FailedPrecondition) as info:
        content.unified_diff(b"a\n", b"\xff\xfe", "CFG-HW-20260114-00001", "CFG-HW-20260114-00002 (x.bin)")
    assert info.value.reason == "CONTENT_NOT_TEXT"
    assert info.value.metadata == {"revision_id": "CFG-HW-20260114-00002"}


# -- page tokens -------------------------------------------------------------------------------------------
def test_page_tokens_round_trip_and_refuse_tampering_and_other_filters() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode(["revisions", "hardware_config"], (42,))
    assert tokens.decode(token, ["revisions", "hardware_config"]) == (42,)
    assert PageTokens(b"k" * 32).decode(tokens.encode(["types"], ("hw",)), ["types"]) == ("hw",)
    with pytest.raises(InvalidArgument) as info:
        tokens.decode(token, ["revisions", ""])
    assert info.value.reason == "PAGE_TOKEN_MISMATCH"
    for bad in [token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "garbage!", "", "x" * 40]:
        with pytest.raises(InvalidArgument) as info:
            tokens.decode(bad, ["revisions", "hardware_config"])
        assert info.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgument):
        PageTokens(b"other-key").decode(token, ["revisions", "hardware_config"])


def test_the_page_key_is_created_once_and_kept(tmp_path) -> None:
    path = tmp_path / "key"
    first = page_key(path)
    assert len(first) == 32 and page_key(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]
