-- What ExecuteStatement / BatchExecuteStatement answered as HasResultSet
-- (NULL when the response did not say): with false no result needs
-- fetching and no DescribeStatement is called.
ALTER TABLE jobs ADD COLUMN has_result_set BOOLEAN;
-- A batch job's ExecutionMode ('AUTO_COMMIT'; NULL = one transaction).
ALTER TABLE jobs ADD COLUMN execution_mode TEXT;
