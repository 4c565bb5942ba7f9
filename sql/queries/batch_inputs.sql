-- name: batch_inputs_copy
-- Stream the uploaded rows into batch_inputs, where they stay for the batch's life (cursor.copy; binary: less to format here and to parse there).
COPY batch_inputs (batch_id, row_number, line_number, client_id, text, problem, fields) FROM STDIN (FORMAT BINARY);
