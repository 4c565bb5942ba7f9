-- name: chunks_insert_for_batch
-- Cut a freshly uploaded batch's valid rows into chunks, placed fairly among the waiting work.
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

-- name: chunks_share_client_turns
-- Deal one client's waiting chunks, its new batch's included, one fair turn each: the client gets one turn per round however many batches it has, and its batches take the client's turns round-robin.
WITH others AS (
    -- Only when the client has another batch with waiting chunks: alone, the
    -- new batch's turns from chunks_insert_for_batch are already right, and
    -- a big batch is not locked chunk by chunk for nothing.
    SELECT EXISTS (
        SELECT 1 FROM batches AS b JOIN chunks AS c ON c.batch_id = b.id
        WHERE b.client IS NOT DISTINCT FROM %(client)s AND b.status = 'processing'
          AND b.id <> %(batch_id)s AND c.state = 'ready'
    ) AS waiting
), mine AS (
    -- Lock order (core/batches/queue.py): chunks in id order. Runners' claims
    -- skip these rows while they are locked, and never wait on this.
    SELECT c.id, c.batch_id, c.fair_key
    FROM batches AS b JOIN chunks AS c ON c.batch_id = b.id, others
    WHERE others.waiting
      AND b.client IS NOT DISTINCT FROM %(client)s AND b.status = 'processing' AND c.state = 'ready'
    ORDER BY c.id
    FOR UPDATE OF c
), start AS (
    -- The client's place in the round-robin: where its older work had got to
    -- (the new batch's chunks start at the smallest waiting turn of all).
    SELECT coalesce(min(fair_key) FILTER (WHERE batch_id <> %(batch_id)s), min(fair_key)) AS turn FROM mine
), dealt AS (
    -- Lap k holds each batch's k-th waiting chunk, older batches first; laps
    -- follow each other, one turn per chunk.
    SELECT id, row_number() OVER (ORDER BY lap, batch_id) - 1 AS turn
    FROM (SELECT id, batch_id, row_number() OVER (PARTITION BY batch_id ORDER BY fair_key, id) AS lap
          FROM mine) AS laps
)
UPDATE chunks AS c
SET fair_key = start.turn + dealt.turn
FROM dealt, start
WHERE c.id = dealt.id AND c.fair_key <> start.turn + dealt.turn;

-- name: chunks_analyze
-- Refresh the planner's statistics of the queue after a big batch arrives (see core/batches/ingest.py).
ANALYZE chunks;

-- name: chunks_claim
-- Lease the next chunk in fair order, and up to limit - 1 more ready chunks of its batch, to one runner.
WITH head AS (
    -- SKIP LOCKED: runners racing for the head of the queue each take a
    -- different chunk instead of queueing on each other's row lock. The
    -- partial index chunks_ready_idx (fair_key, id) holds only ready chunks,
    -- in claim order, so this reads one entry however many chunks are done;
    -- chunks backing off after a failure (available_at in the future) are
    -- skipped.
    -- Only chunks of processing batches: a cancelled batch's chunk that came
    -- back to the queue is closed out by whoever returned it, never scored.
    SELECT id, batch_id, fair_key, attempts
    FROM chunks
    WHERE state = 'ready' AND available_at <= now()
      AND EXISTS (SELECT 1 FROM batches AS b WHERE b.id = chunks.batch_id AND b.status = 'processing')
    ORDER BY fair_key, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), more AS (
    -- More of the same batch, next in fair order: one claim and one commit
    -- then serve several chunks, which matters when scoring a chunk takes
    -- less time than claiming and committing it (short texts). Each is still
    -- its own chunk, with its own lease token and attempt count. One batch
    -- only, so finishing them locks one batch row, as a single chunk does.
    -- Only the batch's chunks among the queue's next `limit` turns: alone in
    -- the queue a batch fills the round, beside others it takes its share of
    -- those turns, so rounds keep the fair order (chunks_share_client_turns)
    -- whatever their size. Only chunks never handed out before, and only after
    -- a head like them: a chunk coming back (its runner died, its scoring
    -- failed) travels alone, so a chunk that kills its runners cannot take a
    -- round's worth of others down with it attempt after attempt.
    SELECT c.id
    FROM chunks AS c, head
    WHERE c.state = 'ready' AND c.available_at <= now()
      AND head.attempts = 0 AND c.attempts = 0
      AND c.batch_id = head.batch_id
      AND (c.fair_key, c.id) > (head.fair_key, head.id)
      AND c.fair_key < head.fair_key + %(limit)s
    ORDER BY c.fair_key, c.id
    LIMIT greatest(%(limit)s::integer - 1, 0)
    FOR UPDATE OF c SKIP LOCKED
), leased AS (
    -- The lease is committed rather than held by an open transaction, so the
    -- attempt count survives a crash of this runner, and a runner that dies
    -- loses its chunks only until lease_expires_at.
    UPDATE chunks AS c
    SET state = 'claimed',
        attempts = c.attempts + 1,
        claimed_by = %(runner)s,
        claim_token = gen_random_uuid(),
        claimed_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    WHERE c.id IN (SELECT id FROM head UNION ALL SELECT id FROM more)
    RETURNING c.id, c.batch_id, c.first_row, c.last_row, c.claim_token, c.attempts
), started AS (
    -- Stamp the batch's first claim; a no-op (and no row lock) afterwards.
    UPDATE batches AS b
    SET started_at = now()
    FROM head
    WHERE b.id = head.batch_id AND b.started_at IS NULL
)
-- Each chunk's rows come back as two arrays (numbers and texts, fetched in
-- binary), one result row per chunk however many rows it has, read by
-- batch_inputs_of_chunks from one range of the primary key of the batch's one
-- partition of batch_inputs. The runners run with enable_seqscan off, so stale
-- statistics cannot turn that into a scan of the partition (see
-- core.batches.queue.configure_session). A chunk whose rows are missing (only
-- a hand edit does that) comes back with empty arrays, so its finish closes it
-- out and counts them.
SELECT leased.id AS chunk_id, leased.batch_id, leased.first_row, leased.last_row,
       leased.claim_token, leased.attempts,
       coalesce(rows.row_numbers, '{}') AS row_numbers, coalesce(rows.texts, '{}') AS texts
FROM leased
LEFT JOIN batch_inputs_of_chunks(
    (SELECT batch_id FROM head),
    ARRAY(SELECT id FROM leased ORDER BY id),
    ARRAY(SELECT first_row FROM leased ORDER BY id),
    ARRAY(SELECT last_row FROM leased ORDER BY id)
) AS rows ON rows.chunk_id = leased.id
ORDER BY leased.id;

-- name: chunks_finish
-- Commit scored chunks of one batch in one statement: those whose lease the caller still holds have their scores inserted and counted into the batch (finishing it with its last chunk), and the runner's heartbeat beats.
WITH held AS (
    -- Lock order (see core/batches/queue.py): a batch's chunks in id order,
    -- then its batch row. The lease check, chunk by chunk: everything below
    -- covers only the chunks that matched.
    SELECT c.id
    FROM chunks AS c
    JOIN unnest(%(chunk_ids)s::bigint[], %(claim_tokens)s::uuid[]) AS mine (id, token)
      ON c.id = mine.id AND c.claim_token = mine.token
    WHERE c.state = 'claimed'
    ORDER BY c.id
    FOR UPDATE OF c
), finished AS (
    UPDATE chunks AS c
    SET state = 'done',
        finished_at = now(),
        claim_token = NULL,
        lease_expires_at = NULL
    FROM held
    WHERE c.id = held.id
    RETURNING c.id, c.first_row, c.last_row
), inserted AS (
    -- Only what scoring adds: the text stays where the upload wrote it. The
    -- arrays arrive in binary (core/batches/queue.py builds them from numpy);
    -- errors is NULL when no row failed, and unnest pads it with NULLs; a
    -- failed row's numbers (NaN) are not kept. The results' primary key
    -- refuses a row scored twice.
    INSERT INTO batch_results (batch_id, row_number, compound, pos, neu, neg, error)
    SELECT %(batch_id)s, s.row_number,
           CASE WHEN s.error IS NULL THEN s.compound END, CASE WHEN s.error IS NULL THEN s.pos END,
           CASE WHEN s.error IS NULL THEN s.neu END, CASE WHEN s.error IS NULL THEN s.neg END, s.error
    FROM unnest(%(row_numbers)s::integer[], %(compounds)s::float8[], %(pos)s::float8[],
                %(neu)s::float8[], %(neg)s::float8[], %(errors)s::text[])
         AS s (row_number, compound, pos, neu, neg, error)
    WHERE EXISTS (SELECT 1 FROM finished AS f WHERE s.row_number BETWEEN f.first_row AND f.last_row)
    RETURNING compound, error
), tally AS (
    -- What was actually written, so a chunk whose lease was lost counts nothing.
    SELECT count(*) FILTER (WHERE error IS NULL) AS scored,
           count(*) FILTER (WHERE error IS NOT NULL) AS failed,
           count(*) FILTER (WHERE vader_label(compound) = 'positive') AS positive,
           count(*) FILTER (WHERE vader_label(compound) = 'negative') AS negative,
           count(*) FILTER (WHERE vader_label(compound) = 'neutral') AS neutral,
           count(*) AS rows,
           -- Rows of finished chunks that the claim did not find in batch_inputs
           -- (only a hand edit can do that: delete never takes a held chunk's
           -- rows). They count as failed, so the batch still reaches a final state.
           (SELECT coalesce(sum(last_row - first_row + 1), 0) FROM finished) - count(*) AS vanished
    FROM inserted
), advanced AS (
    -- The batch row is locked only while this one statement runs and commits;
    -- the lock also makes "last chunk" exact.
    UPDATE batches AS b
    SET commit_seq      = b.commit_seq + 1,
        processed_count = b.processed_count + t.scored,
        failed_count    = b.failed_count + t.failed + t.vanished,
        positive_count  = b.positive_count + t.positive,
        negative_count  = b.negative_count + t.negative,
        neutral_count   = b.neutral_count + t.neutral,
        status          = CASE
            WHEN b.status <> 'processing' THEN b.status  -- cancelled: chunks in hand still count
            WHEN b.processed_count + t.scored + b.failed_count + t.failed + t.vanished + b.invalid_count
                 < b.total_count
                THEN b.status
            WHEN b.failed_count + t.failed + t.vanished > 0 THEN 'completed_with_errors'
            ELSE 'completed' END,
        completed_at    = CASE
            WHEN b.status = 'processing'
             AND b.processed_count + t.scored + b.failed_count + t.failed + t.vanished + b.invalid_count
                 = b.total_count
                THEN clock_timestamp()
            ELSE b.completed_at END
    FROM tally AS t
    WHERE b.id = %(batch_id)s
      AND EXISTS (SELECT 1 FROM finished)
    -- completed_now: this statement is the one that completed the batch (its rows were the last).
    RETURNING b.status, b.commit_seq,
              b.status IN ('completed', 'completed_with_errors')
              AND b.processed_count + b.failed_count + b.invalid_count - (t.scored + t.failed + t.vanished)
                  < b.total_count AS completed_now
), logged AS (
    -- This finish's entry in the batch's commit log, numbered under the batch
    -- row's lock just taken: numbers follow commit order, so a follower that
    -- read entry n never misses one committed later with a smaller number.
    INSERT INTO batch_commits (batch_id, seq, first_rows, last_rows)
    SELECT %(batch_id)s, a.commit_seq, r.first_rows, r.last_rows
    FROM advanced AS a,
         (SELECT array_agg(first_row ORDER BY first_row) AS first_rows,
                 array_agg(last_row ORDER BY first_row) AS last_rows
          FROM finished) AS r
), webhook AS (
    -- The completion webhook joins the outbox in the statement that completes the
    -- batch, or not at all (jobrunner/webhooks.py delivers it). This reads the batch row as it was
    -- before this statement: callback_url never changes.
    INSERT INTO webhook_events (batch_id, type, callback_url)
    SELECT b.id, 'batch.' || a.status, b.callback_url
    FROM advanced AS a JOIN batches AS b ON b.id = %(batch_id)s
    WHERE a.completed_now AND b.callback_url IS NOT NULL
    ON CONFLICT (batch_id) DO NOTHING
), beat AS (
    INSERT INTO runners AS r (name, host, pid, scorer, chunks_done, rows_done)
    SELECT %(runner)s, %(host)s, %(pid)s, %(scorer)s, (SELECT count(*) FROM finished), t.rows
    FROM tally AS t
    WHERE EXISTS (SELECT 1 FROM finished)
    ON CONFLICT (name) DO UPDATE
    SET heartbeat_at = now(),
        chunks_done = r.chunks_done + excluded.chunks_done,
        rows_done = r.rows_done + excluded.rows_done
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM finished) AS finished,
       (SELECT rows FROM tally) AS inserted,
       (SELECT vanished FROM tally) AS vanished,
       (SELECT status FROM advanced) AS status,
       coalesce((SELECT completed_now FROM advanced), false) AS completed_now;

-- name: chunks_return
-- Put chunks the caller holds back in the queue (after a backoff, with the attempt counted or not), or close them out if their batch stopped processing.
WITH held AS (
    -- Lock order: every chunk first, in id order ...
    SELECT c.id, c.batch_id, c.first_row, c.last_row
    FROM chunks AS c
    JOIN unnest(%(chunk_ids)s::bigint[], %(claim_tokens)s::uuid[]) AS mine (id, token)
      ON c.id = mine.id AND c.claim_token = mine.token
    WHERE c.state = 'claimed'
    ORDER BY c.id
    FOR UPDATE OF c
), batch AS (
    -- ... then their batch, shared (the InitPlan on held runs before this row is
    -- locked), to see whether it still processes. A cancel, which locks every
    -- chunk of its batch first, either ran wholly before this (this sees the
    -- batch stopped) or runs wholly after (it sees the chunks ready and drops
    -- them from the queue).
    SELECT b.id, b.status = 'processing' AS live
    FROM batches AS b
    WHERE b.id IN (SELECT batch_id FROM held) AND (SELECT count(*) FROM held) >= 0
    FOR SHARE OF b
), requeued AS (
    UPDATE chunks AS c
    SET state = 'ready',
        attempts = c.attempts - CASE WHEN %(count_attempt)s THEN 0 ELSE 1 END,
        claim_token = NULL,
        lease_expires_at = NULL,
        last_error = coalesce(%(error)s, c.last_error),
        available_at = now() + make_interval(secs => %(backoff_seconds)s)
    FROM held JOIN batch ON batch.id = held.batch_id
    WHERE c.id = held.id AND batch.live
    RETURNING c.id
), closed AS (
    DELETE FROM chunks AS c USING held JOIN batch ON batch.id = held.batch_id
    WHERE c.id = held.id AND NOT batch.live
    RETURNING c.id
)
SELECT id, true AS requeued FROM requeued
UNION ALL
SELECT id, false FROM closed;

-- name: chunks_release_expired
-- Put chunks whose lease ran out (their runner died or froze) back in the queue, or close them out if their batch stopped processing.
WITH expired AS (
    -- Lock order as in chunks_return: the chunks in id order, then their
    -- batches shared. SKIP LOCKED: what someone else is working on right now
    -- (its holder finishing late, a cancel) is left for the next turn.
    SELECT c.id, c.batch_id, c.first_row, c.last_row, c.claimed_by
    FROM chunks AS c
    WHERE c.state = 'claimed' AND c.lease_expires_at < now()
    ORDER BY c.id
    FOR UPDATE OF c SKIP LOCKED
), batch AS (
    SELECT b.id, b.status = 'processing' AS live
    FROM batches AS b
    WHERE b.id IN (SELECT batch_id FROM expired) AND (SELECT count(*) FROM expired) >= 0
    FOR SHARE OF b SKIP LOCKED
), requeued AS (
    UPDATE chunks AS c
    SET state = 'ready',
        claim_token = NULL,
        lease_expires_at = NULL,
        last_error = 'lease expired while held by ' || expired.claimed_by
    FROM expired JOIN batch ON batch.id = expired.batch_id
    WHERE c.id = expired.id AND batch.live
    RETURNING c.id
), closed AS (
    DELETE FROM chunks AS c USING expired JOIN batch ON batch.id = expired.batch_id
    WHERE c.id = expired.id AND NOT batch.live
    RETURNING c.id
)
-- A chunk whose batch row was locked (skipped) is neither: it waits for the next turn.
SELECT expired.id, expired.batch_id, expired.claimed_by, batch.live AS requeued
FROM expired JOIN batch ON batch.id = expired.batch_id;

-- name: chunks_renew_leases
-- Extend the leases the caller still holds (by token) while it scores a long round.
WITH held AS (
    -- Lock order: chunks in id order, as every queue statement takes them.
    SELECT c.id
    FROM chunks AS c
    JOIN unnest(%(chunk_ids)s::bigint[], %(claim_tokens)s::uuid[]) AS mine (id, token)
      ON c.id = mine.id AND c.claim_token = mine.token
    WHERE c.state = 'claimed'
    ORDER BY c.id
    FOR UPDATE OF c
)
UPDATE chunks AS c
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
FROM held
WHERE c.id = held.id
RETURNING c.id;

-- name: chunks_delete_done
-- Drop a finished batch's done chunks (the queue keeps only live work), in id order; those someone else holds (a cancel or a delete, which drop them anyway) are skipped.
DELETE FROM chunks
WHERE id IN (SELECT id FROM chunks WHERE batch_id = %(batch_id)s AND state = 'done'
             ORDER BY id FOR UPDATE SKIP LOCKED);

-- name: chunks_sweep_done
-- Housekeeping: drop the done chunks of batches no longer processing that a runner could not drop right after it finished them (its connection went, or the drop failed); the queue is small, so this reads it whole, a bounded number at a time, skipping chunks someone holds.
DELETE FROM chunks
WHERE id IN (
    SELECT c.id FROM chunks AS c JOIN batches AS b ON b.id = c.batch_id
    WHERE c.state = 'done' AND b.status <> 'processing'
    ORDER BY c.id
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
);

-- name: chunks_in_hand_of_batch
-- Whether a runner holds one of a batch's chunks (a cancelled batch's chunks in hand still commit rows).
SELECT EXISTS (SELECT 1 FROM chunks WHERE batch_id = %(batch_id)s AND state = 'claimed');
