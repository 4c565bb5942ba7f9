-- name: batch_result_keys_written
-- Whether a batch's sort keys are all written (one index probe of result_checkpoints).
SELECT EXISTS (SELECT 1 FROM result_checkpoints
               WHERE batch_id = %(batch_id)s AND listing = 'keys' AND rank = 0) AS written;

-- name: batch_result_keys_take
-- Take the right to write a batch's sort keys until commit, if no other request has it; no row if the batch is deleted or gone (it is then kept from the reaper until commit).
SELECT pg_try_advisory_xact_lock(20562, hashtext(%(batch_id)s::bigint::text)) AS mine
FROM batches
WHERE id = %(batch_id)s AND deleted_at IS NULL
FOR SHARE;

-- name: batch_result_keys_write
-- Write the next `step` row numbers' worth of a final batch's sort keys (its scored rows' label and compound) and note how far they reach; whether they are all written now. Run after batch_result_keys_take, in a statement of its own, so it sees what the previous writer committed.
WITH progress AS (
    -- How far the keys reach (result_checkpoints listing 'keys': rank 1 holds
    -- the last row number covered; rank 0 marks them all written).
    SELECT coalesce((SELECT (position #>> '{}')::integer FROM result_checkpoints
                     WHERE batch_id = %(batch_id)s AND listing = 'keys' AND rank = 1), 0) AS after,
           (SELECT coalesce(max(row_number), 0) FROM batch_results WHERE batch_id = %(batch_id)s) AS last
), written AS (
    -- One range of the results' primary key, in order.
    INSERT INTO batch_result_keys (batch_id, row_number, sentiment, compound)
    SELECT %(batch_id)s, r.row_number, vader_label(r.compound), r.compound
    FROM batch_results AS r, progress AS p
    WHERE r.batch_id = %(batch_id)s AND r.row_number > p.after AND r.row_number <= p.after + %(step)s
      AND r.error IS NULL
    ORDER BY r.row_number
    ON CONFLICT DO NOTHING
), noted AS (
    -- How far they reach now, or (all written) the mark in place of that note.
    INSERT INTO result_checkpoints (batch_id, listing, rank, position)
    SELECT %(batch_id)s, 'keys', 1, to_jsonb(p.after + %(step)s) FROM progress AS p
    WHERE p.after + %(step)s < p.last
    UNION ALL
    SELECT %(batch_id)s, 'keys', 0, NULL FROM progress AS p WHERE p.after + %(step)s >= p.last
    ON CONFLICT (batch_id, listing, rank) DO UPDATE SET position = excluded.position
), forgotten AS (
    DELETE FROM result_checkpoints AS c USING progress AS p
    WHERE c.batch_id = %(batch_id)s AND c.listing = 'keys' AND c.rank = 1 AND p.after + %(step)s >= p.last
)
SELECT after + %(step)s >= last AS complete FROM progress;

-- name: batch_result_keys_page
-- One keyset page of the results with one sentiment, in file order: a range of batch_result_keys_sentiment_idx, then the rows it names.
SELECT i.row_number, i.line_number, i.client_id, i.text, k.sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error,
       json_object((SELECT field_names FROM batches WHERE id = %(batch_id)s), i.fields) AS fields
FROM batch_result_keys AS k
JOIN batch_results AS r ON r.batch_id = %(batch_id)s AND r.row_number = k.row_number
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = k.row_number
WHERE k.batch_id = %(batch_id)s
  AND k.sentiment = %(sentiment)s
  AND k.row_number > %(after_row)s
  -- The same bound on the other two: the planner does not carry it across the joins.
  AND r.row_number > %(after_row)s AND i.row_number > %(after_row)s
ORDER BY k.row_number
LIMIT %(limit)s;

-- name: batch_result_keys_page_before
-- One keyset page backwards of the results with one sentiment: batch_result_keys_sentiment_idx in reverse.
SELECT i.row_number, i.line_number, i.client_id, i.text, k.sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error,
       json_object((SELECT field_names FROM batches WHERE id = %(batch_id)s), i.fields) AS fields
FROM batch_result_keys AS k
JOIN batch_results AS r ON r.batch_id = %(batch_id)s AND r.row_number = k.row_number
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = k.row_number
WHERE k.batch_id = %(batch_id)s
  AND k.sentiment = %(sentiment)s
  AND k.row_number < %(before_row)s
  AND r.row_number < %(before_row)s AND i.row_number < %(before_row)s
ORDER BY k.row_number DESC
LIMIT %(limit)s;
