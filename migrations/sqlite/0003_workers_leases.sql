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
