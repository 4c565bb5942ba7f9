-- 0004: views for people in psql, and an index for results filtered by sentiment.

CREATE INDEX batch_results_sentiment_idx ON batch_results (batch_id, sentiment, row_number);

CREATE VIEW batch_progress AS
SELECT b.public_id AS batch,
       b.status,
       b.processed_count AS processed,
       b.failed_count AS failed,
       b.invalid_count AS invalid,
       b.total_count AS total,
       round(100.0 * (b.processed_count + b.failed_count + b.invalid_count)
             / nullif(b.total_count, 0), 1) AS percent,
       round(coalesce(recent.rows, 0) / 60.0, 1) AS rows_per_second,
       CASE WHEN b.status = 'processing' AND recent.rows > 0
            THEN now() + make_interval(secs => (b.total_count - b.processed_count - b.failed_count
                                                - b.invalid_count) / (recent.rows / 60.0))
       END AS estimated_finish,
       b.created_at,
       b.started_at,
       b.completed_at
FROM batches AS b
LEFT JOIN LATERAL (
    -- Rows of the chunks finished in the last minute (a batch's done chunks
    -- are kept until it finishes).
    SELECT sum(c.last_row - c.first_row + 1) AS rows
    FROM chunks AS c
    WHERE c.batch_id = b.id AND c.state = 'done' AND c.finished_at > now() - interval '1 minute'
) AS recent ON true;
COMMENT ON VIEW batch_progress IS
    'Every batch with its progress, its speed over the last minute and, while processing, '
    'an estimated finish at that speed.';
COMMENT ON COLUMN batch_progress.rows_per_second IS 'Rows scored per second over the last minute.';

CREATE VIEW queue_depth AS
SELECT b.public_id AS batch,
       b.status,
       count(*) FILTER (WHERE c.state = 'ready' AND c.available_at <= now()) AS ready,
       count(*) FILTER (WHERE c.state = 'ready' AND c.available_at > now()) AS backing_off,
       count(*) FILTER (WHERE c.state = 'claimed') AS claimed,
       count(*) FILTER (WHERE c.state = 'done') AS done,
       b.failed_count AS failed_rows,
       max(c.attempts) AS most_attempts
FROM batches AS b
JOIN chunks AS c ON c.batch_id = b.id
GROUP BY b.id, b.public_id, b.status, b.failed_count;
COMMENT ON VIEW queue_depth IS
    'Chunks per batch that has any: ready to claim, backing off after a failure, claimed '
    'by a runner, done. Finished batches have no chunks, so they do not appear.';

CREATE VIEW runner_activity AS
SELECT r.name AS runner,
       r.host,
       r.pid,
       r.scorer,
       r.started_at,
       now() - r.heartbeat_at AS silent_for,
       r.chunks_done,
       r.rows_done,
       b.public_id AS working_on,
       c.id AS chunk,
       c.last_row - c.first_row + 1 AS chunk_rows,
       c.claimed_at AS since,
       c.lease_expires_at
FROM runners AS r
LEFT JOIN chunks AS c ON c.claimed_by = r.name AND c.state = 'claimed'
LEFT JOIN batches AS b ON b.id = c.batch_id;
COMMENT ON VIEW runner_activity IS
    'Who works on what, since when: every live runner with the chunk it holds, if any.';
COMMENT ON COLUMN runner_activity.silent_for IS 'Time since the runner''s last heartbeat.';
