-- Triggers: pipelines started by events (a `[trigger]` table). Each event
-- a trigger takes is recorded once per (trigger, dedupe key), in the
-- transaction that creates its run (or records why it waits or was not
-- started); the message is deleted only after that commit.
CREATE TABLE triggers (
    name       TEXT PRIMARY KEY,
    text       TEXT NOT NULL,
    sql_files  TEXT NOT NULL DEFAULT '{}',
    paused     INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE trigger_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger     TEXT NOT NULL,
    dedupe_key  TEXT NOT NULL,
    event_id    TEXT,
    body        TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    state       TEXT NOT NULL CHECK (state IN ('WAITING', 'STARTED', 'SKIPPED', 'DROPPED', 'FAILED')),
    run_id      TEXT,
    note        TEXT,
    received_at INTEGER NOT NULL,
    started_at  INTEGER,
    UNIQUE (trigger, dedupe_key)
);
CREATE INDEX trigger_events_waiting ON trigger_events (trigger, seq) WHERE state = 'WAITING';
CREATE INDEX trigger_events_run ON trigger_events (run_id);
