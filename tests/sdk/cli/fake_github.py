"""A local test double of the parts of GitHub's REST API that `qsched job upload` uses, on 127.0.0.1,
with local bare git repositories standing in for github.com (clone URLs are file:// URLs).

Routes: GET /user, GET /repos/{o}/{r}, POST /repos/{o}/{r}/forks, POST /repos/{o}/{r}/pulls,
POST /repos/{o}/{r}/issues/{n}/labels. Every request must carry `Authorization: Bearer <token>`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_bare_repo(root: Path, full_name: str, base: str = "main") -> Path:
    """A bare repository `root/<owner>/<name>.git` with one commit on `base`."""
    bare = root / f"{full_name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", f"--initial-branch={base}", str(bare))
    work = root / "seed-work"
    git("init", "--quiet", f"--initial-branch={base}", str(work))
    (work / "README.md").write_text("metriq-data (test)\n")
    git("add", "README.md", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "--quiet", "-m", "init", cwd=work)
    git("push", "--quiet", str(bare), f"HEAD:refs/heads/{base}", cwd=work)
    shutil.rmtree(work)
    return bare


class FakeGitHub:
    def __init__(self, root: Path, token: str = "test-token", login: str = "alice"):
        self.root = root
        self.token = token
        self.login = login
        self.repos: dict[str, dict] = {}  # full name -> {"push": bool}
        self.requests: list[dict] = []  # every request: method, path, body, auth
        self.pulls: list[dict] = []
        self.labels: dict[int, list[str]] = {}
        self.fail_pulls = False
        self._server: ThreadingHTTPServer | None = None

    def add_repo(self, full_name: str, push: bool = True, base: str = "main") -> Path:
        bare = make_bare_repo(self.root, full_name, base)
        self.repos[full_name] = {"push": push}
        return bare

    def bare(self, full_name: str) -> Path:
        return self.root / f"{full_name}.git"

    def _repo_json(self, full_name: str) -> dict:
        owner = full_name.split("/")[0]
        return {
            "full_name": full_name,
            "clone_url": self.bare(full_name).as_uri(),
            "default_branch": "main",
            "owner": {"login": owner},
            "permissions": {"push": self.repos[full_name]["push"], "pull": True},
        }

    def handle(self, method: str, path: str, body: dict | None, auth: str) -> tuple[int, dict]:
        self.requests.append({"method": method, "path": path, "body": body, "auth": auth})
        if auth != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}
        if method == "GET" and path == "/user":
            return 200, {"login": self.login}
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not m:
            return 404, {"message": "Not Found"}
        full, rest = m.group(1), m.group(2) or ""
        if full not in self.repos:
            return 404, {"message": "Not Found"}
        if method == "GET" and not rest:
            return 200, self._repo_json(full)
        if method == "POST" and rest == "/forks":
            fork = f"{self.login}/{full.split('/')[1]}"
            if fork not in self.repos:
                self.bare(fork).parent.mkdir(parents=True, exist_ok=True)
                git("clone", "--quiet", "--bare", str(self.bare(full)), str(self.bare(fork)))
                self.repos[fork] = {"push": True}
            return 202, self._repo_json(fork)
        if method == "POST" and rest == "/pulls":
            if self.fail_pulls:
                return 422, {"message": "Validation Failed"}
            number = len(self.pulls) + 1
            self.pulls.append({"repo": full, **(body or {})})
            return 201, {"number": number, "html_url": f"https://github.test/{full}/pull/{number}"}
        m = re.fullmatch(r"/issues/(\d+)/labels", rest)
        if method == "POST" and m:
            self.labels[int(m.group(1))] = list((body or {}).get("labels", []))
            return 200, [{"name": n} for n in self.labels[int(m.group(1))]]
        return 404, {"message": "Not Found"}

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, answer = fake.handle(method, self.path, body, self.headers.get("Authorization", ""))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def files_on(self, full_name: str, branch: str) -> list[str]:
        return git("--git-dir", str(self.bare(full_name)), "ls-tree", "-r", "--name-only", branch).split()

    def show(self, full_name: str, branch: str, path: str) -> str:
        return git("--git-dir", str(self.bare(full_name)), "show", f"{branch}:{path}")

    def branches(self, full_name: str) -> list[str]:
        out = git(
            "--git-dir", str(self.bare(full_name)), "for-each-ref", "--format=%(refname:short)", "refs/heads"
        )
        return out.split()
