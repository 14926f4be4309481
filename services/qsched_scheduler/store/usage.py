"""The run history fair share starts from (fair_share.Usage.load): every run that ended after
a given time, with its owner, device and time on the device."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qsched_core.sql import read_only
from qsched_scheduler.fair_share import UsedTime
from qsched_scheduler.store.models import JobRow, RunRow


class SqlUsageHistory:
    def __init__(self, engine: Engine):
        self._reader = read_only(engine)

    def since(self, since: datetime) -> list[UsedTime]:
        query = (
            select(JobRow.owner, JobRow.device, RunRow.start_time, RunRow.end_time)
            .join(JobRow, RunRow.job_pk == JobRow.id)
            .where(RunRow.end_time > since, RunRow.start_time.is_not(None))
        )
        with Session(self._reader) as session:
            return [
                UsedTime(owner, device, end, max(0.0, (end - start).total_seconds()))
                for owner, device, start, end in session.execute(query)
            ]
