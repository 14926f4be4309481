"""The calibration loop end to end on the drifting simulated device: the real config service, the
real scheduler and the real executor on the simulated board, whose pi gain drifts (one device hour
per wall second). A job that needs Rabi waits; the scheduler runs qubit spectroscopy then Rabi,
each fit passes its check and is pushed as main by the calibrator (the job recorded), and the job
runs pinned to the revision Rabi pushed. Once Rabi is stale the next job brings a new Rabi that
follows the drift, and spectroscopy (still fresh) is not run again."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml

from qsched.api.configs.v1 import configs_pb2 as cpb
from qsched.api.configs.v1 import configs_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_hardware.board import open_board
from qsched_hardware.hwconfig import load_hardware_config
from qsched_hardware.sim.device import DEFAULT_DEVICE_MODEL, load_device_model
from qsched_runtime.server import start_server
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state
from tests.support.stack import running_service
from tests.support.waiting import eventually

RABI_FRESH_S = 4.0
CALIBRATIONS_TYPE = cpb.ConfigType(
    name="calibrations", abbreviation="CA", description="Calibration definitions the scheduler runs (YAML)"
)
DEFINITIONS = f"""
on_failure: hold
calibrations:
  qubit_freq:
    experiment: {{class: QubitSpectroscopyExperiment, module: qsched_hardware.experiments}}
    settings: {{expts: 61, reps: 200}}
    updates: {{qubit.f_ge_mhz: f_ge_mhz}}
    fresh_for_s: 600
    accept: {{f_ge_err_mhz: [0, 0.5]}}
  rabi:
    experiment: {{class: AmplitudeRabiExperiment, module: qsched_hardware.experiments}}
    settings: {{expts: 41, reps: 300}}
    updates: {{qubit.pi_pulse.gain: pi_gain}}
    fresh_for_s: {RABI_FRESH_S}
    depends_on: [qubit_freq]
    accept: {{pi_gain: [0.1, 0.9], pi_gain_err: [0, 0.05]}}
    required: true
"""


def drifting_device(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_DEVICE_MODEL.read_text())
    # pi gain +-0.06 over a 12 h period: one wall second is one device hour.
    data["drift"] = {"time_scale": 3600, "pi_gain": {"kind": "sine", "amplitude": 0.06, "period_h": 12}}
    path = tmp_path / "drifting.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.asynccontextmanager
async def executor(data_dir: Path, configs_address: str, device: Path):
    from qsched_executor.server import build

    board = open_board("sim", device_model=device)
    endpoints = Endpoints(executor="127.0.0.1:0", configs=configs_address)
    cfg = ServiceConfig(service="executor", endpoints=endpoints, data_dir=data_dir, data_writers=0)
    handle = await build(cfg, board=board)
    server = await start_server(cfg.listen, handle.registrations)
    try:
        yield f"127.0.0.1:{server.port}", board
    finally:
        await server.stop(0)
        await handle.stop()


async def push(configs, config_type: str, content: bytes, filename: str) -> cpb.ConfigRevision:
    response = await configs.PushToMain(
        cpb.PushToMainRequest(
            config_type=config_type, content=content, original_filename=filename, creator="carol", etag=""
        )
    )
    return response.revision


@pytest.fixture
async def loop(tmp_path):
    truth = load_device_model()
    hardware = load_hardware_config()[0]
    hardware["readout"]["frequency_mhz"] = truth.resonator.frequency_mhz  # resonator known; qubit not
    async with (
        running_service("configs", tmp_path / "configs") as configs_address,
        authed_channel(configs_address) as channel,
    ):
        configs = configs_pb2_grpc.ConfigServiceStub(channel)
        # What `qsched up` does on a fresh stack (an admin's `qsched config register-type` elsewhere).
        await configs.RegisterConfigType(cpb.RegisterConfigTypeRequest(config_type=CALIBRATIONS_TYPE))
        await push(configs, "hardware_config", yaml.safe_dump(hardware).encode(), "hardware_config.yml")
        await push(configs, "calibrations", DEFINITIONS.encode(), "calibrations.yml")
        device = drifting_device(tmp_path)
        async with executor(tmp_path / "executor", configs_address, device) as (executor_address, board):
            peers = {"configs": configs_address}
            service = running_service(
                "scheduler", tmp_path / "scheduler", peers, lab_devices={"qick": executor_address}
            )
            async with service as address, authed_channel(address) as jobs_channel:
                yield jobs_pb2_grpc.JobServiceStub(jobs_channel), configs, board


def user_job() -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        device="qick",
        owner="alice",
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class="AmplitudeRabiExperiment",
                experiment_module="qsched_hardware.experiments",
                expt_config_json=json.dumps({"expts": 21, "reps": 100}),
            )
        ),
    )


async def calibrations(jobs) -> dict[str, pb.Calibration]:
    response = await jobs.ListCalibrations(pb.ListCalibrationsRequest(device="qick"))
    return {c.name: c for c in response.calibrations}


async def test_a_stale_chain_is_recalibrated_pushed_and_the_job_runs_on_the_fresh_pin(loop):
    jobs, configs, board = loop
    first = (await jobs.SubmitJob(user_job())).job
    waiting = await jobs.GetJob(pb.GetJobRequest(job_id=first.job_id))
    if waiting.job.state == pb.Job.STATE_QUEUED:  # the chain may already be running
        assert waiting.job.waiting_reason.policy in ("calibration-freshness", "priority-fifo")
    done = await job_in_state(jobs, first.job_id, pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, timeout=60)
    assert done.state == pb.Job.STATE_SUCCEEDED, done.error
    cals = await calibrations(jobs)
    freq, rabi = cals["qubit_freq"], cals["rabi"]
    assert freq.status == pb.CALIBRATION_STATUS_FRESH and rabi.status == pb.CALIBRATION_STATUS_FRESH
    # Rabi's pass is main, made by the calibrator, recorded with its job; the user job pinned it.
    request = cpb.GetMainRequest(config_type="hardware_config", include_content=True)
    main = (await configs.GetMain(request)).revision
    assert main.revision_id == rabi.revision_id and main.first_job_id == rabi.job_id
    assert dict(done.current_run.config_revisions) == {"hardware_config": rabi.revision_id}
    assert yaml.safe_load(main.content)["qubit"]["pi_pulse"]["gain"] == pytest.approx(rabi.values["pi_gain"])
    listed = await configs.ListMainHistory(cpb.ListMainHistoryRequest(config_type="hardware_config"))
    history = listed.changes
    assert [c.changed_by for c in history[:2]] == [
        "svc-calibrator (calibration rabi)",
        "svc-calibrator (calibration qubit_freq)",
    ]
    # The chain ran in order before the job (spectroscopy, Rabi, then the job).
    freq_job = (await jobs.GetJob(pb.GetJobRequest(job_id=freq.job_id))).job
    rabi_job = (await jobs.GetJob(pb.GetJobRequest(job_id=rabi.job_id))).job
    assert freq_job.owner == rabi_job.owner == "svc-calibrator"
    start = [j.start_time.ToDatetime() for j in (freq_job, rabi_job, done)]
    assert start == sorted(start)
    first_gain = rabi.values["pi_gain"]

    # Rabi goes stale (device hours pass, the pi gain drifts); the next job brings a new Rabi only.
    await eventually(
        lambda: calibrations(jobs),
        until=lambda c: c["rabi"].status == pb.CALIBRATION_STATUS_STALE,
        timeout=RABI_FRESH_S + 5,
        what="Rabi stale",
    )
    second = (await jobs.SubmitJob(user_job())).job
    done2 = await job_in_state(jobs, second.job_id, pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, timeout=60)
    assert done2.state == pb.Job.STATE_SUCCEEDED, done2.error
    cals = await calibrations(jobs)
    assert cals["qubit_freq"].job_id == freq.job_id, "spectroscopy was fresh: not run again"
    assert cals["rabi"].job_id != rabi.job_id
    assert dict(done2.current_run.config_revisions) == {"hardware_config": cals["rabi"].revision_id}
    truth = board.soc.sim_truth()["pi_gain"]
    new_gain = cals["rabi"].values["pi_gain"]
    assert new_gain == pytest.approx(truth, abs=0.04), "the new Rabi follows the drift"
    assert abs(new_gain - first_gain) > 0.005, "the device drifted between the two Rabis"


async def test_a_calibration_failing_its_check_leaves_main_alone_and_is_visible(loop):
    jobs, configs, _board = loop
    first = (await jobs.SubmitJob(user_job())).job
    await job_in_state(jobs, first.job_id, pb.Job.STATE_SUCCEEDED, timeout=60)
    main = (await configs.GetMain(cpb.GetMainRequest(config_type="hardware_config"))).revision
    # A stricter check no fit can pass (a new revision of the definitions), then Rabi on demand.
    etag = (await configs.GetMain(cpb.GetMainRequest(config_type="calibrations"))).etag
    strict = DEFINITIONS.replace("pi_gain_err: [0, 0.05]", "pi_gain_err: [0, 0.0]")
    await configs.PushToMain(
        cpb.PushToMainRequest(
            config_type="calibrations", content=strict.encode(), original_filename="c.yml", creator="carol",
            etag=etag,
        )
    )  # fmt: skip
    queued = await jobs.RunCalibration(pb.RunCalibrationRequest(device="qick", name="rabi"))
    assert list(queued.queued) == ["rabi"]
    failed = await eventually(
        lambda: calibrations(jobs),
        until=lambda c: c["rabi"].status == pb.CALIBRATION_STATUS_FAILED,
        timeout=30,
        what="Rabi failed its check",
    )
    assert "acceptance check failed: pi_gain_err" in failed["rabi"].last_error
    assert failed["rabi"].failures == 1
    after = (await configs.GetMain(cpb.GetMainRequest(config_type="hardware_config"))).revision
    assert after.revision_id == main.revision_id, "main untouched"
