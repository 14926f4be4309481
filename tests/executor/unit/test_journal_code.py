"""The crash journal keeps the code a run's terminal update names (issue 20): restored after a
restart, the update a scheduler replays still says which code ran."""

from __future__ import annotations

from qsched_core.execution import Accepted, Cancelled, DataRef, Failed, Started, Succeeded
from qsched_executor.journal import Journal
from qsched_executor.runs import Run
from tests.support.provenance import repository_code

CODE = repository_code("repolab", "1.1")


def test_terminal_updates_keep_their_code_through_the_journal(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.recover(1.0)
    ends = {
        "t-ok": Succeeded(DataRef("a.h5", "ab" * 32, 10), {"value": 1.0}, {}, CODE),
        "t-failed": Failed("PROGRAM_ERROR", "boom", CODE),
        "t-cancelled": Cancelled("user", 2, DataRef("b.h5"), CODE),
        "t-plain": Failed("PROGRAM_ERROR", "before its experiment was loaded"),
    }
    for task, end in ends.items():
        run = Run(task, "JOB-1", "alice")
        run.append(Accepted(), 1.0)
        run.append(Started(), 2.0)
        journal.board_run(run)
        journal.update(run.append(end, 3.0))
    journal.close()

    restored = {run.task_id: run for run in Journal(tmp_path / "journal.jsonl").recover(4.0)}
    assert {task: run.updates[-1].body for task, run in restored.items()} == ends


def test_journal_lines_are_the_dataclass_form_of_each_update():
    # The journal's own encoder (no deep copy) writes what `asdict` would, code flattened, and
    # never a data file's live copy (Succeeded.inline_data).
    from dataclasses import asdict

    from qsched_core.execution import Output, Progress
    from qsched_executor.journal import _body_to_json

    bodies = [
        Accepted(),
        Started(),
        Progress(1, 4, 10, 0.25),
        Output(("line 1", "line 2"), 3),
        Succeeded(DataRef("a.h5", "ab" * 32, 10), {"value": 1.0}, {"qubit.f": 2.0}, CODE),
        Succeeded(),
        Succeeded(DataRef("c.h5", "cd" * 32, 3), inline_data=b"abc"),
        Failed("PROGRAM_ERROR", "boom", CODE),
        Failed("PROGRAM_ERROR"),
        Cancelled("user", 2, DataRef("b.h5"), CODE, preempted=True, resumable=True),
        Cancelled(),
    ]
    for body in bodies:
        expected = {"kind": body.kind.value, **asdict(body)}
        expected.pop("inline_data", None)
        if getattr(body, "code", None) is not None:
            expected["code"] = body.code.to_dict()
        assert _body_to_json(body) == expected
