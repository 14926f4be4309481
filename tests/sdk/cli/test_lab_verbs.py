"""The lab verbs of the `qsched` CLI against a real scheduler (run in-process, in a thread)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.cli.main import main
from tests.sdk.helpers import RABI, address_of, in_thread
from tests.support.jobs import job_in_state
from tests.support.processes import free_port
from tests.support.waiting import eventually


@pytest.fixture
def qsched(scheduler, capsys):
    address = address_of(scheduler)

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await in_thread(main, [*args, "--address", address])
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def test_submit_wait_show_history(qsched, cache_dir):
    code, out, _ = await qsched(
        "submit",
        "--experiment",
        f"{RABI}.AmplitudeRabiExperiment",
        "--config",
        '{"reps": 5}',
        "--owner",
        "alice",
    )
    assert code == 0
    job_id = out.split()[0]
    assert job_id.startswith("JOB-") and "queued on qick" in out
    code, out, _ = await qsched("wait", job_id)
    assert code == 0 and f"{job_id}: completed" in out and "pi_gain = 0.5" in out
    code, out, _ = await qsched("show", job_id, "--runs")
    assert code == 0 and "owner      alice" in out and "state      succeeded" in out and "TASK" in out
    code, out, _ = await qsched("job", "view", job_id)  # the old verb still works
    assert code == 0 and "owner      alice" in out
    code, out, _ = await qsched("history", "--user", "alice", "--status", "completed")
    assert code == 0 and job_id in out
    code, out, _ = await qsched("history", "--user", "bob")
    assert out.strip() == "no jobs"
    code, _, err = await qsched("history", "--status", "exploded")
    assert code == 2 and "unknown status" in err


async def test_submit_wait_reports_failure_with_exit_1(qsched):
    code, out, _ = await qsched(
        "job", "submit", "--class", "C", "--module", RABI, "--config", '{"fail": "PROGRAM_ERROR"}', "--wait"
    )
    assert code == 1 and "failed (PROGRAM_ERROR" in out


async def test_queue_follow_cancel(qsched, scheduler, capsys):
    stub, fake, address = scheduler
    address = address_of(scheduler)
    fake.hold = asyncio.Event()
    code, out, _ = await qsched("submit", "--experiment", f"{RABI}.Running", "--owner", "alice")
    running = out.split()[0]
    await job_in_state(stub, running, pb.Job.STATE_RUNNING)
    code, out, _ = await qsched("submit", "--experiment", f"{RABI}.Waiting", "--priority", "5")
    queued = out.split()[0]
    code, out, _ = await qsched("queue")
    assert code == 0 and out.index(running) < out.index(queued)
    # The running job reports progress for its first 50 ms, then holds at 100 %: the view then
    # changes only when the test changes it.
    await eventually(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=running)),
        until=lambda r: r.job.current_run.progress >= 1.0,
        what="the running job at 100 %",
    )
    # live view: the snapshot, then a redraw when the queued job is cancelled
    capsys.readouterr()
    follow = asyncio.ensure_future(
        in_thread(main, ["queue", "--follow", "--count", "2", "--address", address])
    )
    drawn: list[str] = []

    def first_frame() -> bool:
        drawn.append(capsys.readouterr().out)
        return "queued" in "".join(drawn)

    await eventually(first_frame, what="the first frame drawn")
    out = "".join(drawn)
    await stub.CancelJob(pb.CancelJobRequest(job_id=queued))
    code = await asyncio.wait_for(follow, 20)
    out += capsys.readouterr().out
    frames = out.strip().split("\n\n")
    assert code == 0 and len(frames) == 2
    assert queued in frames[0] and "1 queued" in frames[0]
    assert queued not in frames[1] and "0 queued" in frames[1] and running in frames[1]
    code, out, _ = await qsched("cancel", running)
    assert code == 0 and ("the executor is stopping it" in out or "cancelled" in out)
    await job_in_state(stub, running, pb.Job.STATE_CANCELLED)
    code, _, _err = await qsched("cancel", running)  # cancelling a cancelled job is a no-op
    assert code == 0


async def test_queue_follow_redraws_when_a_snapshot_has_already_changed(qsched, scheduler):
    code, out, _ = await qsched("queue", "--follow", "--count", "1", "--device", "qick")
    assert code == 0 and "qick: 0 running, 0 queued" in out and "the queue is empty" in out


async def test_data_and_plot(qsched, tmp_path, cache_dir):
    code, out, _ = await qsched("submit", "--experiment", f"{RABI}.AmplitudeRabiExperiment", "--wait")
    job_id = out.split()[0]
    code, out, _ = await qsched("data", job_id, "-o", str(tmp_path / "run.h5"), "--list")
    assert code == 0 and (tmp_path / "run.h5").exists() and "xpts" in out and "float64[21]" in out
    code, out, _ = await qsched("plot", job_id, "-o", str(tmp_path / "run.png"))
    assert code == 0, out
    png = tmp_path / "run.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_labels_axes_with_units_and_overlays_the_fit(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qsched import data
    from qsched.cli import plot
    from tests.sdk.conftest import write_run_file

    path = tmp_path / "r.h5"
    write_run_file(path, "JOB-20260101-00001", "t")
    figures = []
    real_close = plt.close
    plot.plot_run.__globals__  # noqa: B018 (plot imports pyplot lazily)
    plt.close = lambda fig=None: figures.append(fig)
    try:
        plot.plot_run(data.read(path), tmp_path / "r.png", title="rabi")
    finally:
        plt.close = real_close
    fig = figures[0]
    axes = fig.axes
    assert [a.get_ylabel() for a in axes] == ["I (ADC units)", "Q (ADC units)"]
    assert axes[-1].get_xlabel() == "gain (a.u.)"
    labels = [line.get_label() for line in axes[0].lines]
    assert "fit" in labels and "data" in labels
    assert any("fit_pi_gain = 0.5" in t.get_text() for t in axes[0].get_legend().get_texts())
    real_close(fig)


def test_plot_tolerates_unknown_layouts(tmp_path):
    import h5py
    import numpy as np

    from qsched import data
    from qsched.cli.plot import plot_run

    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("signal", data=np.arange(10.0))
        f.create_dataset("label", data=b"text")
    plot_run(data.read(path), tmp_path / "odd.png")
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=np.ones((4, 5)))
    plot_run(data.read(path), tmp_path / "img.png")
    with h5py.File(path, "w") as f:
        f.attrs["config"] = "{}"
    with pytest.raises(ValueError, match="no numeric dataset"):
        plot_run(data.read(path), tmp_path / "none.png")


async def test_delete_and_missing_job(qsched):
    code, out, _ = await qsched("submit", "--experiment", f"{RABI}.C", "--wait")
    job_id = out.split()[0]
    code, out, _ = await qsched("delete", job_id)
    assert code == 0 and "deleted" in out
    code, _, err = await qsched("show", job_id)
    assert code == 2 and "JOB_NOT_FOUND" in err


def test_scheduler_down_is_one_clear_line(capsys):
    address = f"127.0.0.1:{free_port()}"
    for argv in (["queue"], ["wait", "JOB-20260101-00001"], ["submit", "--experiment", "m.C"]):
        assert main([*argv, "--address", address, "--timeout", "2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"cannot reach the scheduler at {address}" in err[0]


def test_config_commands_are_registered_when_present():
    from qsched.cli.main import build_parser

    parser = build_parser()
    try:
        import qsched.cli.config_commands  # noqa: F401
    except ImportError:
        pytest.skip("config commands not installed")
    args = parser.parse_args(["config", "list"])
    assert args.command == "config"


def test_cli_start_up_imports_nothing_heavy():
    heavy = ("numpy", "h5py", "matplotlib", "sqlalchemy", "opentelemetry", "qiskit")
    code = (
        "import sys, qsched.cli.main as m; m.build_parser(); "
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {heavy!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_show_and_cancel_take_a_task_id(qsched, scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    code, out, _ = await qsched("submit", "--experiment", f"{RABI}.Running", "--owner", "alice")
    running = out.split()[0]
    await job_in_state(stub, running, pb.Job.STATE_RUNNING)
    code, out, _ = await qsched("submit", "--experiment", f"{RABI}.Waiting", "--owner", "alice")
    waiting = (await stub.GetJob(pb.GetJobRequest(job_id=out.split()[0]))).job
    code, out, _ = await qsched("show", waiting.task_id)  # before it starts
    assert code == 0 and f"job        {waiting.job_id}" in out and waiting.task_id in out
    code, out, _ = await qsched("cancel", waiting.task_id)
    assert code == 0 and out.strip() == f"{waiting.job_id}: cancelled"
    code, out, _ = await qsched("show", waiting.task_id, "--runs")
    assert code == 0 and "state      cancelled" in out
    fake.hold.set()
    await job_in_state(stub, running, pb.Job.STATE_SUCCEEDED)
    assert fake.started_jobs == [running]
