"""The gateway's domain core: providers, planning (programs and benchmarks to circuits), submission,
status, cancellation, results and benchmark scoring. The servicer only translates protos."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsched_benchmarks import estimate
from qsched_benchmarks import registry as benchmarks
from qsched_benchmarks.devices import DeviceInfo
from qsched_benchmarks.export import circuit_metadata, record_head
from qsched_core.errors import DomainError
from qsched_core.sql import make_engine
from qsched_gateway import db, limits
from qsched_gateway.credentials import Credentials
from qsched_gateway.errors import (
    FailedPrecondition,
    InvalidArgument,
    ProviderError,
    Unavailable,
    invalid_config,
    invalid_program,
    not_configured,
    unknown_device,
    unknown_provider,
)
from qsched_gateway.programs import load_circuits
from qsched_gateway.providers.base import Adapter, Options
from qsched_gateway.registry import (
    COMPLETED,
    Registry,
    Submission,
    TaskRecord,
    TaskResultData,
)

log = logging.getLogger(__name__)
MAX_SHOTS = 10_000_000


@dataclass
class Workload:
    kind: str  # circuits | benchmark | suite
    qasm: list[str] = field(default_factory=list)
    qpy: list[bytes] = field(default_factory=list)
    shots: int = 0
    options: Options = field(default_factory=Options)
    config_json: str = ""


@dataclass
class Part:
    """One scored unit: a benchmark (or the plain circuits), its circuits [start, end) and shots."""

    job_type: str
    params: dict[str, Any]
    data: dict[str, Any]
    start: int
    end: int
    shots: int
    name: str = ""
    input_two_qubit_gate_counts: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Plan:
    kind: str
    circuits: list
    parts: list[Part]
    options: Options
    suite: dict[str, Any] | None = None

    def params_json(self) -> str:
        if self.kind == "circuits":
            return ""
        if self.kind == "benchmark":
            return json.dumps(self.parts[0].params, sort_keys=True)
        return json.dumps([{"name": p.name, "config": p.params} for p in self.parts], sort_keys=True)


@dataclass
class EstimateResult:
    jobs: int
    per_circuit: list[estimate.CircuitCounts]
    cost: float
    cost_unit: str
    cost_basis: str
    params_json: str


@dataclass
class FetchOutcome:
    tasks: list[tuple[TaskRecord, TaskResultData | None]]
    benchmark_json: str
    submission_id: str
    scoring_json: str = ""  # what scoring used (parts: params, data, circuit ranges), for offline re-scoring


class Changes:
    """Wakes watchers when a registry-tracked task changes; safe to notify from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def current(self) -> asyncio.Event:
        return self._event

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing
            loop.call_soon_threadsafe(self._fire)

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()


def installed_adapters(credentials: Credentials, registry: Registry, notify, local_workers: int) -> dict:
    """The providers whose SDKs import here (an adapter module imports its SDK at import time)."""
    adapters: dict[str, Adapter] = {}
    try:
        import qiskit_aer  # noqa: F401

        from qsched_gateway.providers.local import LocalAdapter

        adapters["local"] = LocalAdapter(credentials, registry, notify, workers=local_workers)
    except ImportError as exc:
        log.info("local provider unavailable: %s", exc)
    for name, module, cls in [
        ("ibm", "qsched_gateway.providers.ibm", "IbmAdapter"),
        ("braket", "qsched_gateway.providers.braket", "BraketAdapter"),
        ("ionq", "qsched_gateway.providers.ionq", "IonQAdapter"),
        ("azure", "qsched_gateway.providers.azure", "AzureAdapter"),
    ]:
        try:
            import importlib

            adapter_cls = getattr(importlib.import_module(module), cls)
            adapters[name] = adapter_cls(credentials)
        except ImportError as exc:
            log.info("%s provider unavailable: %s", name, exc)
    return adapters


class Gateway:
    def __init__(
        self,
        data_dir: Path,
        credentials: Credentials | None = None,
        adapters: dict[str, Adapter] | None = None,
        local_workers: int | None = None,
        poll_interval: float | None = None,
        database_url: str = "",
    ):
        url = db.database_url(database_url, Path(data_dir))
        db.upgrade(url)  # idempotent: a new data directory gets its schema, an old registry file migrates
        self.registry = Registry(make_engine(url))
        self.changes = Changes()
        self.credentials = credentials or Credentials()
        workers = local_workers or int(os.environ.get("QSCHED_GATEWAY_LOCAL_WORKERS", "2"))
        self.adapters = (
            adapters
            if adapters is not None
            else installed_adapters(self.credentials, self.registry, self.changes.notify, workers)
        )
        for adapter in self.adapters.values():
            adapter.registry = self.registry
        env_poll = os.environ.get("QSCHED_GATEWAY_POLL_SECONDS")
        self.poll_interval = poll_interval or (float(env_poll) if env_poll else None)
        self._request_locks: dict[str, asyncio.Lock] = {}
        self._listings: dict[str, asyncio.Future] = {}
        self.list_timeout = float(os.environ.get("QSCHED_GATEWAY_LIST_TIMEOUT_S", "10"))
        # Per provider bounds (limits.py); read from the environment once, replaceable by tests.
        self.limits = {name: limits.limits_for(name) for name in self.adapters}

    async def start(self) -> None:
        self.changes.bind(asyncio.get_running_loop())
        for adapter in self.adapters.values():
            await asyncio.to_thread(adapter.recover, self.registry)
        # Describing the local devices takes seconds of CPU: start now, off the request path.
        for name in ("local", "ibm"):
            if name in self.adapters:
                self._list_in_background(self.adapters[name]).add_done_callback(_ignore_failure)

    async def stop(self) -> None:
        for adapter in self.adapters.values():
            adapter.stop()
        self.registry.close()

    # providers and devices
    def providers(self) -> list[tuple[Adapter, bool, str]]:
        return [(a, *a.configured()) for a in self.adapters.values()]

    def adapter(self, provider: str) -> Adapter:
        adapter = self.adapters.get(provider)
        if adapter is None:
            raise unknown_provider(provider, sorted(self.adapters))
        return adapter

    async def list_devices(
        self, provider: str = "", names: Sequence[str] = ()
    ) -> tuple[list[DeviceInfo], dict[str, str]]:
        if names:  # a lookup of a few devices: resolve each, leave out the unknown ones
            found = []
            for name in names:
                with contextlib.suppress(DomainError):
                    found.append((await self.resolve(name))[1])
            return found, {}
        adapters = [self.adapter(provider)] if provider else list(self.adapters.values())
        listed = await asyncio.gather(*(self._listing(a) for a in adapters))
        devices: list[DeviceInfo] = []
        unavailable: dict[str, str] = {}
        for adapter, (found, reason) in zip(adapters, listed, strict=True):
            devices.extend(found)
            if reason:
                unavailable[adapter.name] = reason
        return devices, unavailable

    def _list_in_background(self, adapter: Adapter) -> asyncio.Future:
        """The adapter's listing under way (one at a time per adapter), on a thread of its own."""
        running = self._listings.get(adapter.name)
        if running is None or running.done():
            running = asyncio.ensure_future(asyncio.to_thread(adapter.list_devices))
            self._listings[adapter.name] = running
        return running

    async def _listing(self, adapter: Adapter) -> tuple[list[DeviceInfo], str]:
        """One provider's devices, waited for at most `list_timeout` seconds: a provider still listing
        (the fake backends' first description, a cloud API that does not answer) is reported
        unavailable instead of holding the whole answer; its listing goes on for the next call."""
        try:
            async with asyncio.timeout(self.list_timeout):
                found = await asyncio.shield(self._list_in_background(adapter))
            return list(found), ""
        except TimeoutError:
            return [], f"still listing its devices after {self.list_timeout:g} s; ask again shortly"
        except DomainError as error:
            return [], error.message
        except Exception as exc:
            return [], f"{type(exc).__name__}: {exc}"

    async def resolve(self, device: str) -> tuple[Adapter, DeviceInfo]:
        provider, sep, native = device.partition(":")
        if not sep or not native:
            raise unknown_device(device, "device names are '<provider>:<device>', e.g. local:aer_simulator")
        adapter = self.adapter(provider)
        try:
            info = await asyncio.to_thread(adapter.device, native)
        except DomainError:
            raise
        except Exception as exc:
            raise Unavailable(
                "PROVIDER_UNAVAILABLE", f"{provider}: cannot look up {native!r}: {exc}", device=device
            ) from exc
        return adapter, info

    # planning
    def _plan(self, info: DeviceInfo, workload: Workload) -> Plan:
        if workload.kind == "circuits":
            if not 0 < workload.shots <= MAX_SHOTS:
                raise invalid_program(f"shots must be between 1 and {MAX_SHOTS}, got {workload.shots}")
            circuits = load_circuits(workload.qasm, workload.qpy)
            counts = [estimate.two_qubit_gate_count(c) for c in circuits]
            part = Part("", {}, {}, 0, len(circuits), workload.shots, "", counts)
            return Plan("circuits", circuits, [part], workload.options)
        try:
            document = json.loads(workload.config_json)
        except ValueError as exc:
            raise invalid_config(f"not JSON: {exc}") from exc
        if workload.kind == "benchmark":
            entries = [("", document)]
            suite = None
        else:
            suite_name, entries = benchmarks.parse_suite(document)
            suite = {"id": str(uuid.uuid4()), "name": suite_name}
        validated = [(name, *benchmarks.validate(config, name)) for name, config in entries]
        circuits: list = []
        parts: list[Part] = []
        for name, bench, params in validated:
            built = bench.build(params, info)
            start = len(circuits)
            circuits.extend(built.circuits)
            counts = [estimate.two_qubit_gate_count(c) for c in built.circuits]
            parts.append(
                Part(
                    bench.name,
                    params,
                    built.data,
                    start,
                    len(circuits),
                    built.shots,
                    name or bench.name,
                    counts,
                )
            )
        return Plan(workload.kind, circuits, parts, workload.options, suite)

    async def plan(self, adapter: Adapter, info: DeviceInfo, workload: Workload) -> Plan:
        plan = await asyncio.to_thread(self._plan, info, workload)
        await asyncio.to_thread(self._check_limits, adapter, info, plan)
        widest = max((c.num_qubits for c in plan.circuits), default=0)
        if widest > info.qubits:
            raise FailedPrecondition(
                "DEVICE_TOO_SMALL",
                f"{info.name} has {info.qubits} qubits, the widest circuit needs {widest}",
                device=info.name,
                qubits=widest,
            )
        return plan

    def _check_limits(self, adapter: Adapter, info: DeviceInfo, plan: Plan) -> None:
        parts = [limits.Part(p.name, plan.circuits[p.start : p.end], p.shots) for p in plan.parts]
        noisy = bool(info.noise_model) or info.native.endswith("_dm")
        bounds = self.limits.get(adapter.name) or limits.limits_for(adapter.name)
        limits.check(adapter.name, parts, adapter.runs_here(info), noisy, bounds)

    async def validate(self, device: str, workload: Workload) -> Plan:
        """Everything Submit checks (device, config, limits, memory budget), sending nothing."""
        adapter, info = await self.resolve(device)
        return await self.plan(adapter, info, workload)

    async def estimate(self, device: str, workload: Workload) -> EstimateResult:
        adapter, info = await self.resolve(device)
        plan = await self.plan(adapter, info, workload)

        def counts() -> list[estimate.CircuitCounts]:
            return [
                estimate.count(plan.circuits[i], part.shots, part.name)
                for part in plan.parts
                for i in range(part.start, part.end)
            ]

        per_circuit = await asyncio.to_thread(counts)
        jobs = sum(adapter.tasks_for(part.end - part.start) for part in plan.parts)
        cost, unit, basis = adapter.cost(info, per_circuit, jobs)
        return EstimateResult(jobs, per_circuit, cost, unit, basis, plan.params_json())

    # submission
    async def submit(
        self, device: str, workload: Workload, job_id: str = "", request_id: str = ""
    ) -> tuple[Submission, bool, str]:
        lock = self._request_locks.setdefault(request_id, asyncio.Lock()) if request_id else asyncio.Lock()
        async with lock:
            existing = self.registry.submission_by_request(request_id)
            if existing is not None:
                return existing, True, _params_json_of(existing)
            adapter, info = await self.resolve(device)
            configured, _ = adapter.configured()
            if not configured:
                raise not_configured(adapter.name, ", ".join(adapter.credential_variables))
            plan = await self.plan(adapter, info, workload)
            submission_id = str(uuid.uuid4())
            labels = {"qsched_job_id": job_id, "qsched_submission_id": submission_id}
            records = []
            launches = []
            for part in plan.parts:
                try:
                    natives = await asyncio.to_thread(
                        adapter.submit,
                        info,
                        plan.circuits[part.start : part.end],
                        part.shots,
                        plan.options,
                        labels,
                    )
                except DomainError:
                    raise
                except Exception as exc:
                    raise ProviderError(
                        "PROVIDER_ERROR", f"{adapter.name} refused the submission: {exc}", device=device
                    ) from exc
                for native in natives:
                    records.append(
                        TaskRecord(
                            task_id=f"{adapter.name}/{native.native_id}",
                            submission_id=submission_id,
                            provider=adapter.name,
                            device=info.name,
                            native_id=native.native_id,
                            circuit_indices=[part.start + i for i in native.circuit_indices],
                            shots=part.shots,
                            state=native.state,
                            provider_status=native.provider_status,
                            meta={**native.meta, "job_id": job_id},
                        )
                    )
                    if native.launch:
                        launches.append(native.launch)
            spec = {
                "parts": [p.to_json() for p in plan.parts],
                "suite": plan.suite,
                "provider": adapter.name,
                "device_native": info.native,
                "device_metadata": info.metadata(),
                "params_json": plan.params_json(),
            }
            submission = Submission(
                submission_id,
                request_id or None,
                job_id,
                info.name,
                plan.kind,
                spec,
                [r.task_id for r in records],
            )
            self.registry.add_submission(submission, records)
            for launch in launches:
                launch()
            return submission, False, plan.params_json()

    # status
    def _records(self, task_ids: list[str], submission_id: str, device: str) -> list[TaskRecord]:
        if not task_ids:
            if not submission_id:
                raise InvalidArgument("NO_TASKS", "give task_ids or a submission_id")
            task_ids = self.registry.submission(submission_id).task_ids
        records = self.registry.tasks(list(dict.fromkeys(task_ids)))
        if device:
            for record in records:
                if record.device != device:
                    raise InvalidArgument(
                        "DEVICE_MISMATCH",
                        f"task {record.task_id} runs on {record.device}, not {device}",
                        task_id=record.task_id,
                    )
        return records

    async def _refresh(self, record: TaskRecord) -> TaskRecord:
        if record.terminal:
            return record
        adapter = self.adapters.get(record.provider)
        if adapter is None:
            return self.registry.update(
                record.task_id, record.state, message=f"provider {record.provider} is not installed here"
            )
        if adapter.tracks_in_registry:
            return self.registry.task(record.task_id)
        try:
            update = await asyncio.to_thread(adapter.status, record)
        except Exception as exc:
            log.info("status of %s unavailable: %s", record.task_id, exc)
            return self.registry.update(record.task_id, record.state, message=f"status unavailable: {exc}")
        return self.registry.update(
            record.task_id,
            update.state,
            provider_status=update.provider_status,
            message=update.message,
            queue_position=update.queue_position,
        )

    def _interval(self, records: list[TaskRecord]) -> float:
        if self.poll_interval:
            return self.poll_interval
        intervals = [self.adapters[r.provider].poll_interval for r in records if r.provider in self.adapters]
        return min(intervals, default=5.0)

    async def statuses(
        self, task_ids: list[str], submission_id: str = "", device: str = ""
    ) -> list[TaskRecord]:
        return [await self._refresh(r) for r in self._records(task_ids, submission_id, device)]

    async def watch(
        self, task_ids: list[str], submission_id: str = "", device: str = ""
    ) -> AsyncIterator[TaskRecord]:
        records = self._records(task_ids, submission_id, device)
        seen: dict[str, tuple] = {}
        while True:
            event = self.changes.current()
            records = [await self._refresh(r) for r in records]
            for record in records:
                key = (record.state, record.queue_position, record.provider_status, record.message)
                if seen.get(record.task_id) != key:
                    seen[record.task_id] = key
                    yield record
            pending = [r for r in records if not r.terminal]
            if not pending:
                return
            await self.changes.wait(event, self._interval(pending))

    async def cancel(
        self, task_ids: list[str], submission_id: str = "", device: str = ""
    ) -> list[TaskRecord]:
        out = []
        for record in self._records(task_ids, submission_id, device):
            record = await self._refresh(record)
            if not record.terminal:
                adapter = self.adapter(record.provider)
                try:
                    update = await asyncio.to_thread(adapter.cancel, record)
                except Exception as exc:
                    raise ProviderError(
                        "PROVIDER_ERROR", f"cancel of {record.task_id} failed: {exc}", task_id=record.task_id
                    ) from exc
                if not adapter.tracks_in_registry:
                    self.registry.update(
                        record.task_id,
                        update.state,
                        provider_status=update.provider_status,
                        message=update.message,
                        queue_position=update.queue_position,
                    )
                record = self.registry.task(record.task_id)
            out.append(record)
        return out

    # results
    async def fetch(self, task_ids: list[str], submission_id: str = "", device: str = "") -> FetchOutcome:
        records = [await self._refresh(r) for r in self._records(task_ids, submission_id, device)]
        waiting = [r.task_id for r in records if not r.terminal]
        if waiting:
            raise FailedPrecondition(
                "RESULT_NOT_READY", f"not finished yet: {', '.join(waiting)}", task_ids=",".join(waiting)
            )
        pairs: list[tuple[TaskRecord, TaskResultData | None]] = []
        for record in records:
            result = None
            if record.state == COMPLETED:
                result = self.registry.result(record.task_id)
                if result is None:
                    adapter = self.adapter(record.provider)
                    try:
                        result = await asyncio.to_thread(adapter.result, record)
                    except DomainError:
                        raise
                    except Exception as exc:
                        raise Unavailable(
                            "PROVIDER_UNAVAILABLE",
                            f"result of {record.task_id}: {exc}",
                            task_id=record.task_id,
                        ) from exc
                    # adapters number circuits within the task; the registry keeps submission indices
                    result.circuit_indices = [record.circuit_indices[i] for i in result.circuit_indices]
                    self.registry.save_result(record.task_id, result)
            pairs.append((record, result))
        submission_ids = {r.submission_id for r in records}
        owner = submission_id or (submission_ids.pop() if len(submission_ids) == 1 else "")
        scored = scoring = ""
        if owner:
            submission = self.registry.submission(owner)
            if submission.kind != "circuits" and {r.task_id for r in records} >= set(submission.task_ids):
                scored = await asyncio.to_thread(self._score, submission, pairs)
                spec = submission.spec
                scoring = json.dumps(
                    {"parts": spec["parts"], "suite": spec.get("suite")}, sort_keys=True, default=float
                )
        return FetchOutcome(pairs, scored, owner, scoring)

    def _score(self, submission: Submission, pairs: list[tuple[TaskRecord, TaskResultData | None]]) -> str:
        spec = submission.spec
        counts_by_index: dict[int, dict[str, int]] = {}
        seconds_by_index: dict[int, float] = {}
        meta_by_index: dict[int, dict] = {}
        failures: dict[int, TaskRecord] = {}
        for record, result in pairs:
            if result is None:
                for i in record.circuit_indices:
                    failures[i] = record
                continue
            share = result.execution_seconds / max(len(result.circuit_indices), 1)
            for position, (i, counts) in enumerate(zip(result.circuit_indices, result.counts, strict=True)):
                counts_by_index[i] = counts
                seconds_by_index[i] = share
                meta_by_index[i] = {"position": position, **result.metadata}
        records = []
        provider = spec["provider"]
        platform = {
            "provider": provider,
            "device": spec["device_native"],
            "device_metadata": spec["device_metadata"],
        }
        for part_json in spec["parts"]:
            part = Part(**part_json)
            indices = range(part.start, part.end)
            record = record_head(part.job_type, spec.get("suite"))
            failed = [failures[i] for i in indices if i in failures]
            transpiled = []
            for i in indices:
                meta = meta_by_index.get(i, {})
                tq = meta.get("transpiled_two_qubit_gate_counts")
                if tq is not None and meta.get("position") is not None and meta["position"] < len(tq):
                    transpiled.append(tq[meta["position"]])
            if failed:
                first = failed[0]
                record["outcome"] = "error"
                record["outcome_detail"] = {
                    "reason": first.state.lower(),
                    "error_message": f"{first.task_id}: {first.state} - {first.message}",
                    "source": "poll",
                }
            else:
                counts = [counts_by_index[i] for i in indices]
                runtime = sum(seconds_by_index[i] for i in indices)
                bench = benchmarks.get(part.job_type)
                context = benchmarks.ScoreContext(
                    execution_seconds=runtime, device_metadata=spec["device_metadata"]
                )
                try:
                    record["results"] = bench.score(part.params, part.data, counts, context)
                except Exception as exc:
                    log.warning("scoring %s failed: %s", part.job_type, exc)
                    record["outcome"] = "error"
                    record["outcome_detail"] = {
                        "reason": "scoring",
                        "error_message": str(exc),
                        "source": "poll",
                    }
                record["runtime_seconds"] = runtime
            record["platform"] = platform
            record["circuit_metadata"] = circuit_metadata(
                part.input_two_qubit_gate_counts, transpiled, part.data
            )
            records.append(record)
        document: Any = records if submission.kind == "suite" else records[0]
        return json.dumps(document, sort_keys=True, default=float)


def _ignore_failure(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # a failed warm-up is retried (and reported) by the next ListDevices


def _params_json_of(submission: Submission) -> str:
    return submission.spec.get("params_json", "")


def now() -> float:
    return time.time()
