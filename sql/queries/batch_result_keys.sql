-- name: batch_result_keys_written
-- Whether a batch's sort keys are written (one index probe of result_checkpoints).
SELECT EXISTS (SELECT 1 FROM result_checkpoints
               WHERE batch_id = %(batch_id)s AND listing = 'keys' AND rank = 0) AS written;

-- name: batch_result_keys_write
-- Write a final batch's sort keys in one pass, once: its scored rows' label and compound, in file order; whether they are written (not while a runner still holds a chunk of it: a cancelled batch's chunks in hand still finish).
WITH serialised AS (
    -- Two first requests for a listing write the keys once: the second waits
    -- here for the first to commit, then finds the mark.
    SELECT pg_advisory_xact_lock(20562, hashtext(%(batch_id)s::bigint::text)) AS locked
), state AS (
    SELECT NOT EXISTS (SELECT 1 FROM chunks WHERE batch_id = %(batch_id)s AND state = 'claimed') AS settled,
           EXISTS (SELECT 1 FROM result_checkpoints
                   WHERE batch_id = %(batch_id)s AND listing = 'keys' AND rank = 0) AS already
    FROM serialised
), written AS (
    INSERT INTO batch_result_keys (batch_id, row_number, sentiment, compound)
    SELECT %(batch_id)s, r.row_number, vader_label(r.compound), r.compound
    FROM batch_results AS r, state
    WHERE state.settled AND NOT state.already AND r.batch_id = %(batch_id)s AND r.error IS NULL
    ORDER BY r.row_number
), marked AS (
    INSERT INTO result_checkpoints (batch_id, listing, rank, position)
    SELECT %(batch_id)s, 'keys', 0, NULL FROM state WHERE state.settled AND NOT state.already
)
SELECT settled OR already AS written FROM state;

-- name: batch_result_keys_page
-- One keyset page of the results with one sentiment, in file order: a range of batch_result_keys_sentiment_idx, then the rows it names.
SELECT i.row_number, i.line_number, i.client_id, i.text, k.sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error
FROM batch_result_keys AS k
JOIN batch_results AS r ON r.batch_id = %(batch_id)s AND r.row_number = k.row_number
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = k.row_number
WHERE k.batch_id = %(batch_id)s
  AND k.sentiment = %(sentiment)s
  AND k.row_number > %(after_row)s
ORDER BY k.row_number
LIMIT %(limit)s;

-- name: batch_result_keys_page_before
-- One keyset page backwards of the results with one sentiment: batch_result_keys_sentiment_idx in reverse.
SELECT i.row_number, i.line_number, i.client_id, i.text, k.sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error
FROM batch_result_keys AS k
JOIN batch_results AS r ON r.batch_id = %(batch_id)s AND r.row_number = k.row_number
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = k.row_number
WHERE k.batch_id = %(batch_id)s
  AND k.sentiment = %(sentiment)s
  AND k.row_number < %(before_row)s
ORDER BY k.row_number DESC
LIMIT %(limit)s;
