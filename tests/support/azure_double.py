"""A local test double of an Azure Quantum workspace, speaking the wire protocol azure-quantum 3.x uses.

Data plane (under `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Quantum/workspaces/<ws>`,
every request with `?api-version=…` and the workspace key in `x-ms-quantum-api-key`):

- `GET  providerStatus`                  -> `{"value": [ProviderStatus], "nextLink": null}`
- `POST storage/sasUri`                  -> `{"sasUri": …}` for `{"containerName", "blobName"?}`
                                           (creates the container)
- `PUT  jobs/<id>`                       -> JobDetails (201); the input blob must exist and match the target
- `GET  jobs/<id>`                       -> JobDetails; each GET moves the job one step on
- `GET  jobs?filter=…&top=…&skip=…`      -> `{"value": [JobDetails], "nextLink": …}` (`Field eq 'v'` clauses)
- `POST jobs/<id>:cancel`                -> 204 (what the service answers; the SDK then GETs the job)
- `DELETE jobs/<id>`                     -> 204

Blob storage, path style as for a storage emulator (`/<account>/<container>/<blob>`), authorised by the SAS
query the double issued (HMAC over container, blob, permissions and expiry with the double's storage key):
`PUT` (BlockBlob, honours `If-None-Match: *`), `GET` (with `x-ms-range`/`Range`: 206 + `Content-Range`),
`HEAD`.

Jobs go Waiting -> Executing -> Succeeded (results are written to `<container>/rawOutputData` on success).
Job names steer the double: `HOLD` stays Waiting, `HOLD-EXECUTING` stays Executing, `FAIL` fails while
executing. Cancel of a Waiting job is immediate; of an Executing job it passes CancellationRequested and
Cancelling. Targets: `ionq.*` take `ionq.circuit.v1` (qis gateset; exact probabilities as
`{"histogram": {"<int>": p}}`, qubit 0 least significant), `quantinuum.*` take `honeywell.openqasm.v1`
(OpenQASM 2; per-shot bitstrings per classical register, bit 0 rightmost, sampled with a fixed seed; the
syntax checkers `*sc` answer all zeros)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support import ionq_qis

SUBSCRIPTION = "6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6b"
ACCOUNT = "qschedstore"
# provider id -> [(target id, qubits, input format, output format)]
TARGETS = {
    "ionq": [
        ("ionq.simulator", 29, "ionq.circuit.v1", "ionq.quantum-results.v1"),
        ("ionq.qpu.aria-1", 25, "ionq.circuit.v1", "ionq.quantum-results.v1"),
    ],
    "quantinuum": [
        ("quantinuum.sim.h2-1sc", 56, "honeywell.openqasm.v1", "honeywell.quantum-results.v1"),
        ("quantinuum.sim.h2-1e", 56, "honeywell.openqasm.v1", "honeywell.quantum-results.v1"),
    ],
    "rigetti": [("rigetti.sim.qvm", 20, "rigetti.quil.v1", "rigetti.quil-results.v1")],
}
EXECUTION = timedelta(milliseconds=12)  # the double's synthetic device time per job


class JobError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def simulate_ionq(program: dict) -> dict[str, float]:
    try:
        return ionq_qis.simulate(program)
    except ionq_qis.UnsupportedProgram as exc:
        raise JobError("InvalidInputData", str(exc)) from exc


def simulate_qasm2(source: str, shots: int) -> dict[str, list[str]]:
    import qiskit.qasm2
    from qiskit.providers.basic_provider import BasicSimulator

    try:
        qc = qiskit.qasm2.loads(source)
    except Exception as exc:
        raise JobError("InvalidInputData", f"OpenQASM 2 parse error: {exc}") from exc
    memory = BasicSimulator().run(qc, shots=shots, memory=True, seed_simulator=1234).result().get_memory()
    registers = list(qc.cregs)
    out: dict[str, list[str]] = {r.name: [] for r in registers}
    for shot in memory:  # qiskit: registers separated by spaces, last register first
        for register, bits in zip(reversed(registers), shot.split(" "), strict=True):
            out[register.name].append(bits)
    return out


class AzureQuantumDouble:
    def __init__(
        self,
        api_key: str = "double-workspace-key",
        resource_group: str = "qsched-rg",
        workspace: str = "qsched-ws",
        location: str = "eastus",
    ):
        self.api_key = api_key
        self.subscription_id = SUBSCRIPTION
        self.resource_group = resource_group
        self.workspace = workspace
        self.location = location
        self.storage_key = uuid.uuid4().bytes
        self.jobs: dict[str, dict] = {}
        self.containers: set[str] = set()
        self.blobs: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without query)
        self.seen_keys: list[str] = []  # every x-ms-quantum-api-key header value received
        self.lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body=None, headers: dict | None = None, raw: bytes | None = None):
                data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if body is not None and raw is None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _route(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with double.lock:
                    double.requests.append((self.command, parts.path))
                    if parts.path.startswith("/subscriptions/"):
                        reply = double.data_plane(self.command, parts.path, query, dict(self.headers), body)
                    else:
                        reply = double.storage(self.command, parts.path, query, dict(self.headers), body)
                self._reply(*reply)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _route

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # settings a client needs
    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Quantum/Workspaces/{self.workspace}"
        )

    def connection_string(self, api_key: str | None = None) -> str:
        """The portal's connection string form (its endpoint must be https://<region>.quantum.azure.com/;
        point the client at the double with the endpoint override)."""
        return (
            f"SubscriptionId={self.subscription_id};ResourceGroupName={self.resource_group};"
            f"WorkspaceName={self.workspace};ApiKey={api_key or self.api_key};"
            f"QuantumEndpoint=https://{self.location}.quantum.azure.com/;"
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # data plane
    @staticmethod
    def _error(code: int, error_code: str, message: str):
        return code, {"error": {"code": error_code, "message": message}}

    def data_plane(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        prefix = (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Quantum/workspaces/{self.workspace}/"
        )
        if not path.lower().startswith(prefix.lower()):
            return self._error(404, "WorkspaceNotFound", "no such workspace")
        key = {k.lower(): v for k, v in headers.items()}.get("x-ms-quantum-api-key")
        if key is not None:
            self.seen_keys.append(key)
        if key != self.api_key:
            return self._error(401, "Unauthorized", "The access key is invalid or missing.")
        if "api-version" not in query:
            return self._error(400, "MissingApiVersionParameter", "api-version is required")
        rest = path[len(prefix) :].split("/")
        payload = json.loads(body) if body else None
        if rest == ["providerStatus"] and method == "GET":
            return 200, {"value": self._provider_status(), "nextLink": None}
        if rest == ["storage", "sasUri"] and method == "POST":
            container = payload["containerName"]
            self.containers.add(container)
            return 200, {"sasUri": self.sas_uri(container, payload.get("blobName"))}
        if rest == ["jobs"] and method == "GET":
            return self._list(query)
        if len(rest) == 2 and rest[0] == "jobs":
            job_id, _, action = rest[1].partition(":")
            if method == "PUT" and not action:
                return self._create(job_id, payload)
            job = self.jobs.get(job_id)
            if job is None:
                return self._error(404, "JobNotFound", f"job {job_id} not found")
            if method == "GET" and not action:
                self._advance(job)
                return 200, self._details(job)
            if method == "POST" and action == "cancel":
                return self._cancel(job)
            if method == "DELETE" and not action:
                del self.jobs[job_id]
                return 204, None
        return self._error(404, "NotFound", f"{method} {path}")

    def _provider_status(self) -> list[dict]:
        return [
            {
                "id": provider,
                "currentAvailability": "Available",
                "targets": [
                    {
                        "id": target,
                        "currentAvailability": "Degraded" if ".qpu." in target else "Available",
                        "averageQueueTime": 5 if ".sim" in target else 3600,
                        "statusPage": f"https://status.example/{target}",
                        "numQubits": qubits,
                    }
                    for target, qubits, _, _ in targets
                ],
            }
            for provider, targets in TARGETS.items()
        ]

    @staticmethod
    def _target(target: str) -> tuple[str, int, str, str] | None:
        for targets in TARGETS.values():
            for item in targets:
                if item[0] == target:
                    return item
        return None

    def _create(self, job_id: str, details: dict | None):
        if job_id in self.jobs:
            return self._error(409, "JobAlreadyExists", f"job {job_id} exists")
        required = (
            "containerUri",
            "inputDataUri",
            "inputDataFormat",
            "outputDataFormat",
            "providerId",
            "target",
            "itemType",
        )
        missing = [k for k in required if not (details or {}).get(k)]
        if missing:
            return self._error(400, "InvalidJobDefinition", f"missing {', '.join(missing)}")
        if details.get("id") not in (None, job_id):
            return self._error(400, "InvalidJobDefinition", "id does not match the URL")
        target = self._target(details["target"])
        if target is None or not details["target"].lower().startswith(details["providerId"].lower() + "."):
            return self._error(400, "InvalidTarget", f"target {details['target']!r} is not in this workspace")
        if (details["inputDataFormat"], details["outputDataFormat"]) != target[2:]:
            return self._error(
                400,
                "InvalidJobDefinition",
                f"{details['target']} takes {target[2]} -> {target[3]}, got "
                f"{details['inputDataFormat']} -> {details['outputDataFormat']}",
            )
        input_blob = self._blob_key(urlsplit(details["inputDataUri"]).path)
        if input_blob not in self.blobs:
            return self._error(400, "InvalidInputData", "the input data blob does not exist")
        container = input_blob[0]
        job = {
            "id": job_id,
            "name": details.get("name") or "job",
            "providerId": details["providerId"],
            "target": details["target"],
            "itemType": "Job",
            "jobType": "QuantumComputing",
            "containerUri": self.blob_url(container),  # stored without the caller's SAS
            "inputDataUri": self.blob_url(*input_blob),
            "inputDataFormat": details["inputDataFormat"],
            "outputDataFormat": details["outputDataFormat"],
            "outputDataUri": self.blob_url(container, "rawOutputData"),
            "inputParams": details.get("inputParams") or {},
            "metadata": details.get("metadata"),
            "tags": details.get("tags") or [],
            "sessionId": details.get("sessionId"),
            "status": "Waiting",
            "creationTime": _rfc3339(datetime.now(UTC)),
            "createdBy": "key",
            "createdByType": "Key",
        }
        self.jobs[job_id] = job
        return 201, self._details(job)

    @staticmethod
    def _details(job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _advance(self, job: dict) -> None:
        status, name = job["status"], job["name"]
        if status == "Waiting" and name != "HOLD":
            job["status"] = "Executing"
            job["_begin"] = datetime.now(UTC)
            job["beginExecutionTime"] = _rfc3339(job["_begin"])
        elif status == "Executing" and name != "HOLD-EXECUTING":
            if name == "FAIL":
                self._finish(
                    job, "Failed", JobError("ExecutionFailed", "the double was told to fail this job")
                )
                return
            try:
                self._run(job)
            except JobError as error:
                self._finish(job, "Failed", error)
                return
            self._finish(job, "Succeeded")
        elif status == "CancellationRequested":
            job["status"] = "Cancelling"
        elif status == "Cancelling":
            job["status"] = "Cancelled"
            job["cancellationTime"] = _rfc3339(datetime.now(UTC))

    def _finish(self, job: dict, status: str, error: JobError | None = None) -> None:
        job["status"] = status
        job["endExecutionTime"] = _rfc3339(job["_begin"] + EXECUTION)
        if error is not None:
            job["errorData"] = {"code": error.code, "message": error.message}
        if job["target"] == "ionq.simulator" and status == "Succeeded":
            job["costEstimate"] = {"currencyCode": "USD", "events": [], "estimatedTotal": 0.0}

    def _run(self, job: dict) -> None:
        blob = self.blobs[self._blob_key(urlsplit(job["inputDataUri"]).path)]
        shots = job["inputParams"].get("shots")
        if not isinstance(shots, int) or shots < 1:
            raise JobError("InvalidInputData", "inputParams.shots must be a positive integer")
        if job["inputDataFormat"] == "ionq.circuit.v1":
            result = {"histogram": simulate_ionq(json.loads(blob["data"]))}
        else:
            result = simulate_qasm2(blob["data"].decode(), shots)
            if job["target"].endswith("sc"):  # a syntax checker runs nothing: every bit reads 0
                result = {name: ["0" * len(s) for s in shots_] for name, shots_ in result.items()}
        container, _ = self._blob_key(urlsplit(job["outputDataUri"]).path)
        self._put_blob(container, "rawOutputData", json.dumps(result).encode(), "application/json")

    def _cancel(self, job: dict):
        if job["status"] in ("Succeeded", "Failed", "Cancelled"):
            return self._error(409, "InvalidJobState", f"job {job['id']} is already {job['status']}")
        if job["status"] == "Waiting":
            job["status"] = "Cancelled"
            job["cancellationTime"] = _rfc3339(datetime.now(UTC))
        elif job["status"] == "Executing":
            job["status"] = "CancellationRequested"
        return 204, None

    def _list(self, query: dict):
        clauses = []
        for group in (query.get("filter") or "").split(" and "):
            alternatives = re.findall(r"(\w+) eq '([^']*)'", group)
            if alternatives:
                clauses.append(alternatives)
        fields = {"Name": "name", "State": "status", "Target": "target", "ProviderId": "providerId"}

        def matches(job: dict) -> bool:
            return all(any(job.get(fields.get(f, f)) == v for f, v in alts) for alts in clauses)

        selected = [self._details(j) for j in self.jobs.values() if matches(j)]
        skip, top = int(query.get("skip", 0)), int(query.get("top", 100))
        page = selected[skip : skip + top]
        next_link = None
        if skip + top < len(selected):
            next_link = (
                f"{self.endpoint}{self.resource_id[1:].replace('Workspaces', 'workspaces')}/jobs?"
                f"api-version={query['api-version']}&skip={skip + top}&top={top}"
            )
            if query.get("filter"):
                from urllib.parse import quote

                next_link += f"&filter={quote(query['filter'])}"
        return 200, {"value": page, "nextLink": next_link}

    # storage
    def _sign(self, container: str, blob: str, permissions: str, expiry: str) -> str:
        message = f"{ACCOUNT}\n{container}\n{blob}\n{permissions}\n{expiry}".encode()
        return base64.b64encode(hmac.new(self.storage_key, message, hashlib.sha256).digest()).decode()

    def blob_url(self, container: str, blob: str = "") -> str:
        return f"{self.endpoint}{ACCOUNT}/{container}" + (f"/{blob}" if blob else "")

    def sas_uri(self, container: str, blob: str | None = None) -> str:
        expiry = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        permissions, scope = ("r", "b") if blob else ("racw", "c")
        sig = self._sign(container, blob or "", permissions, expiry)
        from urllib.parse import quote

        query = f"sv=2025-07-05&se={quote(expiry)}&sr={scope}&sp={permissions}&sig={quote(sig, safe='')}"
        return f"{self.blob_url(container, blob or '')}?{query}"

    @staticmethod
    def _blob_key(path: str) -> tuple[str, str]:
        parts = path.lstrip("/").split("/", 2)
        return (parts[1], parts[2]) if len(parts) == 3 else (parts[1] if len(parts) > 1 else "", "")

    @staticmethod
    def _storage_error(code: int, error_code: str, message: str):
        xml = (
            '<?xml version="1.0" encoding="utf-8"?><Error>'
            f"<Code>{error_code}</Code><Message>{message}</Message></Error>"
        ).encode()
        return code, None, {"x-ms-error-code": error_code, "Content-Type": "application/xml"}, xml

    def _authorised(self, container: str, blob: str, query: dict, need: str) -> bool:
        scope, permissions, expiry = query.get("sr"), query.get("sp", ""), query.get("se", "")
        if scope not in ("b", "c") or need not in permissions or not query.get("sig"):
            return False
        if datetime.fromisoformat(expiry.replace("Z", "+00:00")) <= datetime.now(UTC):
            return False
        signed_blob = blob if scope == "b" else ""
        expected = self._sign(container, signed_blob, permissions, expiry)
        return hmac.compare_digest(expected, query["sig"])

    def _put_blob(self, container: str, blob: str, data: bytes, content_type: str) -> dict:
        now = datetime.now(UTC)
        entry = {
            "data": data,
            "content_type": content_type,
            "etag": f'"0x{uuid.uuid4().hex[:15].upper()}"',
            "modified": format_datetime(now, usegmt=True),
        }
        self.blobs[(container, blob)] = entry
        return entry

    def _blob_headers(self, entry: dict) -> dict:
        return {
            "ETag": entry["etag"],
            "Last-Modified": entry["modified"],
            "x-ms-blob-type": "BlockBlob",
            "x-ms-version": "2025-07-05",
            "x-ms-server-encrypted": "true",
            "Accept-Ranges": "bytes",
            "Content-Type": entry["content_type"],
        }

    def storage(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        parts = path.lstrip("/").split("/", 2)
        if len(parts) != 3 or parts[0] != ACCOUNT:
            return self._storage_error(400, "InvalidUri", "expected /<account>/<container>/<blob>")
        _, container, blob = parts
        lower = {k.lower(): v for k, v in headers.items()}
        need = "w" if method == "PUT" else "r"
        if not self._authorised(container, blob, query, need):
            return self._storage_error(403, "AuthenticationFailed", "Signature did not match or expired.")
        if container not in self.containers:
            return self._storage_error(404, "ContainerNotFound", "The specified container does not exist.")
        entry = self.blobs.get((container, blob))
        if method == "PUT":
            if lower.get("x-ms-blob-type") != "BlockBlob":
                return self._storage_error(400, "InvalidHeaderValue", "x-ms-blob-type must be BlockBlob")
            if entry is not None and lower.get("if-none-match") == "*":
                return self._storage_error(409, "BlobAlreadyExists", "The specified blob already exists.")
            content_type = lower.get("x-ms-blob-content-type", "application/octet-stream")
            entry = self._put_blob(container, blob, body, content_type)
            return 201, None, {"ETag": entry["etag"], "Last-Modified": entry["modified"]}
        if entry is None:
            return self._storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        data = entry["data"]
        out = self._blob_headers(entry)
        if method == "HEAD":
            out["Content-Length"] = str(len(data))
            return 200, None, out, b""
        ranged = lower.get("x-ms-range") or lower.get("range")
        if ranged:
            start, _, end = ranged.removeprefix("bytes=").partition("-")
            first = int(start)
            last = min(int(end) if end else len(data) - 1, len(data) - 1)
            if first >= len(data):
                return self._storage_error(416, "InvalidRange", "The range specified is invalid.")
            out["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            return 206, None, out, data[first : last + 1]
        return 200, None, out, data
