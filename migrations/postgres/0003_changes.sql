-- Every state change of a job or a run, one row each, written by triggers
-- whichever process made it (a worker, another worker, the CLI): the API's
-- event stream (GET /api/v1/events) and the console read them in order.
-- Sequence numbers are taken before commit, so a reader looks back a few
-- rows for changes that committed late. Retention deletes old rows.
CREATE TABLE changes (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('job', 'run')),
    job_id       BIGINT,
    run_id       TEXT,
    state        TEXT NOT NULL,
    attempt      BIGINT,
    result_state TEXT,
    at           BIGINT NOT NULL
);
CREATE INDEX changes_at ON changes (at);

CREATE FUNCTION redrelay_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state
       OR OLD.attempt IS DISTINCT FROM NEW.attempt
       OR OLD.result_state IS DISTINCT FROM NEW.result_state THEN
        INSERT INTO changes (kind, job_id, run_id, state, attempt, result_state, at)
        VALUES ('job', NEW.id, NEW.run_id, NEW.state, NEW.attempt, NEW.result_state,
                (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_change AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION redrelay_job_change();

CREATE FUNCTION redrelay_run_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state THEN
        INSERT INTO changes (kind, run_id, state, at)
        VALUES ('run', NEW.id, NEW.state, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_change AFTER INSERT OR UPDATE ON runs
    FOR EACH ROW EXECUTE FUNCTION redrelay_run_change();
