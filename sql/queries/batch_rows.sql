-- name: batch_rows_copy
-- Stream the uploaded rows into staging (cursor.copy; binary: less to format here and to parse there).
COPY batch_rows (batch_id, row_number, line_number, client_id, text, problem) FROM STDIN (FORMAT BINARY);
