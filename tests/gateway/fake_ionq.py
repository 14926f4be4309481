"""A local test double of IonQ's REST API v0.4 (the subset the gateway uses): POST /jobs,
GET /jobs/<id>, GET /jobs/<id>/results/probabilities, PUT /jobs/<id>/status/cancel, GET /backends,
with `Authorization: apiKey <key>`. Each GET of a job advances it submitted -> ready -> started ->
completed unless the job's metadata asks it to hold. Results come from a statevector of the posted
ionq.circuit.v1 program."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.ionq_qis import simulate

FLOW = ["submitted", "ready", "started", "completed"]


class FakeIonQ:
    def __init__(self, key: str = "test-key"):
        self.key = key
        self.jobs: dict[str, dict] = {}
        self.seen_auth: list[str] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                auth = self.headers.get("Authorization", "")
                fake.seen_auth.append(auth)
                if auth != f"apiKey {fake.key}":
                    return self._send(401, {"error": "unauthorized"})
                parts = self.path.split("?")[0].strip("/").split("/")[1:]  # drop the version segment
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with fake.lock:
                    return self._send(*fake.handle(method, parts, body))

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PUT(self):
                self._route("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v0.4"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, method: str, parts: list[str], body):
        if parts == ["backends"]:
            return 200, [
                {"backend": "simulator", "status": "available", "qubits": 29, "average_queue_time": 0},
                {"backend": "qpu.aria-1", "status": "available", "qubits": 25, "average_queue_time": 1000},
            ]
        if method == "POST" and parts == ["jobs"]:
            job_id = str(uuid.uuid4())
            self.jobs[job_id] = {"id": job_id, "status": "submitted", "body": body, "step": 0}
            return 200, {"id": job_id, "status": "submitted"}
        if not parts or parts[0] != "jobs" or len(parts) < 2 or parts[1] not in self.jobs:
            return 404, {"error": "not found"}
        job = self.jobs[parts[1]]
        if method == "PUT" and parts[2:] == ["status", "cancel"]:
            job["status"] = "canceled"
            return 200, {"id": job["id"], "status": "canceled"}
        if parts[2:] == ["results", "probabilities"]:
            if job["status"] != "completed":
                return 400, {"error": "not completed"}
            return 200, simulate(job["body"]["input"])
        hold = job["body"]["metadata"].get("qsched_job_id") == "HOLD"
        if job["status"] in FLOW and not (hold and job["status"] == "ready"):
            job["status"] = FLOW[min(FLOW.index(job["status"]) + 1, len(FLOW) - 1)]
        out = {
            "id": job["id"],
            "status": job["status"],
            "metadata": job["body"]["metadata"],
            "backend": job["body"]["backend"],
        }
        if job["status"] == "completed":
            out["results"] = {"probabilities": {"url": f"/v0.4/jobs/{job['id']}/results/probabilities"}}
            out["stats"] = {"qubits": job["body"]["input"]["qubits"]}
            out["execution_time"] = 12
        return 200, out

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
