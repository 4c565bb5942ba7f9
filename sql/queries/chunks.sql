-- name: chunks_insert_for_batch
-- Cut a freshly staged batch's valid rows into chunks, placed fairly among the waiting work.
WITH round AS (
    -- The smallest waiting fair_key: the new batch's first chunk gets it, its
    -- k-th chunk that plus k, so it interleaves with the older batches' rest
    -- one-for-one (a read of one entry of chunks_ready_idx).
    SELECT coalesce(min(fair_key), 0) AS start FROM chunks WHERE state = 'ready'
)
INSERT INTO chunks (batch_id, first_row, last_row, fair_key)
SELECT %(batch_id)s, first_row, least(first_row + %(chunk_size)s - 1, %(valid_count)s),
       round.start + (first_row - 1) / %(chunk_size)s
FROM round, generate_series(1, %(valid_count)s, %(chunk_size)s) AS first_row;

-- name: chunks_analyze
-- Refresh the planner's statistics of the queue after a big batch arrives (see webapp/ingest.py).
ANALYZE chunks;

-- name: chunks_claim
-- Lease the next chunk in fair order to one runner and return the chunk with its rows.
WITH next_chunk AS (
    -- SKIP LOCKED: runners racing for the head of the queue each take a
    -- different chunk instead of queueing on each other's row lock. The
    -- partial index chunks_ready_idx (fair_key, id) holds only ready chunks,
    -- in claim order, so this reads one entry however many chunks are done;
    -- chunks backing off after a failure (available_at in the future) are
    -- skipped.
    SELECT id
    FROM chunks
    WHERE state = 'ready' AND available_at <= now()
    ORDER BY fair_key, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), leased AS (
    -- The lease is committed rather than held by an open transaction, so the
    -- attempt count survives a crash of this runner, and a runner that dies
    -- loses its chunk only until lease_expires_at.
    UPDATE chunks AS c
    SET state = 'claimed',
        attempts = c.attempts + 1,
        claimed_by = %(runner)s,
        claim_token = gen_random_uuid(),
        claimed_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    FROM next_chunk
    WHERE c.id = next_chunk.id
    RETURNING c.id, c.batch_id, c.first_row, c.last_row, c.claim_token, c.attempts
), started AS (
    -- Stamp the batch's first claim; a no-op (and no row lock) afterwards.
    UPDATE batches AS b
    SET started_at = now()
    FROM leased
    WHERE b.id = leased.batch_id AND b.started_at IS NULL
)
SELECT leased.id AS chunk_id, leased.batch_id, leased.first_row, leased.last_row,
       leased.claim_token, leased.attempts, r.row_number, r.text
FROM leased
JOIN batch_rows AS r
  ON r.batch_id = leased.batch_id
 AND r.row_number BETWEEN leased.first_row AND leased.last_row
ORDER BY r.row_number;

-- name: chunks_finish
-- Commit a scored chunk in one statement: only if the caller still holds its lease, move its rows
-- from staging to results, count them into the batch (finishing it with its last chunk) and beat
-- the runner's heartbeat.
WITH finished AS (
    -- The lease check: everything below happens only if this matched.
    UPDATE chunks
    SET state = 'done',
        finished_at = now(),
        claim_token = NULL,
        lease_expires_at = NULL
    WHERE id = %(chunk_id)s
      AND state = 'claimed'
      AND claim_token = %(claim_token)s
    RETURNING id
), moved AS (
    -- The rows leave staging exactly when their results appear.
    DELETE FROM batch_rows
    WHERE batch_id = %(batch_id)s
      AND row_number BETWEEN %(first_row)s AND %(last_row)s
      AND EXISTS (SELECT 1 FROM finished)
    RETURNING row_number, line_number, client_id, text
), inserted AS (
    INSERT INTO batch_results
        (batch_id, row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error)
    SELECT %(batch_id)s, moved.row_number, moved.line_number, moved.client_id, moved.text,
           s.sentiment, s.score, s.compound, s.pos, s.neu, s.neg, s.error
    FROM moved
    JOIN unnest(%(row_numbers)s::integer[], %(sentiments)s::text[],
                %(scores)s::float8[], %(compounds)s::float8[],
                %(pos)s::float8[], %(neu)s::float8[], %(neg)s::float8[], %(errors)s::text[])
         AS s (row_number, sentiment, score, compound, pos, neu, neg, error)
      USING (row_number)
    RETURNING 1
), advanced AS (
    -- The batch row is locked only while this one statement runs and commits;
    -- the lock also makes "last chunk" exact.
    UPDATE batches
    SET processed_count = processed_count + %(scored)s,
        failed_count    = failed_count + %(failed)s,
        positive_count  = positive_count + %(positive)s,
        negative_count  = negative_count + %(negative)s,
        neutral_count   = neutral_count + %(neutral)s,
        status          = CASE
            WHEN status <> 'processing' THEN status  -- cancelled: chunks in hand still count
            WHEN processed_count + %(scored)s + failed_count + %(failed)s + invalid_count < total_count
                THEN status
            WHEN failed_count + %(failed)s > 0 THEN 'completed_with_errors'
            ELSE 'completed' END,
        completed_at    = CASE
            WHEN status = 'processing'
             AND processed_count + %(scored)s + failed_count + %(failed)s + invalid_count = total_count
                THEN clock_timestamp()
            ELSE completed_at END
    WHERE id = %(batch_id)s
      AND EXISTS (SELECT 1 FROM finished)
    RETURNING status
), beat AS (
    INSERT INTO runners AS r (name, host, pid, scorer, chunks_done, rows_done)
    SELECT %(runner)s, %(host)s, %(pid)s, %(scorer)s, 1, %(rows)s
    WHERE EXISTS (SELECT 1 FROM finished)
    ON CONFLICT (name) DO UPDATE
    SET heartbeat_at = now(),
        chunks_done = r.chunks_done + 1,
        rows_done = r.rows_done + excluded.rows_done
)
SELECT (SELECT count(*) FROM finished) AS finished,
       (SELECT count(*) FROM inserted) AS inserted,
       (SELECT status FROM advanced) AS status;

-- name: chunks_retry_later
-- Give a chunk whose scoring failed back to the queue after a backoff, if the caller still holds it.
UPDATE chunks
SET state = 'ready',
    claim_token = NULL,
    lease_expires_at = NULL,
    last_error = %(error)s,
    available_at = now() + make_interval(secs => %(backoff_seconds)s)
WHERE id = %(chunk_id)s
  AND state = 'claimed'
  AND claim_token = %(claim_token)s
RETURNING id;

-- name: chunks_release_expired
-- Put chunks whose lease ran out (their runner died or froze) back in the queue.
UPDATE chunks
SET state = 'ready',
    claim_token = NULL,
    lease_expires_at = NULL,
    last_error = 'lease expired while held by ' || claimed_by
WHERE state = 'claimed'
  AND lease_expires_at < now()
RETURNING id, batch_id, claimed_by;

-- name: chunks_delete_done
-- Drop a finished batch's done chunks (the queue keeps only live work).
DELETE FROM chunks WHERE batch_id = %(batch_id)s AND state = 'done';

-- name: chunks_delete_not_claimed
-- Drop a cancelled batch's chunks that no runner holds.
DELETE FROM chunks WHERE batch_id = %(batch_id)s AND state <> 'claimed';

-- name: chunks_count_claimed
-- How many chunks of a batch runners hold right now.
SELECT count(*) FROM chunks WHERE batch_id = %(batch_id)s AND state = 'claimed';
