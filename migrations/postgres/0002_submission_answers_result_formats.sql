-- What ExecuteStatement / BatchExecuteStatement answered as HasResultSet
-- (NULL when the response did not say): with false no result needs
-- fetching and no DescribeStatement is called.
ALTER TABLE jobs ADD COLUMN has_result_set BOOLEAN;
-- A batch job's ExecutionMode ('AUTO_COMMIT'; NULL = one transaction).
ALTER TABLE jobs ADD COLUMN execution_mode TEXT;
-- The files its results are written as ('csv', 'jsonl', 'csv,jsonl'):
-- the job's own choice, else the worker's result_formats, recorded when
-- the job is submitted (with 'csv' alone the statement runs with
-- ResultFormat CSV and its pages are read with GetStatementResultV2).
ALTER TABLE jobs ADD COLUMN result_formats TEXT;
-- A job of a pipeline run in one session (`session = true`): how long the
-- session is kept between statements; NULL = no session.
ALTER TABLE jobs ADD COLUMN session_keep_alive_secs BIGINT;
-- The session of such a run, from the first ExecuteStatement's answer.
ALTER TABLE runs ADD COLUMN session_id TEXT;
-- A deferred FAILED or ABORTED event's error text (DescribeStatement's),
-- applied with the event once the statement id is recorded.
ALTER TABLE events ADD COLUMN error TEXT;
