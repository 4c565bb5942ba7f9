-- name: batches_insert
-- Create a batch (inside the upload transaction, so a failed upload leaves nothing).
INSERT INTO batches (public_id, chunk_size, source_filename)
VALUES (%(public_id)s, %(chunk_size)s, %(source_filename)s)
RETURNING id;

-- name: batches_set_counts
-- Record how many data rows the upload read and how many it set aside, once the COPY has finished.
UPDATE batches
SET total_count = %(total_count)s, invalid_count = %(invalid_count)s
WHERE id = %(batch_id)s;

-- name: batches_notify_ready
-- Wake the listening runners; delivered only when the upload transaction commits.
SELECT pg_notify('chunks_ready', %(public_id)s);

-- name: batches_get
-- One batch by its public id, as GET /batch/<id> shows it.
SELECT id, public_id, status, total_count, processed_count, invalid_count,
       positive_count, negative_count, neutral_count,
       created_at, started_at, completed_at
FROM batches
WHERE public_id = %(public_id)s;

-- name: batches_advance
-- Count a finished chunk into its batch, completing the batch with its last chunk.
-- Runs last in the finishing transaction so the batch row stays locked only
-- for the commit itself.
UPDATE batches
SET processed_count = processed_count + %(scored)s,
    positive_count  = positive_count + %(positive)s,
    negative_count  = negative_count + %(negative)s,
    neutral_count   = neutral_count + %(neutral)s,
    status          = CASE WHEN processed_count + %(scored)s + invalid_count = total_count
                           THEN 'completed' ELSE status END,
    completed_at    = CASE WHEN processed_count + %(scored)s + invalid_count = total_count
                           THEN clock_timestamp() ELSE completed_at END
WHERE id = %(batch_id)s
RETURNING status;
