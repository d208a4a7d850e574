-- PostgreSQL orders the change stream by transaction id (its migration
-- 0005); SQLite has one writer at a time, so sequence order is commit
-- order and the column stays empty. A run's stream (?run=) reads its rows
-- only.
ALTER TABLE changes ADD COLUMN xid INTEGER;
CREATE INDEX changes_run ON changes (run_id, seq);
