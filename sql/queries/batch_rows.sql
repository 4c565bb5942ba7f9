-- name: batch_rows_copy
-- Stream the uploaded rows into staging (cursor.copy; binary: less to format here and to parse there).
COPY batch_rows (batch_id, row_number, line_number, client_id, text, problem) FROM STDIN (FORMAT BINARY);

-- name: batch_rows_delete_unclaimed
-- Drop a cancelled batch's staged rows, except those of chunks runners hold right now.
DELETE FROM batch_rows AS r
WHERE r.batch_id = %(batch_id)s
  AND NOT EXISTS (
      SELECT 1 FROM chunks AS c
      WHERE c.batch_id = r.batch_id AND c.state = 'claimed'
        AND r.row_number BETWEEN c.first_row AND c.last_row
  );
