-- name: batch_row_errors_move_from_inputs
-- Move the rows an upload set aside from batch_inputs to batch_row_errors (inside the upload transaction).
WITH moved AS (
    -- Set-aside rows were copied with row_number = -error_number, so the
    -- upload's one COPY stream carries every row, good or bad.
    DELETE FROM batch_inputs
    WHERE batch_id = %(batch_id)s AND row_number < 0
    RETURNING row_number, line_number, client_id, problem
)
INSERT INTO batch_row_errors (batch_id, error_number, line_number, client_id, reason, detail)
SELECT %(batch_id)s, -row_number, line_number, client_id,
       split_part(problem, E'\t', 1), split_part(problem, E'\t', 2)
FROM moved;

-- name: batch_row_errors_page
-- One keyset page of set-aside rows: an index range on the primary key.
SELECT error_number, line_number, client_id, reason, detail
FROM batch_row_errors
WHERE batch_id = %(batch_id)s
  AND error_number > %(after_row)s
ORDER BY error_number
LIMIT %(limit)s;
