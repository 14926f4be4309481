"""The synchronous SDK (qsched.configs.ConfigClient) and `qsched config ...` against a
real service: in a background thread's event loop, and once as the process `qsched
serve configs` runs (on PostgreSQL, through --configs-database-url)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from qsched.cli.main import main
from qsched.configs import ConfigClient, Revision
from qsched.errors import QschedError

HW = "hardware_config"
SEED_YAML = b"device:\n  readout:\n    gain: 100\n    frequency: 7000.0\n"
CALIBRATED_YAML = b"device:\n  readout:\n    gain: 120\n    frequency: 7000.0\n"


def cli(*args: str) -> int:
    return main(["config", *args])


# -- SDK ---------------------------------------------------------------------------------------------------
def test_the_seed_push_pull_and_set_main_examples(service_thread: str, tmp_path: Path) -> None:
    source = tmp_path / "hardware_config_202505.yml"
    source.write_bytes(SEED_YAML)
    with ConfigClient(service_thread, user="alice") as cfg:
        # PUSH
        rev = cfg.push(source, HW)
        assert isinstance(rev, Revision) and rev.revision_id.startswith("CFG-HW-")
        assert (rev.original_filename, rev.content_type, rev.creator, rev.content) == (
            "hardware_config_202505.yml",
            "yaml",
            "alice",
            None,
        )
        # PULL
        out = tmp_path / "pulled.yml"
        assert cfg.pull(HW, path=out) == SEED_YAML == out.read_bytes()
        assert cfg.mains() == {
            "floquet_storage_swap": None,
            HW: rev.revision_id,
            "man1_storage_swap": None,
            "multiphoton_config": None,
        }
        # A new revision, then SET MAIN back to the first (the etag is read for us). The
        # creator is the authenticated caller (alice); the name the push gives is kept as a note.
        newer = cfg.push(CALIBRATED_YAML, HW, "bob", filename="hw.yml")
        assert newer.creator == "alice (bob)"
        assert [r.revision_id for r in cfg.list(HW)] == [newer.revision_id, rev.revision_id]
        change = cfg.set_main(rev.revision_id)
        assert (change.from_revision_id, change.to_revision_id, change.changed_by) == (
            newer.revision_id,
            rev.revision_id,
            "alice",
        )
        assert cfg.main(HW).revision.revision_id == rev.revision_id
        assert [(c.to_revision_id, c.changed_by) for c in cfg.history(HW)] == [
            (rev.revision_id, "alice"),
            (newer.revision_id, "alice (bob)"),
            (rev.revision_id, "alice"),
        ]


def test_a_calibration_guarded_by_its_etag(service_thread: str) -> None:
    with ConfigClient(service_thread, user="alice") as alice, ConfigClient(service_thread, user="bob") as bob:
        base = alice.push(SEED_YAML, HW, filename="hw.yml")
        alice_view = alice.main(HW, include_content=True)
        bob_view = bob.main(HW, include_content=True)
        assert alice_view.revision.content == SEED_YAML and alice_view.etag == bob_view.etag

        bob.push(bob_view.revision.content + b"# bob\n", HW, filename="hw.yml", etag=bob_view.etag)
        with pytest.raises(QschedError) as info:
            alice.push(CALIBRATED_YAML, HW, filename="hw.yml", etag=alice_view.etag)
        assert (info.value.code, info.value.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
        with pytest.raises(QschedError) as info:
            alice.set_main(base.revision_id, etag=alice_view.etag)
        assert info.value.reason == "ETAG_MISMATCH"
        assert alice.main(HW).revision.content is None
        assert bob.pull(HW).endswith(b"# bob\n")  # bob's calibration was not overwritten


def test_sdk_show_diff_types_and_errors(service_thread: str) -> None:
    with ConfigClient(service_thread, user="alice") as cfg:
        a = cfg.upload(SEED_YAML, HW, filename="a.yml")
        b = cfg.upload(CALIBRATED_YAML, HW, filename="b.yml")
        assert cfg.upload(SEED_YAML, HW, filename="again.yml") == a
        shown = cfg.show(a.revision_id)
        assert shown.content == SEED_YAML and shown.sha256 == a.sha256
        assert "-    gain: 100\n+    gain: 120\n" in cfg.diff(a.revision_id, b.revision_id)
        assert cfg.diff(a.revision_id, a.revision_id) == ""
        flux = cfg.register_type("flux_bias", "FB", "Flux bias table")
        assert flux in cfg.types() and len(cfg.types()) == 5
        csv = cfg.push(b"q,bias\n0,0.1\n", "flux_bias", filename="flux.csv")
        assert csv.revision_id.startswith("CFG-FB-") and csv.content_type == "csv"
        with pytest.raises(QschedError) as info:
            cfg.show("CFG-HW-20200101-00001")
        assert (info.value.code, info.value.reason) == (grpc.StatusCode.NOT_FOUND, "REVISION_NOT_FOUND")
        with pytest.raises(QschedError) as info:
            cfg.pull("multiphoton_config")
        assert info.value.reason == "MAIN_NOT_SET"
        with pytest.raises(QschedError) as info:
            cfg.push(b"x" * (4 * 1024 * 1024 + 1), HW)
        assert (info.value.code, info.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CONTENT_TOO_LARGE")


def test_the_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, service_thread: str) -> None:
    monkeypatch.setenv("QSCHED_CONFIGS_ADDRESS", service_thread)
    with ConfigClient() as cfg:
        assert cfg.address == service_thread and len(cfg.types()) == 4
    monkeypatch.delenv("QSCHED_CONFIGS_ADDRESS")
    with ConfigClient() as cfg:
        assert cfg.address == "127.0.0.1:50052"


# -- CLI ---------------------------------------------------------------------------------------------------
def test_cli_push_pull_list_show_set_main_diff_history(
    service_thread: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    addr = ["--address", service_thread]
    first_file = tmp_path / "hardware_config_202505.yml"
    first_file.write_bytes(SEED_YAML)
    second_file = tmp_path / "hardware_config_202506.yml"
    second_file.write_bytes(CALIBRATED_YAML)

    assert cli("push", str(first_file), "--type", HW, "--creator", "alice", *addr) == 0
    out = capsys.readouterr().out
    first = out.split()[0]
    assert first.startswith("CFG-HW-") and out.startswith(f"{first} is main of {HW} (")
    assert cli("push", str(second_file), "--type", HW, "--creator", "bob", *addr) == 0
    second = capsys.readouterr().out.split()[0]

    pulled = tmp_path / "pulled.yml"
    assert cli("pull", "--type", HW, "-o", str(pulled), *addr) == 0
    assert pulled.read_bytes() == CALIBRATED_YAML
    assert f"{second} (main of {HW}, etag " in capsys.readouterr().out

    assert cli("list", "--type", HW, *addr) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["REVISION", "TYPE"]
    assert (
        lines[1].startswith(f"*{second}")
        and "alice (bob)" in lines[1]  # the caller, with the creator the push named as a note
        and "hardware_config_202506.yml" in lines[1]
    )
    assert lines[2].startswith(first) and "alice" in lines[2]

    assert cli("show", first, "--content", *addr) == 0
    out = capsys.readouterr().out
    assert f"revision   {first}\n" in out and "file       hardware_config_202505.yml\n" in out
    assert out.endswith(SEED_YAML.decode())

    assert cli("set-main", first, "--by", "carol", *addr) == 0
    assert capsys.readouterr().out.strip() == f"{first} is main of {HW} (was {second})"

    assert cli("diff", first, second, *addr) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"--- {first} (hardware_config_202505.yml)\n+++ {second}")
    assert "-    gain: 100\n+    gain: 120\n" in out

    assert cli("history", "--type", HW, *addr) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["WHEN", "(UTC)", "TYPE", "FROM", "TO", "BY"]
    assert [row[3:] for row in rows[1:]] == [  # the caller (alice), other names kept as notes
        [second, first, "alice", "(carol)"],
        [first, second, "alice", "(bob)"],
        ["-", first, "alice"],
    ]

    assert cli("types", *addr) == 0
    out = capsys.readouterr().out
    assert "hardware_config       HW    yes" in out and "man1_storage_swap     M1    no" in out

    assert cli("main", *addr) == 0
    out = capsys.readouterr().out
    assert f"{HW}  " in out and first in out and "multiphoton_config    -" in out


def test_cli_refusals_exit_2_with_the_reason(service_thread: str, tmp_path: Path, capsys) -> None:
    addr = ["--address", service_thread]
    config = tmp_path / "hw.yml"
    config.write_bytes(SEED_YAML)
    assert cli("push", str(config), "--type", HW, *addr) == 0
    capsys.readouterr()
    other = tmp_path / "hw2.yml"
    other.write_bytes(CALIBRATED_YAML)
    assert cli("push", str(other), "--type", HW, "--etag", "stale", *addr) == 2
    assert "ABORTED ETAG_MISMATCH" in capsys.readouterr().err
    broken = tmp_path / "broken.yml"
    broken.write_bytes(b"a: [1\n")
    assert cli("push", str(broken), "--type", HW, *addr) == 2
    assert "INVALID_ARGUMENT INVALID_CONTENT" in capsys.readouterr().err
    assert cli("show", "CFG-XX-1", *addr) == 2
    assert "INVALID_REVISION_ID" in capsys.readouterr().err
    assert cli("push", str(tmp_path / "missing.yml"), "--type", HW, *addr) == 2
    assert "missing.yml" in capsys.readouterr().err
    assert cli("list", "--address", "127.0.0.1:1", "--timeout", "2") == 2
    assert "cannot reach the config service at 127.0.0.1:1" in capsys.readouterr().err


def test_cli_pull_to_stdout_is_the_raw_content(
    service_thread: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    with ConfigClient(service_thread) as cfg:
        cfg.push(SEED_YAML, HW, filename="hw.yml")
    assert cli("pull", "--type", HW, "--address", service_thread) == 0
    assert capsysbinary.readouterr().out == SEED_YAML


# -- as `qsched serve configs` runs it ---------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.slow
def test_the_served_process_on_postgresql(
    tmp_path: Path, configs_postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        sys.executable,
        "-m",
        "qsched_ops.serve",
        "configs",
        "--configs-address",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path / "data"),
        "--configs-database-url",
        configs_postgres_url,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "qsched configs serving on HOST:PORT" once it listens
        assert line.startswith("qsched configs serving on "), line
        address = line.split()[-1]
        config = tmp_path / "hw.yml"
        config.write_bytes(SEED_YAML)
        assert cli("push", str(config), "--type", HW, "--address", address) == 0
        revision = capsys.readouterr().out.split()[0]
        with ConfigClient(address) as cfg:
            assert cfg.main(HW).revision.revision_id == revision
        # On PostgreSQL, not in the data directory.
        assert not (tmp_path / "data" / "configs.db").exists()
        import psycopg

        with psycopg.connect(configs_postgres_url) as conn:
            assert conn.execute("SELECT revision_id FROM config_revisions").fetchall() == [(revision,)]
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == 0
