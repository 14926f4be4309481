"""The metriq-gym job and suite verbs against a JobService double in front of a real gateway
(local simulators), so they are tested whatever state the scheduler's provider path is in."""

from __future__ import annotations

import json

from tests.sdk.cli.conftest import job_id_of, wait_done


def test_dispatch_poll_json_include_raw_and_replay(qsched, fake_scheduler, config_files, tmp_path):
    service, address = fake_scheduler
    code, out, err = qsched("job", "dispatch", str(config_files["wit"]), "-p", "local", "-d", "aer_simulator")
    assert code == 0, err
    job_id = job_id_of(out)
    assert "WIT dispatched to local:aer_simulator" in out
    wait_done(address, job_id)

    before = service.fetches
    code, out, err = qsched("job", "poll", job_id, "--json", "result.json", "--include-raw")
    assert code == 0, err
    assert "WIT on local/aer_simulator" in out and "expectation_value" in out and "score" in out
    assert service.fetches == before + 1
    record = json.loads((tmp_path / "result.json").read_text())
    assert set(record) >= {
        "app_version", "timestamp", "suite_id", "job_type", "results", "runtime_seconds", "platform",
        "circuit_metadata",
    }  # fmt: skip
    assert record["job_type"] == "WIT" and record["suite_id"] is None
    assert record["platform"]["provider"] == "local" and record["platform"]["device"] == "aer_simulator"
    score = record["results"]["score"]
    assert set(score) == {"value", "uncertainty"} and score["value"] > 0.9
    assert "params" not in record

    debug = json.loads((tmp_path / "result_debug.json").read_text())
    assert set(debug) == {"job_id", "job_type", "params", "job_data", "raw_results"}
    assert debug["job_id"] == job_id and debug["job_type"] == "WIT" and debug["params"]["shots"] == 500
    raw = debug["raw_results"][0]
    assert raw["shots"] == 500 and sum(raw["measurement_counts"].values()) == 500
    assert raw["num_measured_qubits"] == 1

    # cached now: no second gateway fetch; --no-cache fetches again
    code, out, _ = qsched("job", "poll", job_id)
    assert code == 0 and "[Cached result data]" in out and service.fetches == before + 1
    code, out, _ = qsched("job", "poll", "latest", "--no-cache")
    assert code == 0 and "[Cached result data]" not in out and service.fetches == before + 2

    # replay re-scores the debug file offline to the same numbers
    code, out, err = qsched("job", "replay", "result_debug.json", "--json", "replayed.json")
    assert code == 0, err
    replayed = json.loads((tmp_path / "replayed.json").read_text())
    assert replayed["results"] == record["results"]
    assert (
        replayed["circuit_metadata"]["input_two_qubit_gate_counts"]
        == (record["circuit_metadata"]["input_two_qubit_gate_counts"])
    )


def test_estimate_table(qsched, config_files):
    code, out, err = qsched("job", "estimate", str(config_files["wit"]), "-p", "local", "-d", "aer_simulator")
    assert code == 0, err
    lines = {line.split("  ")[0]: line.split()[-1] for line in out.splitlines() if "  " in line}
    assert "Estimate for WIT on local:aer_simulator" in out
    # metriq-gym's WIT numbers: 1 circuit, 7 qubits, 57 1q, 24 2q, 1 measurement
    assert lines["Jobs"] == "1" and lines["Circuits"] == "1" and lines["Max qubits"] == "7"
    assert lines["Total 1q gates"] == "57" and lines["Total 2q gates"] == "24"
    assert lines["Total measurements"] == "1" and lines["Total shots"] == "500"
    assert "DEPTH" in out and "HQC" in out and "Cost" in out


def test_errors_are_one_line_with_nonzero_exit(qsched, config_files, tmp_path):
    wit = str(config_files["wit"])
    code, _out, err = qsched("job", "dispatch", wit, "-p", "nosuch", "-d", "x")
    assert code == 2 and err.count("\n") == 1 and "UNKNOWN_PROVIDER" in err and "Traceback" not in err
    code, _, err = qsched("job", "dispatch", wit, "-p", "local", "-d", "fake_nowhere")
    assert code == 2 and err.count("\n") == 1 and "UNKNOWN_DEVICE" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"benchmark_name": "WIT", "shotz": 5}))
    code, _, err = qsched("job", "dispatch", str(bad), "-p", "local", "-d", "aer_simulator")
    assert code == 2 and err.count("\n") == 1 and "shotz" in err
    code, _, err = qsched(
        "job", "estimate", str(tmp_path / "missing.json"), "-p", "local", "-d", "aer_simulator"
    )
    assert code == 2 and "not found" in err and err.count("\n") == 1
    bad.write_text("{not json")
    code, _, err = qsched("job", "dispatch", str(bad), "-p", "local", "-d", "aer_simulator")
    assert code == 2 and "not valid JSON" in err
    code, _, err = qsched("job", "dispatch", wit, "-d", "aer_simulator")
    assert code == 2 and "--provider" in err
    code, _, err = qsched("job", "poll", "JOB-20990101-00001")
    assert code == 2 and "JOB_NOT_FOUND" in err
    code, _, err = qsched("job", "poll")  # no JOB_ID and no terminal: no prompt
    assert code == 2 and "no JOB_ID given" in err


def test_view_table_detail_and_delete(qsched, fake_scheduler, config_files):
    _, address = fake_scheduler
    code, out, _ = qsched("job", "dispatch", str(config_files["qml"]), "-p", "local", "-d", "aer_simulator")
    job_id = job_id_of(out)
    wait_done(address, job_id)
    code, out, _ = qsched("job", "view")
    assert code == 0 and job_id in out and "QML Kernel" in out and "benchmark" in out and "JOB" in out
    code, out, _ = qsched("job", "view", job_id)
    assert code == 0 and "benchmark  QML Kernel" in out and "task       local/" in out
    assert '"num_qubits": 3' in out
    code, out, _ = qsched("job", "delete", job_id)
    assert code == 0 and f"{job_id} deleted" in out
    code, out, err = qsched("job", "view", job_id)
    assert code == 2 and "JOB_NOT_FOUND" in err


def test_suite_dispatch_poll_view(qsched, fake_scheduler, config_files, tmp_path):
    _, address = fake_scheduler
    code, out, err = qsched(
        "suite", "dispatch", str(config_files["suite"]), "-p", "local", "-d", "aer_simulator"
    )
    assert code == 0, err
    job_id = job_id_of(out)
    assert "suite small_suite (2 benchmarks)" in out
    wait_done(address, job_id)
    code, out, err = qsched("suite", "poll", job_id, "--json", "suite.json", "--include-raw")
    assert code == 0, err
    records = json.loads((tmp_path / "suite.json").read_text())
    assert isinstance(records, list) and [r["job_type"] for r in records] == ["WIT", "QML Kernel"]
    assert len({r["suite_id"] for r in records}) == 1 and records[0]["suite"]["name"] == "small_suite"
    code, out, err = qsched("job", "replay", "suite_debug.json", "--json", "replayed.json")
    assert code == 0, err
    replayed = json.loads((tmp_path / "replayed.json").read_text())
    assert [r["results"] for r in replayed] == [r["results"] for r in records]
    code, out, _ = qsched("suite", "view")
    assert code == 0 and job_id in out and "suite small_suite" in out
    code, out, err = qsched("suite", "poll", "latest")
    assert code == 0 and "[Cached result data]" in out
    # a plain benchmark job is not a suite
    code, out, _ = qsched("job", "dispatch", str(config_files["wit"]), "-p", "local", "-d", "aer_simulator")
    wait_done(address, job_id_of(out))
    code, _, err = qsched("suite", "poll", job_id_of(out))
    assert code == 2 and "not a suite job" in err


def test_suite_full_warning_needs_all_or_components(qsched, fake_scheduler, tmp_path, config_files):
    suite = json.loads(config_files["suite"].read_text())
    suite["full_suite_warning"] = "this suite runs many circuits"
    path = tmp_path / "full.json"
    path.write_text(json.dumps(suite))
    code, _, err = qsched("suite", "dispatch", str(path), "-p", "local", "-d", "aer_simulator")
    assert code == 2 and "--all" in err
    code, out, err = qsched("suite", "dispatch", str(path), "-p", "local", "-d", "aer_simulator", "-c", "wit")
    assert code == 0 and "(1 benchmark)" in out, err
    wait_done(fake_scheduler[1], job_id_of(out))


def test_replay_without_the_scoring_code_says_what_to_install(qsched, tmp_path, monkeypatch):
    import sys

    debug = tmp_path / "x_debug.json"
    debug.write_text(json.dumps({"job_type": "WIT", "params": {"benchmark_name": "WIT"}, "raw_results": []}))
    monkeypatch.setitem(sys.modules, "qsched_benchmarks", None)
    code, _, err = qsched("job", "replay", str(debug))
    assert code == 2 and "pip install 'qsched[local]'" in err and err.count("\n") == 1
