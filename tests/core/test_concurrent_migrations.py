"""Any number of processes may start on one fresh database at the same moment (replicas, a compose
file bringing the stack up): the migrations serialize instead of racing on the version table."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from qsched_configs import db as configs_db
from qsched_identity import db as identity_db
from qsched_scheduler import db as scheduler_db

PROCESSES = 6
MIGRATE = """
import sys
import time
from qsched_configs import db as configs_db
from qsched_identity import db as identity_db
from qsched_scheduler import db as scheduler_db
url, start_at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))  # a start line: every process goes at the same moment
for module in (scheduler_db, configs_db, identity_db):
    module.upgrade(url)
"""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_processes_migrating_one_fresh_database_together_all_succeed(backend, request, tmp_path):
    if backend == "sqlite":
        url = f"sqlite:///{(tmp_path / 'shared.db').as_posix()}"
    else:
        url = request.getfixturevalue("postgres_databases")()
    start_at = time.time() + 5  # after every interpreter has started and imported
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    failed = [out for proc, out in zip(procs, outputs, strict=True) if proc.returncode != 0]
    assert not failed, failed[0][-3000:]
    for module in (scheduler_db, configs_db, identity_db):
        assert module.current(url) == module.head()
