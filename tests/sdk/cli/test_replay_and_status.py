"""`qsched job poll --include-raw` + `qsched job replay`: the replayed record equals the polled one for
every benchmark type (on a noisy fake backend, so the scores are not trivially 1), also for a device
replay could not rebuild and for Mirror Circuits without a seed; older debug files (without
job_data.parts) are rebuilt from their config. And `job poll` of an unfinished job with several
provider tasks shows each task's provider status and queue position (the real scheduler in front of
the gateway double)."""

from __future__ import annotations

import contextlib
import json

import pytest
import qiskit_experiments  # noqa: F401  (EPLG scoring: imported in the main thread, like qiskit)

from tests.sdk.cli.conftest import job_id_of, make_runner, wait_done
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(300)

DEVICE = ("-p", "local", "-d", "fake_lagos")  # 7 qubits, IBM noise
CONFIGS = {
    "wit": {"benchmark_name": "WIT", "num_qubits": 7, "shots": 300},
    "qml": {"benchmark_name": "QML Kernel", "num_qubits": 3, "shots": 300},
    "bv": {"benchmark_name": "Bernstein-Vazirani", "min_qubits": 2, "max_qubits": 3, "max_circuits": 2},
    "hs": {"benchmark_name": "Hidden Shift", "min_qubits": 2, "max_qubits": 4, "max_circuits": 2},
    "pe": {"benchmark_name": "Phase Estimation", "min_qubits": 3, "max_qubits": 4, "max_circuits": 2},
    "qft": {"benchmark_name": "Quantum Fourier Transform", "num_qubits": 3, "max_circuits": 2},
    "mirror": {"benchmark_name": "Mirror Circuits", "width": 4, "num_circuits": 3, "shots": 300},
    "clops": {"benchmark_name": "CLOPS", "num_qubits": 3, "num_layers": 3, "num_circuits": 2, "shots": 20},
    "bseq": {"benchmark_name": "BSEQ", "shots": 300},
    "qaoa": {
        "benchmark_name": "Linear Ramp QAOA",
        "graph_type": "NL",
        "num_qubits": 4,
        "qaoa_layers": [3, 4],
        "trials": 2,
        "num_random_trials": 10,
        "shots": 300,
    },
    "eplg": {
        "benchmark_name": "EPLG",
        "num_qubits_in_chain": 4,
        "lengths": [1, 4, 10],
        "num_samples": 2,
        "shots": 200,
    },
}
SAME = ("job_type", "suite_id", "results", "runtime_seconds", "platform", "circuit_metadata")


def _poll_and_replay(qsched, tmp_path, job_id: str, name: str, verb: str = "job") -> tuple[object, object]:
    code, _, err = qsched(verb, "poll", job_id, "--json", f"{name}.json", "--include-raw")
    assert code == 0, err
    code, _, err = qsched("job", "replay", f"{name}_debug.json", "--json", f"{name}_replayed.json")
    assert code == 0, err
    return (
        json.loads((tmp_path / f"{name}.json").read_text()),
        json.loads((tmp_path / f"{name}_replayed.json").read_text()),
    )


def _same(polled: dict, replayed: dict) -> None:
    for key in SAME:
        assert replayed.get(key) == polled.get(key), key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_replay_reproduces_the_polled_record(name, qsched, fake_scheduler, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIGS[name]))
    code, out, err = qsched("job", "dispatch", "config.json", *DEVICE)
    assert code == 0, err
    job_id = job_id_of(out)
    wait_done(fake_scheduler[1], job_id)
    polled, replayed = _poll_and_replay(qsched, tmp_path, job_id, name)
    assert "results" in polled, polled
    _same(polled, replayed)
    debug = json.loads((tmp_path / f"{name}_debug.json").read_text())
    parts = debug["job_data"]["parts"]
    assert len(parts) == 1 and parts[0]["job_type"] == CONFIGS[name]["benchmark_name"]

    # A device replay cannot rebuild (a cloud QPU, no coupling map in the file): scored from the parts.
    cloud = json.loads(json.dumps(debug))
    cloud["job_data"]["device"] = "ibm:ibm_nowhere"
    cloud["job_data"]["platform"] = {**polled["platform"], "provider": "ibm", "device": "ibm_nowhere"}
    (tmp_path / "cloud_debug.json").write_text(json.dumps(cloud))
    code, _, err = qsched("job", "replay", "cloud_debug.json", "--json", "cloud.json")
    assert code == 0, err
    assert json.loads((tmp_path / "cloud.json").read_text())["results"] == polled["results"]

    # An older debug file (no parts): rebuilt from the config and the local device, same scores;
    # except Mirror Circuits without a seed, whose circuits were random: refused, saying why.
    del debug["job_data"]["parts"]
    (tmp_path / "old_debug.json").write_text(json.dumps(debug))
    code, _, err = qsched("job", "replay", "old_debug.json", "--json", "old.json")
    if name == "mirror":
        assert code == 2 and "seed" in err and err.count("\n") == 1
    else:
        assert code == 0, err
        _same(polled, json.loads((tmp_path / "old.json").read_text()))


def test_replay_of_a_suite_reproduces_every_record(qsched, fake_scheduler, tmp_path):
    suite = {
        "name": "replay_suite",
        "benchmarks": [
            {"name": "mirror", "config": CONFIGS["mirror"]},  # no seed
            {"name": "wit", "config": CONFIGS["wit"]},
        ],
    }
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    code, out, err = qsched("suite", "dispatch", "suite.json", *DEVICE)
    assert code == 0, err
    job_id = job_id_of(out)
    wait_done(fake_scheduler[1], job_id)
    polled, replayed = _poll_and_replay(qsched, tmp_path, job_id, "suite", verb="suite")
    assert [r["job_type"] for r in replayed] == ["Mirror Circuits", "WIT"]
    assert replayed[0]["suite"] == polled[0]["suite"] and polled[0]["suite"]["name"] == "replay_suite"
    for a, b in zip(polled, replayed, strict=True):
        _same(a, b)


def test_a_damaged_debug_file_is_one_line(qsched, tmp_path):
    (tmp_path / "bad_debug.json").write_text(
        json.dumps(
            {
                "job_type": "WIT",
                "params": CONFIGS["wit"],
                "job_data": {"device": "local:fake_lagos", "parts": [{"job_type": "WIT"}]},
                "raw_results": [],
            }
        )
    )
    code, _, err = qsched("job", "replay", "bad_debug.json")
    assert code == 2 and "damaged" in err and err.count("\n") == 1


def test_replay_through_the_real_scheduler_keeps_the_scoring_data(
    services, gateway_address, tmp_path_factory, capsys, monkeypatch, tmp_path
):
    """The scheduler caches the gateway's scoring data with the results and returns it with them."""
    from tests.support.stack import running_service

    address = services.enter(
        running_service(
            "scheduler",
            tmp_path_factory.mktemp("scheduler"),
            peers={"gateway": gateway_address},
            lab_devices={},
            pin_configs=False,
        )
    )
    monkeypatch.setenv("QSCHED_USER", "alice")
    monkeypatch.chdir(tmp_path)
    qsched = make_runner(address, capsys)
    (tmp_path / "mirror.json").write_text(json.dumps(CONFIGS["mirror"]))
    code, out, err = qsched("job", "dispatch", "mirror.json", *DEVICE)
    assert code == 0, err
    job_id = job_id_of(out)
    wait_done(address, job_id)
    qsched("job", "poll", job_id)  # fetched and cached by the scheduler
    polled, replayed = _poll_and_replay(qsched, tmp_path, job_id, "mirror")  # from the cache
    _same(polled, replayed)
    debug = json.loads((tmp_path / "mirror_debug.json").read_text())
    assert isinstance(debug["job_data"]["parts"][0]["data"]["seed"], int)  # the seed drawn at dispatch


# -- per-task status -------------------------------------------------------------------------------------
BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'


@pytest.fixture(scope="module")
def scheduler_with_gateway_double(services, tmp_path_factory):
    """(address, FakeGateway): the real scheduler in front of the gateway double, whose tasks stay
    QUEUED (position 3) until the test moves them."""
    from tests.support.fake_gateway import FakeGateway, start_fake_gateway
    from tests.support.stack import running_service

    gateway = FakeGateway()

    @contextlib.asynccontextmanager
    async def started():
        server = await start_fake_gateway(gateway)
        try:
            peers = {"gateway": f"127.0.0.1:{server.port}"}
            service = running_service(
                "scheduler",
                tmp_path_factory.mktemp("scheduler"),
                peers,
                lab_devices={},
                pin_configs=False,
            )
            async with service as address:
                yield address
        finally:
            await server.stop(0)

    return services.enter(started()), gateway


def test_poll_shows_each_provider_task_with_its_status_and_queue_position(
    scheduler_with_gateway_double, services, capsys, monkeypatch, tmp_path
):
    from qsched import connection
    from qsched.api.jobs.v1 import jobs_pb2 as pb
    from qsched.api.jobs.v1 import jobs_pb2_grpc
    from qsched.client import JobClient

    address, gateway = scheduler_with_gateway_double
    monkeypatch.setenv("QSCHED_USER", "alice")
    monkeypatch.chdir(tmp_path)
    qsched = make_runner(address, capsys)
    program = pb.CircuitProgram(qasm=[BELL, BELL], shots=100)
    with JobClient(address) as client:
        request = pb.SubmitJobRequest(
            device="fake:qpu", owner="alice", payload=pb.JobPayload(circuit=program)
        )
        with connection.channel(address) as channel:
            job_id = jobs_pb2_grpc.JobServiceStub(channel).SubmitJob(request, timeout=30).job.job_id
        job = eventually(
            lambda: client.get_job(job_id),
            until=lambda j: len(j.current_run.provider_tasks) == 2,
            what="both provider tasks",
        )
        first, second = sorted(job.current_run.provider_task_ids)

        def start_first():
            gateway.tasks[first].provider_status = "INITIALIZING"
            gateway.advance(first, 2)  # RUNNING

        services.loop.call_soon_threadsafe(start_first)
        eventually(
            lambda: client.get_job(job_id),
            until=lambda j: any(t.task_id == first and t.state == 2 for t in j.current_run.provider_tasks),
            what=f"{first} running",
        )
        code, out, err = qsched("job", "poll", job_id)
        assert code == 0, err
        assert f"{job_id} is not yet completed" in out and "Current status of tasks:" in out
        assert f"- {first}: RUNNING [INITIALIZING]\n" in out
        assert f"- {second}: QUEUED (position 3)\n" in out
        assert out.rstrip().endswith("Please try again later.")

        services.loop.call_soon_threadsafe(gateway.finish_all)
        wait_done(address, job_id)
        assert not client.get_job(job_id).current_run.provider_tasks  # only while active
        code, out, err = qsched("job", "poll", job_id)  # finished: the results, no task lines
        assert code == 0 and "not yet completed" not in out and f"- {first}" not in out, err
