"""End to end: the CLI against the REAL scheduler, which sends provider jobs to a real gateway (local
simulators). These depend on the scheduler's provider path (SubmitJob to `<provider>:<device>`,
EstimateJob, GetJobResult with its cache, cancel of provider tasks)."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.sdk.cli.conftest import job_id_of, make_runner, wait_done


@pytest.fixture(scope="module")
def real_scheduler(services, gateway_address, tmp_path_factory) -> str:
    from tests.support.stack import running_service

    service = running_service(
        "scheduler",
        tmp_path_factory.mktemp("scheduler"),
        peers={"gateway": gateway_address},
        lab_devices={},
        pin_configs=False,
    )
    return services.enter(service)


@pytest.fixture
def real(real_scheduler, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("QSCHED_USER", "alice")
    monkeypatch.chdir(tmp_path)
    return make_runner(real_scheduler, capsys)


def test_job_verbs_end_to_end(real, real_scheduler, config_files, tmp_path):
    code, out, err = real("job", "estimate", str(config_files["wit"]), "-p", "local", "-d", "aer_simulator")
    assert code == 0, err
    assert "Total 2q gates" in out and "24" in out
    code, out, err = real("job", "dispatch", str(config_files["wit"]), "-p", "local", "-d", "aer_simulator")
    assert code == 0, err
    job_id = job_id_of(out)
    wait_done(real_scheduler, job_id)
    code, out, err = real("job", "poll", "latest", "--json", "result.json", "--include-raw")
    assert code == 0, err
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["job_type"] == "WIT" and record["results"]["score"]["value"] > 0.9
    code, out, err = real("job", "poll", job_id)
    assert code == 0 and "[Cached result data]" in out, err
    code, out, err = real("job", "poll", job_id, "--no-cache")
    assert code == 0 and "[Cached result data]" not in out, err
    code, out, err = real("job", "replay", "result_debug.json", "--json", "replayed.json")
    assert code == 0, err
    assert json.loads((tmp_path / "replayed.json").read_text())["results"] == record["results"]
    code, out, err = real("job", "view")
    assert code == 0 and job_id in out and "WIT" in out
    code, out, err = real("job", "view", job_id)
    assert code == 0 and "benchmark  WIT" in out
    code, out, err = real("job", "delete", job_id)
    assert code == 0 and "deleted" in out, err


def test_suite_and_errors_end_to_end(real, real_scheduler, config_files, tmp_path):
    code, out, err = real(
        "suite", "dispatch", str(config_files["suite"]), "-p", "local", "-d", "aer_simulator"
    )
    assert code == 0, err
    job_id = job_id_of(out)
    wait_done(real_scheduler, job_id)
    code, out, err = real("suite", "poll", job_id, "--json", "suite.json")
    assert code == 0, err
    records = json.loads((tmp_path / "suite.json").read_text())
    assert [r["job_type"] for r in records] == ["WIT", "QML Kernel"]
    code, _, err = real("job", "dispatch", str(config_files["wit"]), "-p", "nosuch", "-d", "x")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    code, _, err = real("job", "dispatch", str(config_files["wit"]), "-p", "local", "-d", "fake_nowhere")
    assert code == 2 and err.count("\n") == 1
    with contextlib.suppress(Exception):
        real("suite", "delete", job_id)


def test_dispatch_refuses_a_bad_benchmark_config_and_creates_no_job(real, config_files, tmp_path):
    """The scheduler asks the gateway at submit: exit 2 naming the key, nothing queued."""
    _, before, _ = real("job", "view")
    bad = {
        "typo.json": ({"benchmark_name": "WIT", "num_qubit": 6}, "num_qubit"),
        "unknown.json": ({"benchmark_name": "WITT"}, "WITT"),
        "nan.json": ({"benchmark_name": "WIT", "shots": float("nan")}, "shots"),
        "negative.json": ({"benchmark_name": "WIT", "shots": -5}, "shots"),
        "huge.json": ({"benchmark_name": "WIT", "shots": 1_000_000_000}, "shots"),
        "suite.json": (
            {"name": "s", "benchmarks": [
                {"name": "fine", "config": {"benchmark_name": "WIT"}},
                {"name": "broken", "config": {"benchmark_name": "WIT", "shotz": 1}},
            ]},
            "'broken'",
        ),
    }  # fmt: skip
    for name, (config, named) in bad.items():
        (tmp_path / name).write_text(json.dumps(config))
        verb = "suite" if name == "suite.json" else "job"
        code, out, err = real(verb, "dispatch", str(tmp_path / name), "-p", "local", "-d", "aer_simulator")
        assert code == 2, (name, out, err)
        assert "INVALID_CONFIG" in err and named in err and err.count("\n") == 1, (name, err)
    _, after, _ = real("job", "view")
    assert after == before


def test_cli_rough_edges(real, real_scheduler, config_files):
    code, out, err = real("job", "dispatch", str(config_files["wit"]), "-p", "local", "-d", "aer_simulator")
    assert code == 0, err
    job_id = job_id_of(out)
    code, out, err = real("show", "latest")  # as `job poll latest` does
    assert code == 0 and job_id in out, err
    code, out, err = real("history", "--limit", "-1")
    assert code == 2 and "--limit must be at least 1" in err and "no jobs" not in out
    code, out, err = real("queue", "--limit", "0")
    assert code == 2 and "--limit" in err
    code, out, err = real("plot", job_id, "-o", "plot.png")
    assert code == 2 and "not a data file" in err and f"qsched job poll {job_id}" in err
    # An unknown device: a few close names and where to find the rest, not every device on one line.
    code, out, err = real("job", "dispatch", str(config_files["wit"]), "-p", "local", "-d", "aer_simulatr")
    assert code == 2 and "did you mean local:aer_simulator?" in err and "qsched devices" in err, err
    assert len(err) < 400, err
    wait_done(real_scheduler, job_id)


def test_queue_views_show_every_busy_device_and_flag_held_ones(real, real_scheduler, config_files):
    device = "local:fake_lima"
    code, out, err = real("device", "pause", device, "--reason", "maintenance")
    assert code == 0, err
    try:
        code, out, err = real("job", "dispatch", str(config_files["qml"]), "-p", "local", "-d", "fake_lima")
        assert code == 0, err
        job_id = job_id_of(out)
        # The plain view: the job waits for the operator, it does not start "now".
        code, out, err = real("queue", "--device", device)
        assert code == 0, err
        row = next(line for line in out.splitlines() if job_id in line)
        assert row.rstrip().endswith("held (paused)"), out
        assert f"{device} is held (paused: maintenance)" in out
        # The live view without --device: every device with work (not only the default one), flagged.
        code, out, err = real("queue", "--follow", "--count", "1")
        assert code == 0, err
        assert f"{device}: 0 running, 1 queued  [HELD, paused: maintenance" in out, out
        assert job_id in out
    finally:
        assert real("device", "resume", device)[0] == 0
    wait_done(real_scheduler, job_id)
