-- Every state change of a job or a run, one row each, written by triggers
-- whichever process made it (a worker, another worker, the CLI): the API's
-- event stream (GET /api/v1/events) and the console read them in order.
-- Retention deletes rows older than retention_days.
CREATE TABLE changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN ('job', 'run')),
    job_id       INTEGER,
    run_id       TEXT,
    state        TEXT NOT NULL,
    attempt      INTEGER,
    result_state TEXT,
    at           INTEGER NOT NULL
);
CREATE INDEX changes_at ON changes (at);

CREATE TRIGGER jobs_change_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO changes (kind, job_id, run_id, state, attempt, result_state, at)
    VALUES ('job', NEW.id, NEW.run_id, NEW.state, NEW.attempt, NEW.result_state,
            CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER jobs_change_update AFTER UPDATE OF state, attempt, result_state ON jobs
WHEN OLD.state IS NOT NEW.state OR OLD.attempt IS NOT NEW.attempt
     OR OLD.result_state IS NOT NEW.result_state
BEGIN
    INSERT INTO changes (kind, job_id, run_id, state, attempt, result_state, at)
    VALUES ('job', NEW.id, NEW.run_id, NEW.state, NEW.attempt, NEW.result_state,
            CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER runs_change_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO changes (kind, run_id, state, at)
    VALUES ('run', NEW.id, NEW.state, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER runs_change_update AFTER UPDATE OF state ON runs
WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO changes (kind, run_id, state, at)
    VALUES ('run', NEW.id, NEW.state, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
