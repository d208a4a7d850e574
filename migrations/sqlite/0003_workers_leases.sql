-- Workers that share this ledger, with their heartbeat, and the leader's
-- lease (with SQLite the one worker is the leader).
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    -- The worker's HTTP listener (/metrics, /healthz, /readyz), if any.
    listen       TEXT
);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- The worker submitting an attempt (NULL once it let go after a throttled
-- call): another worker resumes it only when that worker is gone.
ALTER TABLE attempts ADD COLUMN claimed_by TEXT;

-- The worker fetching a FINISHED job's results: one worker fetches them,
-- another takes over when that one is gone.
ALTER TABLE jobs ADD COLUMN fetch_by TEXT;

-- redrelay's own events ("Job State Change", "Run State Change"), written
-- in the transaction that changes the state and published to EventBridge
-- by the leader: never lost, at least once. `event_id` is the id
-- downstream consumers deduplicate on.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    detail_type  TEXT NOT NULL CHECK (detail_type IN ('Job State Change', 'Run State Change')),
    detail       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    published_at INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Schedules: a pipeline file's text (and the SQL files it names), fired by
-- the leader; each firing recorded once per (schedule, fire time), so a
-- change of leader never fires twice.
CREATE TABLE schedules (
    name            TEXT PRIMARY KEY,
    text            TEXT NOT NULL,
    sql_files       TEXT NOT NULL DEFAULT '{}',
    paused          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- Firing counts from here (added, changed or resumed): a pause is never caught up.
    effective_since INTEGER NOT NULL,
    last_fired_at   INTEGER
);
CREATE TABLE schedule_fires (
    schedule  TEXT NOT NULL,
    fire_time INTEGER NOT NULL,
    run_id    TEXT,
    note      TEXT,
    fired_at  INTEGER NOT NULL,
    PRIMARY KEY (schedule, fire_time)
);
ALTER TABLE runs ADD COLUMN schedule TEXT;
