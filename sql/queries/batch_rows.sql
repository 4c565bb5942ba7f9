-- name: batch_rows_copy
-- Stream the uploaded rows into staging (used with cursor.copy).
COPY batch_rows (batch_id, row_number, line_number, client_id, text, problem) FROM STDIN;
