-- name: batch_rows_copy
-- Stream the uploaded rows into staging (used with cursor.copy).
COPY batch_rows (batch_id, row_number, client_id, text) FROM STDIN;
