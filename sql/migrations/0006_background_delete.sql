-- Deleting a batch marks it; runners remove its rows in the background, in
-- bounded steps (see core.batches.store.delete and jobrunner's reaper), so a
-- DELETE of a million-row batch answers at once and never holds long locks.
ALTER TABLE batches ADD COLUMN deleted_at timestamptz;
COMMENT ON COLUMN batches.deleted_at IS
    'When DELETE (or RESULTS_TTL) removed the batch: clients no longer see it, and runners are '
    'removing its rows in bounded steps; the row itself goes last.';
CREATE INDEX batches_deleted_idx ON batches (deleted_at) WHERE deleted_at IS NOT NULL;
