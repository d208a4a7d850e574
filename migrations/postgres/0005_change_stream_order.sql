-- The change stream in commit order, never skipping a committed row: each
-- change row carries its transaction's id, and the stream delivers rows in
-- (xid, seq) order once every transaction below them has ended (their xid
-- is under the snapshot's xmin). Sequence numbers alone are taken before
-- commit, so a slow transaction's rows could land behind the stream.
ALTER TABLE changes ADD COLUMN xid BIGINT DEFAULT txid_current();
CREATE INDEX changes_order ON changes (xid, seq);
-- A run's stream (?run=) reads its rows only.
CREATE INDEX changes_run ON changes (run_id, seq);
