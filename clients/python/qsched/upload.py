"""Upload benchmark records to a metriq-data style GitHub repository through a pull request.

Same layout and file names as metriq-gym's `mgym job upload`, under a root that names the producer:
`qsched/v<major>.<minor>/<provider>/<device>/<YYYY-MM-DD_HH-MM-SS>_<job type>_<hash8>.json` (a JSON
array of records, newest first); `--dir` puts it anywhere else.

Flow: GitHub API `GET /repos/{repo}` (clone URL, may the token push?) and `GET /user`; without push
access a fork is used (`POST /repos/{repo}/forks`); shallow clone of the base branch; a new branch
(`qsched/upload-<job id>`, `-2`, `-3`... when taken); write, commit, push; `POST /repos/{repo}/pulls`;
labels. The token (`GITHUB_TOKEN`, else `GH_TOKEN`) goes to git in an HTTP header through the
environment, never on a command line or in a remote URL.

Settings: `--repo` / `MGYM_UPLOAD_REPO` (default unitaryfoundation/metriq-data), `--base` /
`MGYM_UPLOAD_BASE_BRANCH` (main), `--dir` / `MGYM_UPLOAD_DIR`, `--clone-dir` / `MGYM_UPLOAD_CLONE_DIR`;
`QSCHED_GITHUB_API_URL` (default https://api.github.com) points the API calls elsewhere (a GitHub
Enterprise server, or a test double).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from qsched import benchmarks

DEFAULT_REPO = "unitaryfoundation/metriq-data"
DEFAULT_BASE = "main"
DEFAULT_API_URL = "https://api.github.com"
BRANCH_PREFIX = "qsched/upload-"
LABELS = ("data", "source:qsched")
MAX_BRANCH_SUFFIX = 999
FORK_WAIT_TRIES = 10


class UploadError(Exception):
    """The upload could not be done; the message says which step failed and why."""


@dataclass
class UploadOptions:
    repo: str = ""
    base: str = ""
    directory: str = ""
    branch: str = ""
    title: str = ""
    body: str = ""
    commit_message: str = ""
    clone_dir: str = ""
    dry_run: bool = False
    labels: tuple[str, ...] = LABELS

    def resolved(self) -> UploadOptions:
        """Empty settings filled from the MGYM_UPLOAD_* environment, then the defaults."""
        env = os.environ
        repo = self.repo or env.get("MGYM_UPLOAD_REPO") or DEFAULT_REPO
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise UploadError(f"--repo must be OWNER/NAME, got {repo!r}")
        return UploadOptions(
            repo=repo,
            base=self.base or env.get("MGYM_UPLOAD_BASE_BRANCH") or DEFAULT_BASE,
            directory=self.directory or env.get("MGYM_UPLOAD_DIR") or "",
            branch=self.branch,
            title=self.title,
            body=self.body,
            commit_message=self.commit_message,
            clone_dir=self.clone_dir or env.get("MGYM_UPLOAD_CLONE_DIR") or "",
            dry_run=self.dry_run,
            labels=self.labels,
        )


@dataclass
class Upload:
    """What to upload: the records and what names them."""

    records: list[dict[str, Any]]
    ref: str  # job id, or the suite id for a suite
    label: str  # job type, or the suite name: the file name's middle part
    provider: str
    device: str
    dispatch_time: datetime | None
    version: str
    suite: bool = False
    job_id: str = ""

    @property
    def payload(self) -> Any:
        return self.records if self.suite else self.records[0]

    def directory(self) -> str:
        return benchmarks.default_upload_dir(self.version, self.provider, self.device)

    def filename(self) -> str:
        return benchmarks.upload_filename(self.dispatch_time, self.label, self.payload)

    def default_branch(self) -> str:
        return f"{BRANCH_PREFIX}suite-{self.ref}" if self.suite else f"{BRANCH_PREFIX}{self.ref}"

    def default_title(self) -> str:
        what = f"suite {self.label}" if self.suite else self.label
        title = f"qsched upload: {what} on {self.provider}/{self.device}"
        outcomes = sorted({str(r["outcome"]) for r in self.records if r.get("outcome")})
        if outcomes:
            title += f" ({', '.join(outcomes)})"
        return title

    def default_body(self, path: str) -> str:
        lines = [
            f"Benchmark results from qsched (metriq-gym export format), job {self.job_id or self.ref}.",
            "",
            f"- device: `{self.provider}:{self.device}`",
            f"- file: `{path}`",
        ]
        for record in self.records:
            score = (record.get("results") or {}).get("score")
            if isinstance(score, dict) and score.get("value") is not None:
                shown = benchmarks.format_value(score)
            elif record.get("outcome"):
                shown = f"outcome {record['outcome']}"
            else:
                shown = "no score"
            lines.append(f"- {record.get('job_type', '?')}: {shown}")
        return "\n".join(lines) + "\n"


@dataclass
class UploadOutcome:
    repo: str
    path: str  # the file's path inside the repository
    branch: str
    title: str
    pr_url: str = ""
    compare_url: str = ""
    local_file: str = ""  # dry run: where the file was written
    dry_run: bool = False
    messages: list[str] = field(default_factory=list)


# -- GitHub REST API -------------------------------------------------------------------------------------
class GitHub:
    def __init__(self, token: str, api_url: str | None = None, timeout: float = 30.0):
        self.token = token
        self.api_url = (api_url or os.environ.get("QSCHED_GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body); network failures raise UploadError."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", "2022-11-28")
        request.add_header("User-Agent", "qsched")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UploadError(f"cannot reach the GitHub API at {self.api_url}: {reason}") from None

    def expect(self, method: str, path: str, body: dict[str, Any] | None = None, what: str = "") -> Any:
        status, data = self.call(method, path, body)
        if 200 <= status < 300:
            return data
        message = data.get("message") if isinstance(data, dict) else str(data or "")
        hint = " (check GITHUB_TOKEN)" if status in (401, 403) else ""
        raise UploadError(f"{what or method + ' ' + path}: GitHub answered {status} {message}{hint}".rstrip())


def _decode(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")[:200]}


def github_token() -> str:
    return os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or ""


# -- git -------------------------------------------------------------------------------------------------
class Git:
    def __init__(self, token: str):
        self.env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "LC_ALL": "C"}
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            # An HTTP header for every https remote, passed through the environment (not argv, not
            # the remote URL): the token never shows in `ps`, in .git/config or in an error message.
            count = int(self.env.get("GIT_CONFIG_COUNT", "0") or 0)
            self.env[f"GIT_CONFIG_KEY_{count}"] = "http.extraHeader"
            self.env[f"GIT_CONFIG_VALUE_{count}"] = f"Authorization: Basic {basic}"
            self.env["GIT_CONFIG_COUNT"] = str(count + 1)
        self.token = token

    def run(self, *args: str, cwd: str | Path | None = None, check: bool = True) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=300
            )
        except FileNotFoundError:
            raise UploadError("git is not installed (it is needed to upload)") from None
        except subprocess.TimeoutExpired:
            raise UploadError(f"git {args[0]} did not finish in 300 s") from None
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            text = detail[-1] if detail else f"exit status {done.returncode}"
            if self.token:
                text = text.replace(self.token, "***")
            raise UploadError(f"git {args[0]} failed: {text}")
        return done.stdout

    def branch_exists(self, repo_dir: Path, remote: str, branch: str) -> bool:
        return bool(self.run("ls-remote", "--heads", remote, f"refs/heads/{branch}", cwd=repo_dir).strip())

    def free_branch(self, repo_dir: Path, remote: str, branch: str) -> str:
        if not self.branch_exists(repo_dir, remote, branch):
            return branch
        for n in range(2, MAX_BRANCH_SUFFIX + 1):
            candidate = f"{branch}-{n}"
            if not self.branch_exists(repo_dir, remote, candidate):
                return candidate
        raise UploadError(f"branches {branch} to {branch}-{MAX_BRANCH_SUFFIX} all exist; pass --branch")


# -- the upload ------------------------------------------------------------------------------------------
def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the array, newest first; records already in an existing file are kept after them."""
    existing: list[Any] = []
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            existing = loaded if isinstance(loaded, list) else [loaded]
        except ValueError:
            existing = []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records + existing, indent=2) + "\n", encoding="utf-8")


def upload(item: Upload, options: UploadOptions, say: Callable[[str], None] = print) -> UploadOutcome:
    opts = options.resolved()
    directory = opts.directory.strip("/") or item.directory()
    repo_path = f"{directory}/{item.filename()}" if directory else item.filename()
    branch = opts.branch or item.default_branch()
    title = opts.title or item.default_title()
    body = opts.body or item.default_body(repo_path)
    message = opts.commit_message or title
    owner, name = opts.repo.split("/")
    outcome = UploadOutcome(opts.repo, repo_path, branch, title, dry_run=opts.dry_run)

    if opts.dry_run:
        if opts.clone_dir:
            Path(opts.clone_dir).mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="qsched-dryrun-", dir=opts.clone_dir or None))
        target = root / name / repo_path
        write_records(target, item.records)
        outcome.local_file = str(target)
        say(f"DRY-RUN: wrote {target}")
        say(f"  would clone {opts.repo} (base {opts.base}), add {repo_path} on branch {branch},")
        say(f"  push it and open a pull request titled: {title}")
        return outcome

    token = github_token()
    if not token:
        raise UploadError("no GitHub token: set GITHUB_TOKEN (or GH_TOKEN), or use --dry-run")
    api = GitHub(token)
    upstream = api.expect("GET", f"/repos/{owner}/{name}", what=f"repository {opts.repo}")
    status, user = api.call("GET", "/user")
    login = user.get("login", "") if status == 200 and isinstance(user, dict) else ""
    can_push = bool((upstream.get("permissions") or {}).get("push"))
    clone_url = upstream.get("clone_url") or f"https://github.com/{opts.repo}.git"
    push_url = clone_url
    head_prefix = ""
    if not can_push:
        if not login:
            raise UploadError("GitHub did not say who the token belongs to (GET /user); cannot fork")
        push_url = _fork(api, owner, name, login, say)
        head_prefix = f"{login}:"

    workdir_made = not opts.clone_dir
    root = Path(tempfile.mkdtemp(prefix="qsched-upload-")) if workdir_made else Path(opts.clone_dir)
    root.mkdir(parents=True, exist_ok=True)
    repo_dir = root / name
    if repo_dir.exists():
        repo_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    git = Git(token)
    try:
        say(f"cloning {opts.repo} (branch {opts.base})")
        git.run("clone", "--quiet", "--depth", "1", "--branch", opts.base, clone_url, str(repo_dir))
        remote = "origin"
        if push_url != clone_url:
            git.run("remote", "add", "fork", push_url, cwd=repo_dir)
            remote = "fork"
        branch = git.free_branch(repo_dir, remote, branch)
        outcome.branch = branch
        git.run("checkout", "--quiet", "-b", branch, cwd=repo_dir)
        write_records(repo_dir / repo_path, item.records)
        git.run("add", "--", repo_path, cwd=repo_dir)
        identity: list[str] = []
        if not git.run("config", "user.email", cwd=repo_dir, check=False).strip():
            who = login or "qsched"
            identity = ["-c", f"user.name={who}", "-c", f"user.email={who}@users.noreply.github.com"]
        git.run(*identity, "commit", "--quiet", "-m", message, cwd=repo_dir)
        say(f"pushing branch {branch}")
        git.run("push", "--quiet", remote, f"HEAD:refs/heads/{branch}", cwd=repo_dir)
    finally:
        if workdir_made:
            shutil.rmtree(root, ignore_errors=True)

    head = head_prefix + branch
    outcome.compare_url = f"https://github.com/{owner}/{name}/compare/{opts.base}...{head}?expand=1"
    status, pr = api.call(
        "POST",
        f"/repos/{owner}/{name}/pulls",
        {"title": title, "head": head, "base": opts.base, "body": body},
    )
    if status not in (200, 201) or not isinstance(pr, dict) or not pr.get("html_url"):
        detail = pr.get("message", "") if isinstance(pr, dict) else ""
        raise UploadError(
            f"branch {branch} was pushed but opening the pull request failed ({status} {detail}); "
            f"open it by hand: {outcome.compare_url}"
        )
    outcome.pr_url = pr["html_url"]
    if opts.labels and pr.get("number"):
        status, _ = api.call(
            "POST", f"/repos/{owner}/{name}/issues/{pr['number']}/labels", {"labels": list(opts.labels)}
        )
        if status not in (200, 201):
            outcome.messages.append(f"labels not added ({status})")
    return outcome


def _fork(api: GitHub, owner: str, name: str, login: str, say: Callable[[str], None]) -> str:
    """The clone URL of the user's fork, created when missing."""
    status, fork = api.call("GET", f"/repos/{login}/{name}")
    if status == 200 and isinstance(fork, dict) and fork.get("clone_url"):
        return fork["clone_url"]
    say(f"forking {owner}/{name} to {login}")
    created = api.expect("POST", f"/repos/{owner}/{name}/forks", {"default_branch_only": True}, "fork")
    full_name = created.get("full_name") or f"{login}/{name}"
    for attempt in range(FORK_WAIT_TRIES):
        status, fork = api.call("GET", f"/repos/{full_name}")
        if status == 200 and isinstance(fork, dict) and fork.get("clone_url"):
            return fork["clone_url"]
        if attempt + 1 < FORK_WAIT_TRIES:
            time.sleep(1.0)  # GitHub creates forks asynchronously
    raise UploadError(f"the fork {full_name} did not appear after {FORK_WAIT_TRIES} s; try again")


__all__ = ["Upload", "UploadError", "UploadOptions", "UploadOutcome", "github_token", "upload"]
