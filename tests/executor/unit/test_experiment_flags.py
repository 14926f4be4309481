"""The experiment repository's flags reach the executor's config, and `qsched up` forwards them."""

from __future__ import annotations

import argparse

import pytest

from qsched_ops.args import add_common_arguments, config_from_args, forward_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    return parser.parse_args(list(argv))


FLAGS = (
    "--experiment-repo",
    "/srv/lab",
    "--experiment-repo-root",
    "src",
    "--experiment-cache",
    "/var/cache/x",
    "--dirty-tree",
    "refuse",
)


def test_flags_to_config_and_forwarded():
    args = parse(*FLAGS)
    config = config_from_args("executor", args)
    assert (
        config.experiment_repo,
        config.experiment_repo_root,
        config.experiment_cache,
        config.dirty_tree,
    ) == (
        "/srv/lab",
        "src",
        "/var/cache/x",
        "refuse",
    )
    forwarded = forward_args(args)
    assert " ".join(FLAGS) in " ".join(forwarded)
    assert config_from_args("executor", parse(*forwarded)) == config


def test_defaults_and_bad_policy(monkeypatch):
    monkeypatch.delenv("QSCHED_EXPERIMENT_REPO", raising=False)
    config = config_from_args("executor", parse())
    assert (config.experiment_repo, config.dirty_tree) == ("", "flag")
    assert not [f for f in forward_args(parse()) if f.startswith(("--experiment-repo", "--dirty"))]
    with pytest.raises(SystemExit):
        parse("--dirty-tree", "ignore")


def test_the_sources_the_flags_make(tmp_path):
    from qsched_executor.experiment_code import sources_from_config
    from qsched_executor.experiment_repo import DirtyPolicy, RepositoryUnavailable
    from tests.support.gitrepo import GitRepo

    lab = GitRepo(tmp_path / "lab")
    lab.commit({"labx/__init__.py": ""})
    plain = sources_from_config(config_from_args("executor", parse("--dirty-tree", "refuse")))
    assert plain.repository is None and plain.dirty_policy is DirtyPolicy.REFUSE
    args = parse(
        "--data-dir",
        str(tmp_path / "data"),
        "--experiment-package",
        "labx",
        "--experiment-repo",
        str(lab.path),
    )
    sources = sources_from_config(config_from_args("executor", args))
    assert sources.repository.cache_dir == tmp_path / "data" / "experiment-cache"
    assert sources.allowed == ("labx",) and sources.dirty_policy is DirtyPolicy.FLAG
    assert sources.resolve("labx.mod").commit == lab.head()
    with pytest.raises(RepositoryUnavailable):
        sources_from_config(config_from_args("executor", parse("--experiment-repo", str(tmp_path / "none"))))
