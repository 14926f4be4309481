"""What needs no service, or only a held job: start-up imports, file naming, unreachable services,
polling and deleting an active job."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from qsched import benchmarks
from tests.sdk.cli.conftest import WIT, job_id_of

HEAVY = ("numpy", "h5py", "qiskit", "sqlalchemy", "opentelemetry", "braket", "scipy")


@pytest.mark.parametrize(
    "statement",
    [
        "import qsched.cli.main as m; m.build_parser()",
        "import qsched.benchmarks, qsched.upload, qsched.cli.job_commands, qsched.cli.suite_commands",
    ],
)
def test_cli_start_up_imports_nothing_heavy(statement):
    code = (
        f"import sys; {statement}; print(sorted({{k.split('.')[0] for k in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_upload_names_follow_metriq_gym():
    assert benchmarks.path_component("Linear Ramp QAOA") == "linear_ramp_qaoa"
    assert benchmarks.path_component("ibm/Fez!") == "ibm_fez"
    assert benchmarks.default_upload_dir("0.8.1", "local", "fake_manila") == "qsched/v0.8/local/fake_manila"
    assert benchmarks.minor_series("unknown") == "vunknown"
    stamp = datetime(2026, 11, 21, 19, 34, 7, tzinfo=UTC)
    name = benchmarks.upload_filename(stamp, "BSEQ", {"b": 1, "a": [1, 2]})
    assert name == f"2026-11-21_19-34-07_bseq_{benchmarks.payload_hash({'a': [1, 2], 'b': 1})}.json"
    assert len(name.split("_")[-1]) == len("0c0eba11.json")
    assert benchmarks.debug_path("out/result.json").as_posix() == "out/result_debug.json"


def test_device_names():
    assert benchmarks.device_name("local", "aer_simulator") == "local:aer_simulator"
    assert benchmarks.device_name(None, "braket:local_sv") == "braket:local_sv"
    arn = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
    assert benchmarks.device_name("braket", arn) == f"braket:{arn}"
    with pytest.raises(ValueError, match="--device"):
        benchmarks.device_name("local", "")


def test_flatten_counts_orders_by_circuit_index():
    raw = [
        {"measurement_counts": [{"1": 2}, {"0": 3}], "circuit_indices": [2, 3]},
        {"measurement_counts": {"11": 1}, "circuit_indices": [0]},
        {"measurement_counts": {"01": 4}, "circuit_indices": [1]},
    ]
    assert benchmarks.flatten_counts(raw) == [{"11": 1}, {"01": 4}, {"1": 2}, {"0": 3}]


def test_unreachable_scheduler_is_one_line(capsys, tmp_path):
    from qsched.cli.main import main
    from tests.support.processes import free_port

    path = tmp_path / "wit.json"
    path.write_text(json.dumps(WIT))
    address = f"127.0.0.1:{free_port()}"
    for args in (["job", "dispatch", str(path), "-p", "local", "-d", "aer_simulator"], ["job", "view"]):
        code = main([*args, "--address", address, "--timeout", "2"])
        err = capsys.readouterr().err
        assert code == 2 and "cannot reach the scheduler" in err and err.count("\n") == 1


def test_poll_and_delete_an_active_job(qsched, fake_scheduler, config_files):
    service, _ = fake_scheduler
    service.hold = True
    try:
        code, out, _ = qsched(
            "job", "dispatch", str(config_files["wit"]), "-p", "local", "-d", "aer_simulator"
        )
        job_id = job_id_of(out)
        code, out, _ = qsched("job", "poll", job_id, "--json", "r.json")
        assert code == 0 and "is not yet completed. Current status: running" in out
        assert "- local/" in out and "Please try again later." in out
        code, out, err = qsched("job", "delete", "latest")
        assert code == 0, err
        assert f"{job_id}: cancelled" in out and "deleted" in out
        assert job_id not in service.jobs
    finally:
        service.hold = False
