"""Events across replicas (issue 15, item 2): on PostgreSQL every transaction that inserts events
sends one `NOTIFY qsched_events` as it commits (a deferred trigger; so it is delivered on commit,
never for a rolled-back change), with a payload naming who wrote them and which event ids:

    <application_name of the writer>|<ids>      ids: "17" or "17-20", comma-separated

A replica's listener reads those rows from the event table (the source of truth) and publishes
them to its watchers (qsched_scheduler/replica_events.py). A payload longer than NOTIFY allows
becomes `<origin>|*`: "catch up from the table". SQLite: nothing (one process, in-process bus).

Revision ID: 0018_event_notify
Revises: 0017_event_log
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_event_notify"
down_revision: str | Sequence[str] | None = "0017_event_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Per row: the new id is added to a transaction-local list (a batch submit inserts its events
# row by row: one notification each would be hundreds per commit).
COLLECT = """
CREATE OR REPLACE FUNCTION qsched_events_collect() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text := current_setting('qsched.event_ids', true);
BEGIN
    IF ids IS NULL OR ids = '' THEN
        PERFORM set_config('qsched.event_ids', NEW.id::text, true);
    ELSE
        PERFORM set_config('qsched.event_ids', ids || ',' || NEW.id::text, true);
    END IF;
    RETURN NULL;
END
$$
"""

# At commit (a deferred trigger), once: the list as ranges, in one notification.
NOTIFY = """
CREATE OR REPLACE FUNCTION qsched_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text;
BEGIN
    ids := current_setting('qsched.event_ids', true);
    IF ids IS NULL OR ids = '' THEN
        RETURN NULL;  -- sent already by this transaction's first row
    END IF;
    PERFORM set_config('qsched.event_ids', '', true);
    -- consecutive ids as ranges: a batch of 1,000 submits is usually one "a-b"
    SELECT string_agg(CASE WHEN lo = hi THEN lo::text ELSE lo::text || '-' || hi::text END, ','
                      ORDER BY lo)
      INTO ids
      FROM (SELECT min(id) AS lo, max(id) AS hi
              FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS grp
                      FROM (SELECT DISTINCT unnest(string_to_array(ids, ','))::bigint AS id) AS u) AS s
             GROUP BY grp) AS r;
    IF length(ids) > 7000 THEN
        ids := '*';
    END IF;
    PERFORM pg_notify('qsched_events', coalesce(current_setting('application_name', true), '') || '|' || ids);
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    """
    CREATE TRIGGER qsched_events_collect AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION qsched_events_collect()
    """,
    """
    CREATE CONSTRAINT TRIGGER qsched_events_notify AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION qsched_events_notify()
    """,
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(COLLECT)
    op.execute(NOTIFY)
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS qsched_events_notify ON events")
    op.execute("DROP TRIGGER IF EXISTS qsched_events_collect ON events")
    op.execute("DROP FUNCTION IF EXISTS qsched_events_notify()")
    op.execute("DROP FUNCTION IF EXISTS qsched_events_collect()")
