-- Attempts can be closed without a statement (CANCELLED: the job was
-- cancelled or failed while the attempt was being submitted), so that a
-- retry never reuses an abandoned ClientToken. SQLite cannot change a CHECK
-- in place: the table is rebuilt (nothing references it).
CREATE TABLE attempts_new (
    job_id       INTEGER NOT NULL REFERENCES jobs (id),
    attempt      INTEGER NOT NULL,
    client_token TEXT NOT NULL UNIQUE,
    statement_id TEXT UNIQUE,
    state        TEXT NOT NULL CHECK (state IN ('SUBMITTING', 'SUBMITTED', 'FINISHED', 'FAILED',
                                                 'ABORTED', 'CANCELLED')),
    started_at   INTEGER NOT NULL,
    submitted_at INTEGER,
    finished_at  INTEGER,
    rows         INTEGER,
    error        TEXT,
    PRIMARY KEY (job_id, attempt),
    CHECK ((state IN ('FINISHED', 'FAILED', 'ABORTED', 'CANCELLED')) = (finished_at IS NOT NULL))
);
INSERT INTO attempts_new SELECT job_id, attempt, client_token, statement_id, state, started_at,
    submitted_at, finished_at, rows, error FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;
CREATE INDEX attempts_open ON attempts (state, submitted_at) WHERE state IN ('SUBMITTING', 'SUBMITTED');

-- A timeout asked the Data API to cancel the statement at this time; the
-- attempt ends when the statement truly ends (event or DescribeStatement).
ALTER TABLE jobs ADD COLUMN timed_out_at INTEGER;
-- When the statement's results expire (the event's expireAt, in ms).
ALTER TABLE jobs ADD COLUMN expire_at INTEGER;
-- The first row of the job's last result set, as a JSON object: upstream
-- parameters read it here instead of the result file.
ALTER TABLE jobs ADD COLUMN first_row TEXT;
-- Retention removed the job's result files (and their rows) at this time.
ALTER TABLE jobs ADD COLUMN results_pruned_at INTEGER;
CREATE INDEX events_received ON events (received_at);

-- Attempts an earlier version left SUBMITTING after their job moved on
-- (cancelled or failed during a submission) are closed now.
UPDATE attempts SET state = 'CANCELLED',
    finished_at = COALESCE((SELECT finished_at FROM jobs WHERE jobs.id = attempts.job_id), started_at),
    error = COALESCE(error, 'closed: the job left this attempt while it was being submitted')
WHERE state = 'SUBMITTING' AND NOT EXISTS (
    SELECT 1 FROM jobs j WHERE j.id = attempts.job_id AND j.state = 'READY' AND j.attempt = attempts.attempt);
