"""`qsched job upload` / `qsched suite upload` against local bare git repositories and a local test double
of GitHub's REST API (QSCHED_GITHUB_API_URL)."""

from __future__ import annotations

import json
import re

import pytest

from tests.sdk.cli.conftest import wait_done
from tests.sdk.cli.fake_github import FakeGitHub

REPO = "test-org/metriq-data"


@pytest.fixture
def github(tmp_path_factory, monkeypatch):
    fake = FakeGitHub(tmp_path_factory.mktemp("github"))
    fake.add_repo(REPO, push=True)
    monkeypatch.setenv("QSCHED_GITHUB_API_URL", fake.start())
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    for name in ("MGYM_UPLOAD_REPO", "MGYM_UPLOAD_BASE_BRANCH", "MGYM_UPLOAD_DIR", "MGYM_UPLOAD_CLONE_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def finished(fake_scheduler, tmp_path_factory):
    """Job ids of a finished WIT job and a finished suite job (owner alice)."""
    from qsched.client import JobClient
    from tests.sdk.cli.conftest import SUITE, WIT

    _, address = fake_scheduler
    with JobClient(address) as client:
        wit = client.dispatch_benchmark(WIT, "local:aer_simulator", owner="alice")
        suite = client.dispatch_suite(SUITE, "local:aer_simulator", owner="alice")
    wait_done(address, wit)
    wait_done(address, suite)
    return {"wit": wit, "suite": suite}


NAME = re.compile(r"^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_(?P<label>[a-z0-9._-]+)_(?P<hash>[0-9a-f]{8})\.json$")


def test_upload_opens_a_pull_request(qsched, github, finished):
    job_id = finished["wit"]
    code, out, err = qsched("job", "upload", job_id, "--repo", REPO)
    assert code == 0, err
    assert "✓ pull request opened: https://github.test/test-org/metriq-data/pull/1" in out
    branch = f"qsched/upload-{job_id}"
    assert branch in github.branches(REPO)
    files = [f for f in github.files_on(REPO, branch) if f.startswith("qsched/")]
    assert len(files) == 1
    directory, name = files[0].rsplit("/", 1)
    assert directory == "qsched/v0.1/local/aer_simulator"
    match = NAME.match(name)
    assert match and match.group("label") == "wit"
    records = json.loads(github.show(REPO, branch, files[0]))
    assert isinstance(records, list) and len(records) == 1
    assert records[0]["job_type"] == "WIT" and records[0]["params"]["benchmark_name"] == "WIT"
    from qsched.benchmarks import payload_hash

    assert match.group("hash") == payload_hash(records[0])
    pull = github.pulls[0]
    assert pull["head"] == branch and pull["base"] == "main"
    assert pull["title"] == "qsched upload: WIT on local/aer_simulator" and job_id in pull["body"]
    assert github.labels[1] == ["data", "source:qsched"]
    assert all(r["auth"] == "Bearer test-token" for r in github.requests)
    # the token is not kept in the clone's config or in the pushed commit's remote
    assert github.token not in github.show(REPO, branch, files[0])

    # a second upload of the same job gets the next free branch name
    code, out, err = qsched("job", "upload", job_id, "--repo", REPO, "--title", "again", "--body", "b")
    assert code == 0, err
    assert f"{branch}-2" in github.branches(REPO)
    assert github.pulls[1]["title"] == "again" and github.pulls[1]["body"] == "b"


def test_upload_through_a_fork_without_push_access(qsched, github, finished, monkeypatch):
    github.add_repo("upstream/data", push=False)
    monkeypatch.setenv("MGYM_UPLOAD_REPO", "upstream/data")
    monkeypatch.setenv("MGYM_UPLOAD_DIR", "custom/dir")
    code, _out, err = qsched("job", "upload", finished["wit"], "--branch", "my-branch")
    assert code == 0, err
    assert "alice/data" in github.repos and "my-branch" in github.branches("alice/data")
    assert "my-branch" not in github.branches("upstream/data")
    assert any(f.startswith("custom/dir/") for f in github.files_on("alice/data", "my-branch"))
    pull = github.pulls[-1]
    assert pull["repo"] == "upstream/data" and pull["head"] == "alice:my-branch"


def test_suite_upload_writes_one_file_with_an_array(qsched, github, finished):
    code, _out, err = qsched("suite", "upload", finished["suite"], "--repo", REPO)
    assert code == 0, err
    branch = next(b for b in github.branches(REPO) if b.startswith("qsched/upload-suite-"))
    files = [f for f in github.files_on(REPO, branch) if f.startswith("qsched/")]
    assert len(files) == 1 and NAME.match(files[0].rsplit("/", 1)[1]).group("label") == "small_suite"
    records = json.loads(github.show(REPO, branch, files[0]))
    assert [r["job_type"] for r in records] == ["WIT", "QML Kernel"]
    assert records[1]["params"]["benchmark_name"] == "QML Kernel"
    assert branch == f"qsched/upload-suite-{records[0]['suite']['id']}"
    assert github.pulls[-1]["title"] == "qsched upload: suite small_suite on local/aer_simulator"


def test_dry_run_touches_nothing(qsched, github, finished, tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    code, out, err = qsched("job", "upload", finished["wit"], "--dry-run", "--clone-dir", str(tmp_path / "w"))
    assert code == 0, err
    assert "DRY-RUN: wrote" in out and github.requests == []
    written = list((tmp_path / "w").rglob("*.json"))
    assert len(written) == 1 and "qsched/v0.1/local/aer_simulator" in written[0].as_posix()


def test_upload_failures_are_one_line(qsched, github, finished, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    code, _, err = qsched("job", "upload", finished["wit"], "--repo", REPO)
    assert code == 2 and "GITHUB_TOKEN" in err and err.count("\n") == 1
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    code, _, err = qsched("job", "upload", finished["wit"], "--repo", REPO)
    assert code == 2 and "401" in err and err.count("\n") == 1
    monkeypatch.setenv("GITHUB_TOKEN", github.token)
    code, _, err = qsched("job", "upload", finished["wit"], "--repo", "test-org/nothing")
    assert code == 2 and "404" in err
    github.fail_pulls = True
    code, _, err = qsched("job", "upload", finished["wit"], "--repo", REPO)
    assert code == 2 and "compare/main...qsched/upload-" in err and err.count("\n") == 1
