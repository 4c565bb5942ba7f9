-- Ready-to-paste queries for people running the service. psql "$DATABASE_URL" -f sql/inspect.sql
-- runs them all; or copy the one you need.

-- Progress, speed and estimated finish of the latest batches.
SELECT * FROM batch_progress ORDER BY created_at DESC LIMIT 20;

-- The queue, per batch with work left.
SELECT * FROM queue_depth ORDER BY batch;

-- Who works on what, since when.
SELECT * FROM runner_activity ORDER BY runner;

-- What is stuck: chunks held past their lease (their runner died or froze; the
-- next runner housekeeping requeues them), and chunks that needed retries.
SELECT c.id, b.public_id, c.claimed_by, c.claimed_at, c.lease_expires_at, c.attempts, c.last_error
FROM chunks c JOIN batches b ON b.id = c.batch_id
WHERE (c.state = 'claimed' AND c.lease_expires_at < now()) OR c.attempts > 1
ORDER BY c.attempts DESC, c.claimed_at;

-- What failed and why: rows whose scoring failed, newest batches first.
SELECT b.public_id, r.row_number, i.line_number, i.client_id, left(r.error, 120) AS error
FROM batch_results r JOIN batches b ON b.id = r.batch_id
JOIN batch_inputs i ON i.batch_id = r.batch_id AND i.row_number = r.row_number
WHERE r.error IS NOT NULL
ORDER BY b.created_at DESC, r.row_number
LIMIT 50;

-- Rows set aside at upload, by reason.
SELECT b.public_id, e.reason, count(*) AS rows
FROM batch_row_errors e JOIN batches b ON b.id = e.batch_id
GROUP BY b.public_id, e.reason
ORDER BY rows DESC
LIMIT 50;

-- Slowest chunks of the batches still processing (done chunks are kept until their batch finishes).
SELECT b.public_id, c.id, c.first_row, c.last_row, c.claimed_by, c.finished_at - c.claimed_at AS took
FROM chunks c JOIN batches b ON b.id = c.batch_id
WHERE c.state = 'done'
ORDER BY took DESC
LIMIT 20;

-- Largest batches, with their share of the database.
SELECT public_id, status, total_count, created_at,
       pg_size_pretty(total_count * ((SELECT coalesce(avg(pg_column_size(i.*)), 0)
                                      FROM (SELECT * FROM batch_inputs LIMIT 1000) i)
                                     + (SELECT coalesce(avg(pg_column_size(r.*)), 0)
                                        FROM (SELECT * FROM batch_results LIMIT 1000) r))::bigint) AS approx_size
FROM batches ORDER BY total_count DESC LIMIT 20;
