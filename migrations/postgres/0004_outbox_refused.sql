-- An own event EventBridge refuses for good (a malformed or invalid entry)
-- is set aside with the time and the reason, never retried in front of the
-- others: the publisher goes on with the rest.
ALTER TABLE outbox ADD COLUMN refused_at BIGINT;
