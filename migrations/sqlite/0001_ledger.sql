-- redrelay ledger: jobs, their attempts and dependencies, pipeline runs,
-- the inbox of consumed events and fetched results. Times are epoch
-- milliseconds. Every state change is a guarded UPDATE in one transaction.

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('RUNNING', 'FINISHED', 'FAILED', 'CANCELLED')),
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    CHECK ((state = 'RUNNING') = (finished_at IS NULL))
);

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Random per job: ClientTokens and StatementNames derive from it, so they
    -- never collide with another ledger's within the Data API's 8 h memory.
    uid           TEXT NOT NULL UNIQUE,
    run_id        TEXT REFERENCES runs (id),
    name          TEXT NOT NULL,
    -- JSON array of SQL texts; more than one runs as one BatchExecuteStatement.
    sqls          TEXT NOT NULL,
    -- JSON array of {"name": .., "value": ..}.
    params        TEXT NOT NULL DEFAULT '[]',
    workgroup     TEXT,
    cluster       TEXT,
    database      TEXT,
    db_user       TEXT,
    secret_arn    TEXT,
    state         TEXT NOT NULL CHECK (state IN ('PENDING', 'READY', 'SUBMITTED', 'RETRY_WAIT',
                                                 'FINISHED', 'FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED')),
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    -- JSON retry policy (backoff) and the time a RETRY_WAIT job may go READY.
    retry         TEXT,
    not_before    INTEGER,
    timeout_secs  INTEGER,
    statement_id  TEXT,
    rows          INTEGER,
    error         TEXT,
    -- Result fetching, after FINISHED: NONE (no result set), PENDING, FETCHED, EXPIRED, ERROR.
    result_state  TEXT CHECK (result_state IN ('NONE', 'PENDING', 'FETCHED', 'EXPIRED', 'ERROR')),
    result_rows   INTEGER,
    result_path   TEXT,
    result_error  TEXT,
    created_at    INTEGER NOT NULL,
    ready_at      INTEGER,
    submitted_at  INTEGER,
    finished_at   INTEGER,
    CHECK ((state IN ('FINISHED', 'FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED')) = (finished_at IS NOT NULL)),
    CHECK ((state = 'FINISHED') = (result_state IS NOT NULL))
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_run ON jobs (run_id);
CREATE INDEX jobs_statement ON jobs (statement_id);

CREATE TABLE job_deps (
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    depends_on INTEGER NOT NULL REFERENCES jobs (id),
    PRIMARY KEY (job_id, depends_on),
    CHECK (job_id <> depends_on)
);
CREATE INDEX job_deps_parent ON job_deps (depends_on);

-- One row per submission attempt: the history of a job.
CREATE TABLE attempts (
    job_id       INTEGER NOT NULL REFERENCES jobs (id),
    attempt      INTEGER NOT NULL,
    client_token TEXT NOT NULL UNIQUE,
    statement_id TEXT UNIQUE,
    -- SUBMITTING: the token is chosen and the Data API call may have been made.
    state        TEXT NOT NULL CHECK (state IN ('SUBMITTING', 'SUBMITTED', 'FINISHED', 'FAILED', 'ABORTED')),
    started_at   INTEGER NOT NULL,
    submitted_at INTEGER,
    finished_at  INTEGER,
    rows         INTEGER,
    error        TEXT,
    PRIMARY KEY (job_id, attempt)
);

-- The inbox: every message consumed from the queue, with its raw body.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT UNIQUE,
    message_id   TEXT,
    received_at  INTEGER NOT NULL,
    statement_id TEXT,
    state        TEXT,
    job_id       INTEGER REFERENCES jobs (id),
    disposition  TEXT NOT NULL CHECK (disposition IN
                   ('applied', 'duplicate', 'stale', 'deferred', 'foreign', 'quarantined', 'ignored')),
    reason       TEXT,
    body         TEXT NOT NULL
);
CREATE INDEX events_statement ON events (statement_id, state);
CREATE UNIQUE INDEX events_quarantined_message ON events (message_id)
    WHERE disposition IN ('quarantined', 'foreign');

-- Result files fetched for a FINISHED job: one row per statement with a
-- result set (sub = 0 for a single statement, N for a batch's <id>:N).
CREATE TABLE results (
    job_id       INTEGER NOT NULL REFERENCES jobs (id),
    sub          INTEGER NOT NULL,
    statement_id TEXT NOT NULL,
    rows         INTEGER NOT NULL,
    csv_path     TEXT NOT NULL,
    jsonl_path   TEXT NOT NULL,
    PRIMARY KEY (job_id, sub)
);
