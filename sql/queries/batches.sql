-- name: batches_next_id
-- An upload's batch id, taken before its transaction, in the short one that makes its partitions (core/batches/ingest.py reserve_id); a failed upload leaves a gap.
SELECT nextval('batches_id_seq') AS id;

-- name: batches_insert
-- Create a batch owned by the uploading client, with the id reserve_id took (inside the upload transaction, so a failed upload leaves nothing).
INSERT INTO batches (id, public_id, chunk_size, source_filename, client, metadata, expires_after, callback_url)
OVERRIDING SYSTEM VALUE
VALUES (%(batch_id)s, %(public_id)s, %(chunk_size)s, %(source_filename)s, %(client)s, %(metadata)s,
        %(expires_after)s, %(callback_url)s);

-- name: batches_set_counts
-- Record how many data rows the upload read and how many it set aside, and the columns it kept, once the COPY has finished.
UPDATE batches
SET total_count = %(total_count)s, invalid_count = %(invalid_count)s, field_names = %(field_names)s
WHERE id = %(batch_id)s
RETURNING {columns};

-- name: batches_notify_ready
-- Wake the listening runners; delivered only when the upload transaction commits.
SELECT pg_notify('chunks_ready', %(public_id)s);

-- name: batches_get
-- One batch by its public id; {columns} are the fields of core.batches.Batch.
SELECT {columns} FROM batches WHERE public_id = %(public_id)s AND deleted_at IS NULL;

-- name: batches_cancel
-- Stop a processing batch in one statement: chunks no runner holds leave the queue, chunks in hand still finish; the rows stay until the batch is deleted.
WITH locked AS (
    -- Lock order (core/batches/queue.py): every chunk of the batch, in id order,
    -- before the batch row, as the finish and the requeues take them. With
    -- them all locked no chunk can change state under the cancel.
    SELECT id, state FROM chunks WHERE batch_id = %(batch_id)s ORDER BY id FOR UPDATE
), cancelled AS (
    UPDATE batches
    SET status = 'cancelled', completed_at = clock_timestamp()
    WHERE id = %(batch_id)s AND status = 'processing' AND deleted_at IS NULL
      -- Evaluated before this row is locked, so the chunks are locked first.
      AND (SELECT count(*) FROM locked) >= 0
    RETURNING *
), dropped AS (
    DELETE FROM chunks AS c USING locked, cancelled
    WHERE c.id = locked.id AND locked.state <> 'claimed'
), webhook AS (
    -- The batch.cancelled webhook joins the outbox in this same statement (jobrunner/webhooks.py).
    INSERT INTO webhook_events (batch_id, type, callback_url)
    SELECT id, 'batch.cancelled', callback_url FROM cancelled WHERE callback_url IS NOT NULL
    ON CONFLICT (batch_id) DO NOTHING
)
SELECT {columns} FROM cancelled;

-- name: batches_mark_deleted
-- Hide a finished batch whose chunks no runner holds, free its Idempotency-Keys, and leave its rows to the runners' reaper; whether it was marked, and how many chunks runners hold.
WITH locked AS (
    -- Lock order: the batch's chunks before its row. A held chunk keeps the
    -- batch: its finish still has rows to write.
    SELECT id, state FROM chunks WHERE batch_id = %(batch_id)s ORDER BY id FOR UPDATE
), marked AS (
    UPDATE batches
    SET deleted_at = clock_timestamp()
    WHERE id = %(batch_id)s AND deleted_at IS NULL AND status <> 'processing'
      AND NOT EXISTS (SELECT 1 FROM locked WHERE state = 'claimed')
    RETURNING id
), freed AS (
    -- Its Idempotency-Keys are free again at once: a retry makes a new batch.
    DELETE FROM idempotency_keys AS k USING marked WHERE k.batch_id = marked.id
)
SELECT EXISTS (SELECT 1 FROM marked) AS marked,
       (SELECT count(*) FROM locked WHERE state = 'claimed') AS in_hand;

-- name: batches_expired
-- Finished batches (completed, with errors, or cancelled) past their expiry, oldest first: their own expires_after after they finished, or older_than_seconds for those without one (0: never); with everything, older than older_than_seconds whatever they asked for (purge by hand).
SELECT id FROM batches
WHERE status <> 'processing' AND deleted_at IS NULL
  AND (completed_at + coalesce(expires_after, make_interval(secs => nullif(%(older_than_seconds)s::float8, 0)))
       < now()
       OR (%(everything)s AND completed_at < now() - make_interval(secs => %(older_than_seconds)s)))
ORDER BY completed_at
LIMIT %(limit)s;

-- name: batches_deleted
-- Batches marked deleted whose rows the reaper still has to remove, oldest first; not those whose partition is soon to be dropped whole (deleted less than wait_seconds ago, in a closed range whose other batches are deleted or expire within wait_seconds).
SELECT b.id FROM batches AS b
WHERE b.deleted_at IS NOT NULL
  AND NOT (
      b.deleted_at > now() - make_interval(secs => %(wait_seconds)s)
      AND EXISTS (
          SELECT 1
          FROM batch_partitions AS p,
               (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS last_id
                FROM batches_id_seq) AS h
          WHERE p.table_name = 'batch_results' AND NOT p.detach_pending
            AND b.id < p.end_batch AND (p.first_batch IS NULL OR b.id >= p.first_batch)
            AND p.end_batch - 1 <= h.last_id
            AND NOT EXISTS (
                SELECT 1 FROM batches AS o
                WHERE o.id < p.end_batch AND (p.first_batch IS NULL OR o.id >= p.first_batch)
                  AND o.deleted_at IS NULL
                  -- Its expiry as batches_expired reckons it; none (still processing, or kept): infinity.
                  AND coalesce(o.completed_at + coalesce(o.expires_after,
                                                         make_interval(secs => nullif(%(older_than_seconds)s::float8, 0))),
                               'infinity') > now() + make_interval(secs => %(wait_seconds)s))))
ORDER BY b.deleted_at, b.id
LIMIT %(limit)s;

-- name: batches_reap_span
-- The first and last key of a deleted batch's rows in one of its tables ({table}, keyed by {key}: inputs, results, set-aside rows or sort keys).
SELECT min({key}) AS low, max({key}) AS high FROM {table} WHERE batch_id = %(batch_id)s;

-- name: batches_reap_range
-- Remove one range of a deleted batch's rows from one of its tables: one range of the primary key, however big the batch.
DELETE FROM {table} WHERE batch_id = %(batch_id)s AND {key} BETWEEN %(low)s AND %(high)s;

-- name: batches_reap_row
-- Remove a deleted batch's own row once its rows are gone (its chunks go by cascade), keeping its rows in its key's usage.
WITH reaped AS (
    DELETE FROM batches WHERE id = %(batch_id)s AND deleted_at IS NOT NULL
    RETURNING client, total_count, processed_count
)
UPDATE api_keys AS k
SET rows_uploaded_before = k.rows_uploaded_before + reaped.total_count,
    rows_scored_before = k.rows_scored_before + reaped.processed_count
FROM reaped
WHERE k.name = reaped.client;

-- name: batches_list
-- One keyset page of the batches the caller may see (row-level security), newest first, optionally of one status, one client and with some labels.
SELECT {columns}
FROM batches
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(client)s::text IS NULL OR client = %(client)s::text)
  AND metadata @> %(metadata)s::jsonb
  AND deleted_at IS NULL
  AND (created_at, public_id) < (%(before_created)s::timestamptz, %(before_public_id)s::text)
ORDER BY created_at DESC, public_id DESC
LIMIT %(limit)s;

-- name: batches_metrics
-- Service-wide figures for /metrics: batches by status, rows by outcome, queue and runners.
-- Deleted batches (still being reaped) no longer count.
SELECT (SELECT jsonb_object_agg(status, n)
        FROM (SELECT status, count(*) AS n FROM batches WHERE deleted_at IS NULL GROUP BY status) s)
           AS by_status,
       (SELECT coalesce(sum(processed_count), 0) FROM batches WHERE deleted_at IS NULL) AS scored,
       (SELECT coalesce(sum(failed_count), 0) FROM batches WHERE deleted_at IS NULL) AS failed,
       (SELECT coalesce(sum(invalid_count), 0) FROM batches WHERE deleted_at IS NULL) AS invalid,
       (SELECT count(*) FROM chunks WHERE state = 'ready') AS ready,
       (SELECT count(*) FROM chunks WHERE state = 'claimed') AS claimed,
       (SELECT count(*) FROM runners) AS runners,
       -- Dead row versions per table, so bloat is visible before it costs (vacuum's backlog).
       -- A partitioned table's are its partitions', summed.
       (SELECT jsonb_object_agg(name, n) FROM (
            SELECT coalesce(parent.relname, s.relname) AS name, sum(s.n_dead_tup) AS n
            FROM pg_stat_user_tables AS s
            LEFT JOIN pg_inherits AS i ON i.inhrelid = s.relid
            LEFT JOIN pg_class AS parent ON parent.oid = i.inhparent
            WHERE coalesce(parent.relname, s.relname)
                  IN ('batches', 'chunks', 'batch_inputs', 'batch_results', 'batch_row_errors',
                      'batch_result_keys')
            GROUP BY 1) AS dead)
           AS dead_tuples,
       -- Per API key (client_usage; "" for batches uploaded without a key).
       (SELECT jsonb_object_agg(coalesce(client, ''),
                                jsonb_build_array(rows_uploaded, rows_scored, rows_queued))
        FROM client_usage) AS usage;

-- name: batches_queued_rows
-- Rows of one client's processing batches not yet scored, failed or set aside: what QUOTA_QUEUED_ROWS bounds (reads batches_client_processing_idx).
SELECT coalesce(sum(total_count - processed_count - failed_count - invalid_count), 0)::bigint AS queued
FROM batches
WHERE client = %(client)s AND status = 'processing';

-- name: batches_unfinished
-- One client's batches still processing: what QUOTA_BATCHES bounds (reads batches_client_processing_idx).
SELECT count(*) AS unfinished FROM batches WHERE client = %(client)s AND status = 'processing';

-- name: batches_stored_rows
-- Rows of one client's batches not deleted, finished ones and set-aside rows included: what QUOTA_STORED_ROWS bounds.
SELECT coalesce(sum(total_count), 0)::bigint AS stored
FROM batches
WHERE client = %(client)s AND deleted_at IS NULL;

-- name: batches_lock_client
-- Serialise the end of one client's uploads until commit: quota checks and fair-turn dealing see one upload after the other.
SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(client)s));
