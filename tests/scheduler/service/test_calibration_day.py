"""A simulated day on the drifting device, with and without the calibration-freshness gate (issue 14).

The real config service and the real executor on the simulated board (its pi gain and qubit
frequency drift); the scheduler built in process, on the same injected clock as the device's drift,
so a day passes in seconds and nothing waits on the wall clock. 200 single-shot fidelity measurements
(4 every 28.8 device minutes). With the gate, Rabi and spectroscopy are recalibrated when stale (each
fresh for one hour), shared by the jobs waiting, in chain order, and every job runs pinned to a
revision a calibration pushed less than an hour before; the median fidelity stays above 0.95.
Without it (the same drift, the hardware config right at the start), the fidelity degrades."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from qsched.api.configs.v1 import configs_pb2 as cpb
from qsched.api.configs.v1 import configs_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_hardware.board import open_board
from qsched_hardware.hwconfig import load_hardware_config
from qsched_hardware.sim.device import DEFAULT_DEVICE_MODEL, load_device_model
from qsched_runtime.security import PeerCredentials
from qsched_runtime.server import start_server
from qsched_scheduler.calibration.configs_client import GrpcCalibrationConfigs
from qsched_scheduler.calibration.manager import CALIBRATOR, Calibrations
from qsched_scheduler.calibration.state import MemoryCalibrationStore
from qsched_scheduler.configs_client import GrpcConfigPinner, GrpcMainRevisionsFeed
from qsched_scheduler.domain import JobFilter, JobKind, JobState, Payload
from qsched_scheduler.executor_client import GrpcLabExecutor
from qsched_scheduler.main_revisions import MainRevisions
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.validation import Submission
from tests.support.identity import authed_channel
from tests.support.stack import running_service
from tests.support.waiting import eventually

EPOCH = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
STEPS, PER_STEP = 50, 4  # 200 jobs over 24 h
STEP_S = 24 * 3600 / STEPS
FRESH_S = 3600
DEFINITIONS = f"""
calibrations:
  qubit_freq:
    experiment: {{class: QubitSpectroscopyExperiment, module: qsched_hardware.experiments}}
    settings: {{expts: 61, reps: 200}}
    updates: {{qubit.f_ge_mhz: f_ge_mhz}}
    fresh_for_s: {FRESH_S}
    accept: {{f_ge_err_mhz: [0, 0.5]}}
  rabi:
    experiment: {{class: AmplitudeRabiExperiment, module: qsched_hardware.experiments}}
    settings: {{expts: 41, reps: 300}}
    updates: {{qubit.pi_pulse.gain: pi_gain}}
    fresh_for_s: {FRESH_S}
    depends_on: [qubit_freq]
    accept: {{pi_gain: [0.1, 0.9], pi_gain_err: [0, 0.05]}}
    required: true
"""
CALIBRATIONS_TYPE = cpb.ConfigType(
    name="calibrations", abbreviation="CA", description="Calibration definitions the scheduler runs (YAML)"
)


class DayClock:
    """Device seconds since the start of the day: the drift's clock and (from EPOCH) the scheduler's."""

    def __init__(self) -> None:
        self.t = 0.0

    def seconds(self) -> float:
        return self.t

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)


class RecordingConfigs(GrpcCalibrationConfigs):
    """The calibrator's config-service adapter, noting when (day clock) each revision was pushed."""

    def __init__(self, address: str, credentials: PeerCredentials, clock: DayClock):
        super().__init__(address, credentials)
        self.clock = clock
        self.pushed: dict[str, float] = {}

    async def push_updates(self, updates, job_id, calibration):
        pushed = await super().push_updates(updates, job_id, calibration)
        self.pushed[pushed.revision_id] = self.clock.seconds()
        return pushed


def drifting_model(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_DEVICE_MODEL.read_text())
    data["drift"] = {
        "time_scale": 1,  # the injected clock counts device seconds
        "pi_gain": {"kind": "sine", "amplitude": 0.1, "period_h": 10},
        "qubit_frequency_mhz": {"kind": "sine", "amplitude": 0.6, "period_h": 8, "phase_rad": 1.0},
    }
    path = tmp_path / "drifting.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.asynccontextmanager
async def executor(data_dir: Path, configs_address: str, device: Path, clock: DayClock):
    from qsched_executor.server import build

    board = open_board("sim", device_model=device)
    board.soc.device.drift.clock = clock.seconds
    board.soc.sim_truth()  # the drift starts at t = 0
    endpoints = Endpoints(executor="127.0.0.1:0", configs=configs_address)
    cfg = ServiceConfig(service="executor", endpoints=endpoints, data_dir=data_dir, data_writers=0)
    handle = await build(cfg, board=board)
    server = await start_server(cfg.listen, handle.registrations)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(0)
        await handle.stop()


def single_shot() -> Submission:
    body = {
        "experiment_class": "SingleShotExperiment",
        "experiment_module": "qsched_hardware.experiments",
        "expt_config_json": json.dumps({"reps": 1000}),
        "config_revisions": {},
        "config_overrides": {},
    }
    return Submission("qick", Payload(JobKind.LAB_EXPERIMENT, body), 0, "alice")


async def day(tmp_path: Path, gated: bool) -> dict:
    clock = DayClock()
    truth = load_device_model()
    hardware = load_hardware_config()[0]
    hardware["readout"]["frequency_mhz"] = truth.resonator.frequency_mhz
    hardware["qubit"]["f_ge_mhz"] = truth.qubit.frequency_mhz
    hardware["qubit"]["pi_pulse"]["gain"] = truth.qubit.pi_gain  # right at the start of the day
    peers = PeerCredentials(os.environ["QSCHED_SERVICE_TOKEN"])
    async with (
        running_service("configs", tmp_path / "configs") as configs_address,
        authed_channel(configs_address) as channel,
        executor(tmp_path / "executor", configs_address, drifting_model(tmp_path), clock) as executor_address,
    ):
        configs = configs_pb2_grpc.ConfigServiceStub(channel)
        await configs.RegisterConfigType(cpb.RegisterConfigTypeRequest(config_type=CALIBRATIONS_TYPE))
        for config_type, content in (
            ("hardware_config", yaml.safe_dump(hardware)),
            ("calibrations", DEFINITIONS),
        ):
            await configs.PushToMain(
                cpb.PushToMainRequest(
                    config_type=config_type, content=content.encode(), original_filename=f"{config_type}.yml",
                    creator="carol", etag="",
                )
            )  # fmt: skip
        mains = MainRevisions()
        feed = GrpcMainRevisionsFeed(configs_address, mains, peers)
        feed.start()
        recorder = RecordingConfigs(
            configs_address, PeerCredentials(os.environ["QSCHED_CALIBRATOR_TOKEN"]), clock
        )
        calibrations = (
            Calibrations(MemoryCalibrationStore(), recorder, mains, clock=clock.now) if gated else None
        )
        scheduler = Scheduler.build(
            MemoryJobStore(),
            {"qick": GrpcLabExecutor(executor_address, peers)},
            b"k" * 32,
            mains=mains,
            pinner=GrpcConfigPinner(configs_address, peers),
            calibrations=calibrations,
            clock=clock.now,
        )
        await mains.wait_live(10)
        await scheduler.start()
        try:
            jobs = []
            for step in range(STEPS):
                clock.t = step * STEP_S
                # Back to back: the next run may start before the previous one's end is reported
                # (its data file still being written); the engine applies that start after it.
                step_ids = [(await scheduler.submit(single_shot())).job.job_id for _ in range(PER_STEP)]
                for job_id in step_ids:
                    job = await eventually(
                        lambda job_id=job_id: scheduler.get(job_id),
                        until=lambda j: j.state.terminal,
                        timeout=30,
                        what=f"{job_id} at {clock.t / 3600:.1f} h",
                    )
                    assert job.state is JobState.SUCCEEDED, job.error
                    jobs.append((clock.t, job))
            calibration_jobs, _ = await scheduler.list_jobs(JobFilter(owner=CALIBRATOR), 1000, "")
        finally:
            await scheduler.stop()
            await feed.close()
            await recorder.close()
    return {"jobs": jobs, "pushed": recorder.pushed, "calibration_jobs": calibration_jobs}


async def test_a_day_on_the_drifting_device_with_and_without_the_gate(tmp_path, capsys):
    gated = await day(tmp_path / "gated", gated=True)
    plain = await day(tmp_path / "plain", gated=False)
    fidelity = {
        name: [j.current_run.summary["fidelity"] for _, j in run["jobs"]]
        for name, run in (("gated", gated), ("plain", plain))
    }
    report = {name: (statistics.median(f), min(f)) for name, f in fidelity.items()}
    with capsys.disabled():
        print(f"\nsingle-shot fidelity over a day, median/min: {report}")
    assert len(gated["jobs"]) == len(plain["jobs"]) == STEPS * PER_STEP
    assert report["gated"][0] > 0.95
    assert report["plain"][0] < report["gated"][0] - 0.02, "without the gate the fidelity degrades"
    # Every gated job ran pinned to a revision a calibration pushed less than an hour before.
    for t, job in gated["jobs"]:
        revision = job.current_run.config_revisions["hardware_config"]
        assert revision in gated["pushed"], f"{job.job_id} pinned {revision}, not a calibration's"
        assert t - gated["pushed"][revision] < FRESH_S
    # Calibration runs: shared by the jobs of a step (at most one per name at a time), chain order.
    cal = gated["calibration_jobs"]
    by_time: dict[datetime, list] = {}
    for job in cal:
        by_time.setdefault(job.create_time, []).append(job)
    for batch in by_time.values():
        names = [j.labels["calibration"] for j in sorted(batch, key=lambda j: j.queue_order)]
        assert len(names) == len(set(names)), "a calibration was queued twice at once"
        assert names in (["qubit_freq", "rabi"], ["rabi"], ["qubit_freq"])
    assert 1 < len(cal) <= 2 * STEPS
