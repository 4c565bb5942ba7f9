-- name: batches_insert
-- Create a batch (inside the upload transaction, so a failed upload leaves nothing).
INSERT INTO batches (public_id, chunk_size, source_filename)
VALUES (%(public_id)s, %(chunk_size)s, %(source_filename)s)
RETURNING id;

-- name: batches_set_counts
-- Record how many data rows the upload read and how many it set aside, once the COPY has finished.
UPDATE batches
SET total_count = %(total_count)s, invalid_count = %(invalid_count)s
WHERE id = %(batch_id)s
RETURNING *;

-- name: batches_notify_ready
-- Wake the listening runners; delivered only when the upload transaction commits.
SELECT pg_notify('chunks_ready', %(public_id)s);

-- name: batches_get
-- One batch by its public id (every column: core.batches.Batch mirrors the table).
SELECT * FROM batches WHERE public_id = %(public_id)s;

-- name: batches_cancel
-- Stop a processing batch: no new chunks are claimed; chunks in hand still finish.
UPDATE batches
SET status = 'cancelled', completed_at = clock_timestamp()
WHERE id = %(batch_id)s AND status = 'processing'
RETURNING *;

-- name: batches_lock
-- Lock one batch row for a lifecycle change (cancel, delete) and read its status.
SELECT status FROM batches WHERE id = %(batch_id)s FOR UPDATE;

-- name: batches_delete_with_rows
-- Remove batches and every row they own in every table (chunks go by cascade); how many went.
WITH gone AS (
    DELETE FROM batches WHERE id = ANY(%(batch_ids)s::bigint[]) RETURNING id
), staged AS (
    DELETE FROM batch_rows WHERE batch_id IN (SELECT id FROM gone)
), results AS (
    DELETE FROM batch_results WHERE batch_id IN (SELECT id FROM gone)
), errors AS (
    DELETE FROM batch_row_errors WHERE batch_id IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone;

-- name: batches_finished_before
-- Finished batches (completed, with errors, or cancelled) that finished more than older_than_seconds ago.
SELECT id FROM batches
WHERE status <> 'processing'
  AND completed_at < now() - make_interval(secs => %(older_than_seconds)s);

-- name: batches_list
-- One keyset page of batches, newest first, optionally of one status.
SELECT *
FROM batches
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::bigint)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: batches_metrics
-- Service-wide figures for /metrics: batches by status, rows by outcome, queue and runners.
SELECT (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM batches GROUP BY status) s)
           AS by_status,
       (SELECT coalesce(sum(processed_count), 0) FROM batches) AS scored,
       (SELECT coalesce(sum(failed_count), 0) FROM batches) AS failed,
       (SELECT coalesce(sum(invalid_count), 0) FROM batches) AS invalid,
       (SELECT count(*) FROM chunks WHERE state = 'ready') AS ready,
       (SELECT count(*) FROM chunks WHERE state = 'claimed') AS claimed,
       (SELECT count(*) FROM runners) AS runners;
