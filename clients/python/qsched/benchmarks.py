"""metriq-gym benchmarks through qsched: config and suite files, results, export files, replay.

Light on purpose (json, hashlib, re, the generated protos and `qsched_benchmarks.export` only): the
CLI imports it for every benchmark verb. The one heavy function, `replay`, imports the benchmarks'
scoring code (`qsched_benchmarks.registry`, which needs the `local` extra) when it is called.

File formats (the same as metriq-gym's, so metriq-data tooling reads them):

- a job config file: a JSON object with `benchmark_name` and the benchmark's fields;
- a suite file: `{name, version?, description?, source?, references?, full_suite_warning?,
  benchmarks: [{name, component?, config}]}`;
- the `--json` export: one record (a suite: an array of records) `{app_version, timestamp, suite_id,
  job_type, results, runtime_seconds, platform, circuit_metadata}` (failure records carry `outcome`
  and `outcome_detail` instead of `results`);
- the `--include-raw` debug file `<name>_debug.json`: `{job_id, job_type, params, job_data,
  raw_results}` with the raw counts of every provider task.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched_benchmarks.export import circuit_metadata, record_head

SUITE_KEY = "benchmarks"
TOPOLOGY_BENCHMARKS = ("BSEQ", "Mirror Circuits")  # and Linear Ramp QAOA with graph_type NL


class ReplayError(ValueError):
    """A debug file cannot be replayed (missing data, or the scoring code is not installed)."""


# -- config and suite files ------------------------------------------------------------------------------
def _read_document(source: str | Path | dict[str, Any], what: str) -> tuple[dict[str, Any], str]:
    """(document, exact JSON text) of a file path, a JSON string or a dict."""
    if isinstance(source, dict):
        return source, json.dumps(source)
    text = str(source)
    if isinstance(source, Path) or not text.lstrip().startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{what} file {str(path)!r} not found") from None
        except IsADirectoryError:
            raise ValueError(f"{what} file {str(path)!r} is a directory") from None
        where = f"{what} file {str(path)!r}"
    else:
        where = what
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{where} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{where} must hold a JSON object")
    return document, text


def load_config(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A metriq-gym job config (path, JSON text or dict) -> (config, JSON text kept exactly).
    Only the shape is checked here; the gateway validates the fields (unknown keys are refused)."""
    config, text = _read_document(source, "config")
    if SUITE_KEY in config and "benchmark_name" not in config:
        raise ValueError("this is a suite file (it lists benchmarks): use `qsched suite dispatch`")
    name = config.get("benchmark_name")
    if not isinstance(name, str) or not name:
        raise ValueError('the config has no \'benchmark_name\' (e.g. "WIT", "BSEQ", "Mirror Circuits")')
    return config, text


def load_suite(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A metriq-gym suite file -> (suite, JSON text kept exactly)."""
    suite, text = _read_document(source, "suite")
    if "benchmark_name" in suite:
        raise ValueError("this is a job config, not a suite file: use `qsched job dispatch`")
    if not isinstance(suite.get("name"), str) or not suite["name"]:
        raise ValueError("the suite has no 'name'")
    entries = suite.get(SUITE_KEY)
    if not isinstance(entries, list) or not entries:
        raise ValueError("the suite's 'benchmarks' must be a non-empty list of {name, config}")
    return suite, text


def benchmark_payload(config_json: str) -> pb.JobPayload:
    return pb.JobPayload(benchmark=pb.BenchmarkConfig(config_json=config_json))


def suite_payload(suite_json: str) -> pb.JobPayload:
    return pb.JobPayload(benchmark=pb.BenchmarkConfig(suite_json=suite_json))


def device_name(provider: str | None, device: str | None) -> str:
    """`<provider>:<device>` from metriq-gym's -p/-d (a device already written `provider:device`
    is taken as it is when -p is omitted)."""
    provider = (provider or "").strip()
    device = (device or "").strip()
    if not device:
        raise ValueError("give the device with -d/--device (e.g. -p local -d aer_simulator)")
    if not provider:
        if ":" in device:
            return device
        raise ValueError("give the provider with -p/--provider (e.g. local, braket, ibm, ionq)")
    if device.startswith(provider + ":") and not device.startswith("arn:"):
        return device
    return f"{provider}:{device}"


def job_benchmark(job: pb.Job) -> tuple[str, dict[str, Any] | None]:
    """("config" | "suite" | "", the parsed document) of a BENCHMARK job's payload."""
    if job.payload.WhichOneof("payload") != "benchmark":
        return "", None
    bench = job.payload.benchmark
    text, kind = (bench.suite_json, "suite") if bench.suite_json else (bench.config_json, "config")
    try:
        document = json.loads(text) if text else {}
    except ValueError:
        document = {}
    return kind, document if isinstance(document, dict) else {}


def job_label(job: pb.Job) -> str:
    """What a job runs, for tables: benchmark name, `suite <name>`, circuits or the lab class."""
    which = job.payload.WhichOneof("payload")
    if which == "benchmark":
        kind, document = job_benchmark(job)
        document = document or {}
        if kind == "suite":
            return f"suite {document.get('name') or '?'}"
        return str(document.get("benchmark_name") or "benchmark")
    if which == "circuit":
        return f"{len(job.payload.circuit.qasm) or len(job.payload.circuit.qpy)} circuit(s)"
    if which == "lab_experiment":
        return job.payload.lab_experiment.experiment_class
    return "-"


# -- results ---------------------------------------------------------------------------------------------
TASK_STATES = {0: "UNKNOWN", 1: "QUEUED", 2: "RUNNING", 3: "COMPLETED", 4: "FAILED", 5: "CANCELLED"}


@dataclass
class TaskOutput:
    """One provider task's result: counts per circuit (submission-wide circuit indices)."""

    task_id: str
    state: str
    message: str = ""
    execution_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    counts: list[dict[str, int]] = field(default_factory=list)
    circuit_indices: list[int] = field(default_factory=list)


@dataclass
class Results:
    """What GetJobResult answered: per-task counts and, for benchmarks, metriq-gym export records."""

    job_id: str
    task_id: str
    tasks: list[TaskOutput]
    benchmark: Any = None  # a record (dict), a list of records (suite), or None (plain circuits)
    cached: bool = False
    fetch_time: datetime | None = None
    scoring: dict[str, Any] | None = None  # what the gateway scored with: {parts: [...], suite}

    @classmethod
    def from_response(cls, response: pb.GetJobResultResponse) -> Results:
        tasks = []
        for t in response.tasks:
            circuits = sorted(t.circuits, key=lambda c: c.index)
            try:
                metadata = json.loads(t.metadata_json) if t.metadata_json else {}
            except ValueError:
                metadata = {"raw": t.metadata_json}
            tasks.append(
                TaskOutput(
                    task_id=t.task_id,
                    state=TASK_STATES.get(t.state, str(t.state)),
                    message=t.message,
                    execution_seconds=t.execution_seconds,
                    metadata=metadata if isinstance(metadata, dict) else {"raw": metadata},
                    counts=[{k: int(v) for k, v in c.counts.items()} for c in circuits],
                    circuit_indices=[c.index for c in circuits],
                )
            )
        document = None
        if response.benchmark_results_json:
            document = json.loads(response.benchmark_results_json)
        fetched = None
        if response.HasField("fetch_time") and (response.fetch_time.seconds or response.fetch_time.nanos):
            fetched = response.fetch_time.ToDatetime(tzinfo=UTC)
        scoring = None
        if response.scoring_json:
            try:
                scoring = json.loads(response.scoring_json)
            except ValueError:
                scoring = None
        return cls(response.job_id, response.task_id, tasks, document, response.cached, fetched, scoring)

    @property
    def records(self) -> list[dict[str, Any]]:
        if self.benchmark is None:
            return []
        return list(self.benchmark) if isinstance(self.benchmark, list) else [self.benchmark]

    @property
    def is_suite(self) -> bool:
        return isinstance(self.benchmark, list)

    def export(self) -> Any:
        """What `poll --json` writes: metriq-gym's export (a record, or an array for a suite);
        for plain circuit jobs, the counts of every task."""
        if self.benchmark is not None:
            return self.benchmark
        return {
            "job_id": self.job_id,
            "task_id": self.task_id,
            "tasks": [
                {
                    "task_id": t.task_id,
                    "state": t.state,
                    "message": t.message,
                    "execution_seconds": t.execution_seconds,
                    "counts": t.counts,
                }
                for t in self.tasks
            ],
        }


def failure_record(job: pb.Job, message: str = "", reason: str = "") -> dict[str, Any]:
    """A metriq-gym 0.8.1-style failure record for a job that produced no benchmark record."""
    provider, _, device = job.device.partition(":")
    kind, document = job_benchmark(job)
    error_reason = reason or (job.error.reason if job.HasField("error") else "") or "error"
    error_message = message or (job.error.message if job.HasField("error") else "") or "no result"
    record = record_head((document or {}).get("benchmark_name") if kind == "config" else "suite")
    record.update(
        {
            "outcome": "error",
            "outcome_detail": {
                "reason": error_reason.lower(),
                "error_message": error_message,
                "source": "poll",
            },
            "platform": {"provider": provider, "device": device, "device_metadata": {}},
        }
    )
    return record


def write_json(path: str | Path, document: Any) -> Path:
    target = Path(path).expanduser()
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return target


def debug_path(json_path: str | Path) -> Path:
    """`result.json` -> `result_debug.json` (next to it)."""
    path = Path(json_path)
    return path.with_name(f"{path.stem}_debug{path.suffix or '.json'}")


def debug_document(job: pb.Job, results: Results) -> dict[str, Any]:
    """The `--include-raw` debug file: enough to re-score offline (`qsched job replay`)."""
    kind, document = job_benchmark(job)
    records = results.records
    run = job.current_run if job.HasField("current_run") else None
    first = records[0] if records else {}
    if kind == "suite":
        job_type = "suite"
    elif kind == "config":
        job_type = (document or {}).get("benchmark_name", "")
    else:
        job_type = "circuits"
    raw = []
    for t in results.tasks:
        widths = {len(key) for counts in t.counts for key in counts}
        shots = t.metadata.get("shots")
        if not isinstance(shots, int):
            shots = sum(t.counts[0].values()) if t.counts else 0
        raw.append(
            {
                "task_id": t.task_id,
                "state": t.state,
                "message": t.message,
                "shots": shots,
                "num_measured_qubits": max(widths) if widths else 0,
                "circuit_indices": t.circuit_indices,
                "measurement_counts": t.counts[0] if len(t.counts) == 1 else t.counts,
                "measurement_probabilities": None,
                "measurements": None,
                "execution_seconds": t.execution_seconds,
                "metadata": t.metadata,
            }
        )
    job_data = {
        "device": job.device,
        "provider_task_ids": list(run.provider_task_ids) if run is not None else [],
        "provider_submission_id": run.provider_submission_id if run is not None else "",
        "platform": first.get("platform"),
        "suite": first.get("suite"),
        "input_two_qubit_gate_counts": [
            n
            for r in records
            for n in (r.get("circuit_metadata") or {}).get("input_two_qubit_gate_counts", [])
        ],
        "transpiled_two_qubit_gate_counts": [
            n
            for r in records
            for n in (r.get("circuit_metadata") or {}).get("transpiled_two_qubit_gate_counts", [])
        ],
    }
    if results.scoring and isinstance(results.scoring.get("parts"), list):
        # What the gateway scored with (validated params, expected outcomes, drawn seeds, qubit chains,
        # circuit ranges): replay re-scores from these without rebuilding anything.
        job_data["parts"] = results.scoring["parts"]
        if results.scoring.get("suite") and not job_data["suite"]:
            job_data["suite"] = results.scoring["suite"]
    return {
        "job_id": job.job_id,
        "job_type": job_type,
        "params": document if document is not None else {},
        "job_data": job_data,
        "raw_results": raw,
    }


def result_rows(record: dict[str, Any]) -> list[list[str]]:
    """(metric, value) rows of one export record, for the terminal."""
    rows: list[list[str]] = []
    if "outcome" in record and "results" not in record:
        detail = record.get("outcome_detail") or {}
        rows.append(["outcome", str(record["outcome"])])
        rows.append(["reason", str(detail.get("reason", ""))])
        rows.append(["error", str(detail.get("error_message", ""))])
        return rows
    for name, value in (record.get("results") or {}).items():
        rows.append([name, format_value(value)])
    if record.get("runtime_seconds") is not None:
        rows.append(["runtime_seconds", format_value(record["runtime_seconds"])])
    return rows


def format_value(value: Any) -> str:
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "uncertainty"}:
        v, u = value.get("value"), value.get("uncertainty")
        if v is None:
            return "-"
        return f"{v:.6g} ± {u:.2g}" if isinstance(u, int | float) else f"{v:.6g}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        text = "[" + ", ".join(format_value(v) for v in value) + "]"
        return text if len(text) <= 70 else text[:67] + "..."
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 70 else text[:67] + "..."
    return str(value)


# -- metriq-data upload paths (the same directories and file names as metriq-gym) --------------------------
def path_component(value: str | None) -> str:
    """Lowercased, runs of characters outside [a-z0-9._-] turned into '_', '_' trimmed."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "_", (value or "unknown").strip().lower())
    return cleaned.strip("_") or "unknown"


def minor_series(version: str) -> str:
    """'0.8.1' -> 'v0.8'."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return f"v{match.group(1)}.{match.group(2)}" if match else f"v{version or 'unknown'}"


def default_upload_dir(version: str, provider: str, device: str) -> str:
    """metriq-data's layout under a root naming the producer: `qsched/v<major>.<minor>/...`.
    (Under `metriq-gym/` our version numbers would pass for metriq-gym releases.)"""
    return f"qsched/{minor_series(version)}/{path_component(provider)}/{path_component(device)}"


def payload_hash(payload: Any) -> str:
    """First 8 hex digits of sha256 over the compact, key-sorted JSON of the payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def upload_filename(dispatch_time: datetime | None, label: str, payload: Any) -> str:
    """`<YYYY-MM-DD_HH-MM-SS>_<label>_<hash>.json`; label = the job type or the suite name."""
    stamp = (dispatch_time or datetime.now(UTC)).strftime("%Y-%m-%d_%H-%M-%S")
    return f"{stamp}_{path_component(label)}_{payload_hash(payload)}.json"


def upload_records(job: pb.Job, results: Results) -> list[dict[str, Any]]:
    """The records to upload: the export records with `params` added (the job's config, or for a suite
    each entry's config)."""
    kind, document = job_benchmark(job)
    records = [dict(r) for r in results.records] or [failure_record(job)]
    if kind == "config":
        for record in records:
            record["params"] = document
    elif kind == "suite":
        entries = (document or {}).get(SUITE_KEY) or []
        for record, entry in zip(records, entries, strict=False):
            if isinstance(entry, dict):
                record["params"] = entry.get("config")
    return records


# -- replay ----------------------------------------------------------------------------------------------
def load_debug(path: str | Path) -> dict[str, Any]:
    document, _ = _read_document(Path(path), "debug")
    missing = [k for k in ("job_type", "params", "raw_results") if k not in document]
    if missing:
        raise ReplayError(
            f"{path} is not a debug file (no {', '.join(missing)}); write one with poll --include-raw"
        )
    return document


def flatten_counts(raw_results: list[dict[str, Any]]) -> list[dict[str, int]]:
    """Counts per circuit in submission order (circuit_indices when present, else file order)."""
    indexed: list[tuple[int, int, dict[str, int]]] = []
    order = 0
    for raw in raw_results:
        counts = raw.get("measurement_counts")
        if counts is None:
            continue
        items = counts if isinstance(counts, list) else [counts]
        indices = raw.get("circuit_indices") or []
        for position, item in enumerate(items):
            index = indices[position] if position < len(indices) else order
            indexed.append((index, order, {str(k): int(v) for k, v in item.items()}))
            order += 1
    return [c for _, _, c in sorted(indexed, key=lambda t: (t[0], t[1]))]


def _circuit_seconds(raw_results: list[dict[str, Any]]) -> dict[int, float]:
    """Device seconds per circuit index: each task's execution time shared among its circuits."""
    out: dict[int, float] = {}
    order = 0
    for raw in raw_results:
        counts = raw.get("measurement_counts")
        items = counts if isinstance(counts, list) else ([counts] if counts is not None else [])
        indices = raw.get("circuit_indices") or list(range(order, order + len(items)))
        share = float(raw.get("execution_seconds") or 0.0) / max(len(items), 1)
        for i in indices:
            out[i] = share
        order += len(items)
    return out


def _scoring():
    try:
        from qsched_benchmarks import registry
    except ImportError as error:
        raise ReplayError(
            f"replay needs the benchmarks' scoring code and the local extra ({error.name or error} is "
            "missing): pip install 'qsched[local]'"
        ) from None
    return registry


def _replay_device(document: dict[str, Any]):
    """The device the benchmark was built for: resolved offline for `local:` devices, else from the
    debug file's platform (coupling map only when the file has one)."""
    job_data = document.get("job_data") or {}
    platform = job_data.get("platform") or {}
    name = job_data.get("device") or f"{platform.get('provider', '')}:{platform.get('device', '')}"
    provider, _, native = name.partition(":")
    metadata = platform.get("device_metadata") or {}
    if provider == "local":
        try:
            from qsched_benchmarks.devices import local_device

            return local_device(native), True
        except ImportError:
            pass
        except Exception as error:
            raise ReplayError(f"cannot rebuild device {name}: {error}") from None
    coupling = job_data.get("coupling")
    qubits = int(metadata.get("num_qubits") or 0)
    if not qubits:
        raise ReplayError(f"the debug file does not say how many qubits {name or 'the device'} has")
    known = coupling is not None or bool(metadata.get("simulator"))
    from qsched_benchmarks.devices import DeviceInfo

    info = DeviceInfo(
        provider,
        native,
        qubits,
        coupling=[tuple(e) for e in coupling or []],
        simulator=bool(metadata.get("simulator")),
        version=str(metadata.get("version", "")),
    )
    return info, known


def _record(
    job_type: str,
    results: dict[str, Any],
    runtime: float,
    platform: dict[str, Any],
    suite: dict[str, Any] | None,
    input_counts: list[int],
    transpiled: list[int],
    data: dict[str, Any],
) -> dict[str, Any]:
    """One export record, built as the gateway builds it when it scores."""
    record = record_head(job_type, suite)
    record["results"] = json.loads(json.dumps(results, sort_keys=True, default=float))
    record["runtime_seconds"] = runtime
    record["platform"] = platform
    record["circuit_metadata"] = circuit_metadata(input_counts, transpiled, data)
    return record


def _score(gb, bench, label: str, params, data, counts, runtime, platform) -> dict[str, Any]:
    metadata = platform.get("device_metadata") or {}
    context = gb.ScoreContext(execution_seconds=runtime, device_metadata=metadata)
    try:
        return bench.score(params, data, counts, context)
    except ImportError as error:
        raise ReplayError(
            f"replay needs the local extra ({error.name or error} is missing): pip install 'qsched[local]'"
        ) from None
    except Exception as error:
        raise ReplayError(f"scoring {label} failed: {error}") from None


def _platform(job_data: dict[str, Any]) -> dict[str, Any]:
    platform = job_data.get("platform")
    if platform:
        return platform
    provider, _, device = str(job_data.get("device") or "").partition(":")
    return {"provider": provider, "device": device, "device_metadata": {}}


def _replay_parts(gb, document: dict[str, Any], parts: list[Any]) -> Any:
    """Re-score with what the gateway scored with (job_data.parts): nothing is rebuilt, so this works
    for any device, and for benchmarks that drew random numbers at dispatch."""
    raw = document.get("raw_results") or []
    counts = flatten_counts(raw)
    seconds = _circuit_seconds(raw)
    job_data = document.get("job_data") or {}
    platform = _platform(job_data)
    suite = job_data.get("suite")
    transpiled = job_data.get("transpiled_two_qubit_gate_counts") or []
    records = []
    for part in parts:
        if not isinstance(part, dict) or not {"job_type", "params", "data", "start", "end"} <= set(part):
            raise ReplayError("the debug file's job_data.parts are damaged (a part lacks its fields)")
        label = part.get("name") or part["job_type"]
        try:
            bench = gb.get(part["job_type"])
        except KeyError:
            raise ReplayError(f"no scoring code for {part['job_type']!r} ({label}) here") from None
        start, end = int(part["start"]), int(part["end"])
        if end > len(counts):
            raise ReplayError(
                f"the debug file holds counts for {len(counts)} circuits; {label} needs circuits "
                f"{start}..{end - 1}"
            )
        runtime = sum(seconds.get(i, 0.0) for i in range(start, end))
        results = _score(gb, bench, label, part["params"], part["data"], counts[start:end], runtime, platform)
        records.append(
            _record(
                bench.name,
                results,
                runtime,
                platform,
                suite,
                list(part.get("input_two_qubit_gate_counts") or []),
                transpiled[start:end] if len(transpiled) >= end else [],
                part["data"],
            )
        )
    return records if suite else records[0]


def replay(document: dict[str, Any]) -> Any:
    """Re-score a debug file offline with the gateway's scoring code: returns the export record (a list
    of records for a suite), as `poll --json` would have written it. With `job_data.parts` (what the
    gateway scored with) the counts are re-scored from those; an older file without them is rebuilt from
    its config and device."""
    gb = _scoring()
    params = document.get("params")
    if not isinstance(params, dict):
        raise ReplayError("the debug file's 'params' must be the job config (or the suite) as an object")
    parts = (document.get("job_data") or {}).get("parts")
    if isinstance(parts, list) and parts:
        return _replay_parts(gb, document, parts)
    is_suite = SUITE_KEY in params and "benchmark_name" not in params
    try:
        if is_suite:
            suite_name, entries = gb.parse_suite(params)
        else:
            suite_name, entries = "", [("", params)]
        validated = [(name, *gb.validate(config, name)) for name, config in entries]
    except Exception as error:  # the gateway's InvalidArgument: a config it would refuse
        raise ReplayError(
            f"the debug file's config is not valid: {getattr(error, 'message', error)}"
        ) from None
    device, topology_known = _replay_device(document)
    counts = flatten_counts(document.get("raw_results") or [])
    seconds = _circuit_seconds(document.get("raw_results") or [])
    job_data = document.get("job_data") or {}
    platform = job_data.get("platform") or {
        "provider": device.provider,
        "device": device.native,
        "device_metadata": device.metadata(),
    }
    suite = None
    if is_suite:
        suite = {"id": (job_data.get("suite") or {}).get("id"), "name": suite_name}
    transpiled = job_data.get("transpiled_two_qubit_gate_counts") or []
    records = []
    start = 0
    for name, bench, params_ in validated:
        needs_topology = bench.name in TOPOLOGY_BENCHMARKS or (
            bench.name == "Linear Ramp QAOA" and params_.get("graph_type") == "NL"
        )
        if needs_topology and not topology_known:
            raise ReplayError(
                f"{bench.name} depends on the coupling map of {device.name}, "
                "which this debug file does not hold"
            )
        if bench.name == "Mirror Circuits" and params_.get("seed") is None:
            raise ReplayError(
                "Mirror Circuits without a 'seed' drew random circuits at dispatch, and this debug file "
                "does not hold the drawn seed (job_data.parts): write it again with `qsched job poll "
                "--include-raw --no-cache`"
            )
        try:
            built = bench.build(params_, device)
        except ImportError as error:
            raise ReplayError(
                f"replay needs the local extra ({error.name or error} is missing): "
                "pip install 'qsched[local]'"
            ) from None
        except Exception as error:
            raise ReplayError(
                f"cannot rebuild {name or bench.name}: {getattr(error, 'message', error)}"
            ) from None
        end = start + len(built.circuits)
        if end > len(counts):
            raise ReplayError(
                f"the debug file holds counts for {len(counts)} circuits; {name or bench.name} needs "
                f"circuits {start}..{end - 1}"
            )
        runtime = sum(seconds.get(i, 0.0) for i in range(start, end))
        label = name or bench.name
        results = _score(gb, bench, label, params_, built.data, counts[start:end], runtime, platform)
        records.append(
            _record(
                bench.name,
                results,
                runtime,
                platform,
                suite,
                _two_qubit_counts(built.circuits),
                transpiled[start:end] if len(transpiled) >= end else [],
                built.data,
            )
        )
        start = end
    return records if is_suite else records[0]


def _two_qubit_counts(circuits: list) -> list[int]:
    from qsched_benchmarks.estimate import two_qubit_gate_count

    return [two_qubit_gate_count(c) for c in circuits]


__all__ = [
    "ReplayError",
    "Results",
    "TaskOutput",
    "benchmark_payload",
    "debug_document",
    "debug_path",
    "default_upload_dir",
    "device_name",
    "failure_record",
    "flatten_counts",
    "job_benchmark",
    "job_label",
    "load_config",
    "load_debug",
    "load_suite",
    "payload_hash",
    "replay",
    "suite_payload",
    "upload_filename",
    "upload_records",
    "write_json",
]
