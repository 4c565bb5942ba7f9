-- name: batch_results_move_scored
-- Move a chunk's rows from staging to results, joined with their scores.
-- One statement: the rows leave staging exactly when their results appear.
WITH moved AS (
    DELETE FROM batch_rows
    WHERE batch_id = %(batch_id)s
      AND row_number BETWEEN %(first_row)s AND %(last_row)s
    RETURNING row_number, line_number, client_id, text
)
INSERT INTO batch_results
    (batch_id, row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error)
SELECT %(batch_id)s, moved.row_number, moved.line_number, moved.client_id, moved.text,
       s.sentiment, s.score, s.compound, s.pos, s.neu, s.neg, s.error
FROM moved
JOIN unnest(%(row_numbers)s::integer[], %(sentiments)s::text[],
            %(scores)s::float8[], %(compounds)s::float8[],
            %(pos)s::float8[], %(neu)s::float8[], %(neg)s::float8[], %(errors)s::text[])
     AS s (row_number, sentiment, score, compound, pos, neu, neg, error)
  USING (row_number);

-- name: batch_results_page
-- One keyset page of results: an index range on the primary key, whatever the depth.
SELECT row_number, line_number, client_id, text, sentiment, score, compound, error
FROM batch_results
WHERE batch_id = %(batch_id)s
  AND row_number > %(after_row)s
ORDER BY row_number
LIMIT %(limit)s;

-- name: batch_results_page_by_sentiment
-- One keyset page of the results with one sentiment: a range of batch_results_sentiment_idx.
SELECT row_number, line_number, client_id, text, sentiment, score, compound, error
FROM batch_results
WHERE batch_id = %(batch_id)s
  AND sentiment = %(sentiment)s
  AND row_number > %(after_row)s
ORDER BY row_number
LIMIT %(limit)s;

-- name: batch_results_export_csv
-- Every result of a batch as CSV for COPY ... TO STDOUT, cells that a spreadsheet would run as formulas defused.
COPY (
    -- OWASP CSV injection: a cell starting with = + - @ TAB or CR gets a leading quote.
    SELECT CASE WHEN client_id ~ '^[=+@\t\r-]' THEN '''' || client_id ELSE client_id END AS id,
           CASE WHEN text ~ '^[=+@\t\r-]' THEN '''' || text ELSE text END AS text,
           sentiment, score, compound, pos, neu, neg, error
    FROM batch_results
    WHERE batch_id = {batch_id}
    ORDER BY row_number
) TO STDOUT (FORMAT csv, HEADER);

-- name: batch_results_export_rows
-- Every result of a batch in file order, for streaming exports through a server-side cursor.
SELECT client_id, text, sentiment, score, compound, pos, neu, neg, error
FROM batch_results
WHERE batch_id = %(batch_id)s
ORDER BY row_number;
