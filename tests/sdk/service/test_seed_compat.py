"""The executor's seed-compatibility layer (services/qsched_executor/seed_compat.py): the alias
table from the seed job server's experiment modules to the built-ins, the translation of its
DAC-unit gains, refusals naming the key, and the provenance written to the run's HDF5 file.
First the translation on its own, then the executor in-process, then a real `qsched up` stack."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest

from qsched import InvalidArgument, JobClient
from qsched.aio import Client
from qsched_core.execution import EnqueueRuns, ExecutionRequest, OpenQueue
from qsched_core.payloads import LabExperiment
from qsched_executor.errors import InvalidRequest
from qsched_executor.executor import HardwareExecutor, Settings
from qsched_executor.seed_compat import (
    SEED_EXPERIMENTS,
    SeedConfigError,
    find_seed_experiment,
    seed_module_name,
)
from qsched_hardware.experiments import CATALOG
from tests.sdk.helpers import PERSON, in_thread

RABI = "experiments.single_qubit.amplitude_rabi"
SEED_RABI_CONFIG = {  # the seed README's basic example
    "start": 0,
    "step": 100,
    "expts": 50,
    "reps": 1000,
    "rounds": 1,
    "qubits": [0],
    "sigma_test": 0.035,
    "pulse_type": "gauss",
}
SEED_FILE = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "001_d27eccb4108546d8.txt"


@pytest.fixture(scope="module")
def board():
    from qsched_hardware.board import open_board

    return open_board("sim")


@pytest.fixture(scope="module")
def hardware():
    from qsched_hardware.hwconfig import load_hardware_config

    return load_hardware_config(None)[0]


# ---- the table and the translation ---------------------------------------------------------------


def test_every_seed_example_class_has_a_builtin():
    pairs = {
        ("single_qubit.amplitude_rabi", "AmplitudeRabiExperiment"): "AmplitudeRabiExperiment",
        ("single_qubit.t1", "T1Experiment"): "T1Experiment",
        ("single_qubit.t2_ramsey", "T2RamseyExperiment"): "RamseyExperiment",
        ("single_qubit.resonator_spectroscopy", "ResonatorSpectroscopyExperiment"): (
            "ResonatorSpectroscopyExperiment"
        ),
    }
    for (module, seed_class), builtin in pairs.items():
        assert SEED_EXPERIMENTS[module][seed_class] == builtin
    for classes in SEED_EXPERIMENTS.values():
        assert set(classes.values()) <= set(CATALOG)
    for prefix in ("experiments.", "multimode_expts.experiments."):
        seed = find_seed_experiment(prefix + "single_qubit.t2_ramsey", "T2RamseyExperiment", ())
        assert seed is not None and seed.cls is CATALOG["RamseyExperiment"]


def test_only_seed_module_paths_are_translated():
    assert seed_module_name("qsched_hardware.experiments") is None
    assert find_seed_experiment("qsched_hardware.experiments", "AmplitudeRabiExperiment", ()) is None
    assert find_seed_experiment("", "AmplitudeRabiExperiment", ()) is None
    assert find_seed_experiment("mylab.experiments.single_qubit.t1", "T1Experiment", ()) is None
    # an allow-listed plug-in package of that name wins over the table
    assert find_seed_experiment(RABI, "AmplitudeRabiExperiment", ("experiments",)) is None
    assert find_seed_experiment(RABI, "AmplitudeRabiExperiment", ("experiments.single_qubit",)) is None


def test_unknown_seed_module_or_class_is_refused_by_name():
    with pytest.raises(InvalidRequest) as info:
        find_seed_experiment("experiments.two_qubit.cross_resonance", "CRExperiment", ())
    assert info.value.reason == "SEED_EXPERIMENT_UNSUPPORTED" and info.value.code == "INVALID_ARGUMENT"
    assert info.value.metadata["experiment_module"] == "experiments.two_qubit.cross_resonance"
    assert "experiments.single_qubit.t1" in info.value.message  # says what is translated
    with pytest.raises(InvalidRequest) as info:
        find_seed_experiment(RABI, "T1Experiment", ())
    assert info.value.reason == "EXPERIMENT_NOT_FOUND" and "AmplitudeRabiExperiment" in info.value.message


def test_dac_gains_become_fractions_of_the_generators_full_scale(board, hardware):
    seed = find_seed_experiment(RABI, "AmplitudeRabiExperiment", ())
    maxv = board.soccfg["gens"][hardware["channels"]["qubit"]["gen"]]["maxv"]
    out = seed.translate(dict(SEED_RABI_CONFIG), board.soccfg, hardware)
    assert out["start"] == 0 and out["step"] == pytest.approx(100 / maxv)
    assert "qubits" not in out
    assert {k: out[k] for k in ("expts", "reps", "rounds", "sigma_test", "pulse_type")} == {
        "expts": 50,
        "reps": 1000,
        "rounds": 1,
        "sigma_test": 0.035,
        "pulse_type": "gauss",
    }  # us, counts and names mean the same in both
    record = seed.provenance()
    assert record["seed_experiment_module"] == RABI
    assert record["experiment"] == "qsched_hardware.experiments.AmplitudeRabiExperiment"
    assert record["seed_expt_config"] == SEED_RABI_CONFIG
    step = next(t for t in record["translated"] if t["key"] == "expt.step")
    assert step["seed_value"] == 100 and step["value"] == pytest.approx(100 / maxv)
    assert f"/ {maxv}" in step["rule"]
    assert [d["key"] for d in record["dropped"]] == ["expt.qubits"]
    json.dumps(record)  # goes into the HDF5 file as JSON


def test_readout_gain_uses_the_readout_generator(board, hardware):
    seed = find_seed_experiment(
        "experiments.single_qubit.resonator_spectroscopy", "ResonatorSpectroscopyExperiment", ()
    )
    maxv = board.soccfg["gens"][hardware["channels"]["readout"]["gen"]]["maxv"]
    out = seed.translate({"start": 7000, "step": 0.5, "expts": 11, "gain": 16383}, board.soccfg, hardware)
    assert out["gain"] == pytest.approx(16383 / maxv) and out["start"] == 7000 and out["step"] == 0.5
    assert seed.translated[0]["rule"].endswith("the readout channel)")


@pytest.mark.parametrize(
    ("module", "cls", "config", "field", "text"),
    [
        (RABI, "AmplitudeRabiExperiment", {"qubits": [1]}, "expt.qubits", "one qubit"),
        (RABI, "AmplitudeRabiExperiment", {"qubits": [0, 1]}, "expt.qubits", "one qubit"),
        (RABI, "AmplitudeRabiExperiment", {"checkEF": True}, "expt.checkEF", "g-e transition"),
        (RABI, "AmplitudeRabiExperiment", {"start": "zero"}, "expt.start", "must be a number"),
        (RABI, "AmplitudeRabiExperiment", {"start": 40000}, "expt.start", "full scale"),
        (RABI, "AmplitudeRabiExperiment", {"step": 1000, "expts": 50}, "expt.step", "49000 DAC units"),
        (
            "experiments.single_qubit.length_rabi",
            "LengthRabiExperiment",
            {"gain": True},
            "expt.gain",
            "number",
        ),
        ("experiments.single_qubit.t2_echo", "T2EchoExperiment", {"num_pi": 3}, "expt.num_pi", "one pi"),
        ("experiments.single_qubit.t2_echo", "T2EchoExperiment", {"cp": True}, "expt.cp", "CPMG"),
        (
            "experiments.single_qubit.resonator_spectroscopy",
            "ResonatorSpectroscopyExperiment",
            {"pi_pulse": True},
            "expt.pi_pulse",
            "|g>",
        ),
    ],
)
def test_untranslatable_keys_are_refused_by_name(board, hardware, module, cls, config, field, text):
    seed = find_seed_experiment(module, cls, ())
    with pytest.raises(SeedConfigError) as info:
        seed.translate(config, board.soccfg, hardware)
    error = info.value
    assert error.code == "INVALID_ARGUMENT" and error.reason == "SEED_CONFIG_UNTRANSLATABLE"
    assert [v.field for v in error.violations] == [field] and error.metadata["field"] == field
    assert text in error.violations[0].description


def test_false_flags_and_always_true_options_are_dropped_and_recorded(board, hardware):
    seed = find_seed_experiment("experiments.single_qubit.t2_echo", "T2EchoExperiment", ())
    out = seed.translate(
        {
            "start": 0,
            "step": 1,
            "expts": 5,
            "num_pi": 1,
            "cpmg": True,
            "cp": False,
            "checkEF": False,
            "qubit": 0,
        },
        board.soccfg,
        hardware,
    )
    assert out == {"start": 0, "step": 1, "expts": 5}
    assert {d["key"] for d in seed.dropped} == {
        "expt.num_pi",
        "expt.cpmg",
        "expt.cp",
        "expt.checkEF",
        "expt.qubit",
    }
    assert seed.translated == []


def test_the_examples_are_the_seeds_verbatim_apart_from_imports():
    if not SEED_FILE.exists():
        pytest.skip(f"the seed file is not beside the checkout ({SEED_FILE})")
    from tests.sdk.service import test_seed_examples as examples

    blocks = re.findall(r"```python\n(.*?)```", SEED_FILE.read_text(), re.S)
    for name in ("BASIC", "MULTIPLE", "PRIORITY", "NON_BLOCKING", "CANCEL", "HISTORY", "LOAD_DATA"):
        code = getattr(examples, name).lstrip("\n")
        as_seed = code.replace("from qsched import JobClient", "from job_server import JobClient").replace(
            "from qsched.data import SlabFile", "from slab.datamanagement import SlabFile"
        )
        assert as_seed in blocks, name


# ---- the executor (in-process, simulated board) ------------------------------------------------------


@pytest.fixture
async def executor(tmp_path, board):
    executor = HardwareExecutor(board, Settings(tmp_path / "data"))
    yield executor
    await executor.close()


async def run_to_end(executor: HardwareExecutor, module: str, cls: str, config: dict):
    """(the run, its last update), or the refusal when the executor would not take it."""
    task = str(uuid.uuid4())
    experiment = LabExperiment(cls, module, json.dumps(config))
    request = ExecutionRequest("JOB-20260113-00001", task, "Claude", experiment)
    executor.open_queue(OpenQueue())
    answer = await executor.enqueue(EnqueueRuns(1, executor.board_info().current_task_id, (request,)))
    if answer.refused:
        return None, answer.refused[0]
    run = executor.get_run(task)
    async for update in run.follow(0):
        last = update
    return run, last


async def test_validate_names_the_untranslatable_key(executor):
    violations = await executor.validate(
        RABI, "AmplitudeRabiExperiment", json.dumps({"qubits": [2], "step": 100})
    )
    assert [v.field for v in violations] == ["expt.qubits"]
    assert await executor.validate(RABI, "AmplitudeRabiExperiment", json.dumps(SEED_RABI_CONFIG)) == []
    # untranslated, the seed's gain step is refused by the built-in's own checks
    plain = await executor.validate(
        "qsched_hardware.experiments", "AmplitudeRabiExperiment", json.dumps(SEED_RABI_CONFIG)
    )
    assert [v.field for v in plain] == ["expt.stop"]
    with pytest.raises(InvalidRequest) as info:
        await executor.validate("experiments.single_qubit.wigner_tomography", "WignerExperiment", "{}")
    assert info.value.reason == "SEED_EXPERIMENT_UNSUPPORTED"


async def test_execute_refuses_an_untranslatable_seed_job(executor):
    _, refused = await run_to_end(executor, RABI, "AmplitudeRabiExperiment", {"checkZZ": True})
    assert refused.reason == "SEED_CONFIG_UNTRANSLATABLE"
    assert [v.field for v in refused.violations] == ["expt.checkZZ"]
    # translated, then checked as any job
    _, refused = await run_to_end(executor, RABI, "AmplitudeRabiExperiment", {"pulse_type": "flat_top"})
    assert refused.reason == "INVALID_EXPERIMENT"
    assert [v.field for v in refused.violations] == ["expt.pulse_type"]
    assert not executor.board_info().busy  # the board was not taken


async def test_a_seed_run_records_what_was_translated_in_its_file(executor):
    import h5py

    run, last = await run_to_end(executor, RABI, "AmplitudeRabiExperiment", SEED_RABI_CONFIG)
    assert last.kind.value == "succeeded", last
    with h5py.File(executor.settings.data_root / run.data.name) as f:
        attrs = dict(f.attrs)
        xpts = f["xpts"][()]
    assert attrs["experiment_module"] == RABI and attrs["experiment_class"] == "AmplitudeRabiExperiment"
    seed = json.loads(attrs["seed_compat"])
    assert seed["experiment"] == "qsched_hardware.experiments.AmplitudeRabiExperiment"
    assert seed["seed_expt_config"] == SEED_RABI_CONFIG
    assert [t["key"] for t in seed["translated"]] == ["expt.start", "expt.step"]
    assert json.loads(attrs["expt_config_requested"]) == SEED_RABI_CONFIG  # as sent
    resolved = json.loads(attrs["expt_config"])  # as run
    assert resolved["step"] == pytest.approx(100 / 32766) and resolved["stop"] == pytest.approx(4900 / 32766)
    assert len(xpts) == 50 and xpts[-1] == pytest.approx(4900 / 32766, abs=1e-4)

    plain, last = await run_to_end(
        executor, "qsched_hardware.experiments", "T1Experiment", {"expts": 5, "reps": 10}
    )
    assert last.kind.value == "succeeded"
    with h5py.File(executor.settings.data_root / plain.data.name) as f:
        assert "seed_compat" not in f.attrs  # only seed jobs are translated


# ---- a real `qsched up` stack --------------------------------------------------------------------------


@pytest.fixture
def stack(on_stack) -> str:
    return on_stack.address  # QSCHED_TOKEN: the seed examples' person


async def test_stack_refuses_an_untranslatable_seed_job_at_submit(stack):
    client = JobClient(stack)
    with pytest.raises(InvalidArgument) as info:
        await in_thread(client.submit_job, "AmplitudeRabiExperiment", RABI, {"qubits": [3]}, "Claude")
    assert info.value.reason == "INVALID_EXPERIMENT_CONFIG"
    assert info.value.metadata["field"] == "expt.qubits" and "expt.qubits" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        await in_thread(
            client.submit_job, "RabiChevron", "experiments.single_qubit.rabi_chevron", {}, "Claude"
        )
    assert info.value.reason == "SEED_EXPERIMENT_UNSUPPORTED"


async def test_stack_runs_a_seed_job_from_a_job_handle(stack):
    async with Client(stack, default_device="qick", owner=PERSON) as client:
        job = client.create_job(
            experiment=f"{RABI}.AmplitudeRabiExperiment",
            config={"start": 0, "step": 300, "expts": 21, "reps": 200, "qubits": [0]},
        )
        await job.execute(timeout_s=60)
        assert job.completed, job.error
        assert job.result.experiment == f"{RABI}.AmplitudeRabiExperiment"  # the seed's name is kept
        assert "pi_gain" in job.result.data
        data = await job.result.load_data()
    seed = data.attrs["seed_compat"]
    assert seed["translated"][1] == {
        "key": "expt.step",
        "seed_value": 300,
        "value": pytest.approx(300 / 32766),
        "rule": "DAC units / 32766 (maxv of generator 2, the qubit channel)",
    }
    assert data.config["expt"]["stop"] == pytest.approx(6000 / 32766)
    assert data.attrs["hardware_config_revision_id"].startswith("CFG-HW-")


def test_stack_fixture_is_a_real_process_stack(stack):
    """The seed examples' second run is not in-process: its scheduler answers on another port
    with the real executor's devices."""
    devices = asyncio.run(_devices(stack))
    assert devices["qick"] == ["lab_experiment"] and "local:aer_simulator" in devices


async def _devices(address: str) -> dict:
    async with Client(address) as client:
        return {d["name"]: d["kinds"] for d in await client.list_devices()}
