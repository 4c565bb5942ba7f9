-- name: batch_inputs_copy
-- Stream the uploaded rows into batch_inputs, where they stay for the batch's life (cursor.copy; binary: less to format here and to parse there).
COPY batch_inputs (batch_id, row_number, line_number, client_id, text, problem, fields) FROM STDIN (FORMAT BINARY);

-- name: batch_inputs_disk_probe
-- Whether the disk under the database's tablespace (where uploads write batch_inputs) has room: a sort of 5,000 integers spills to a temporary file there (run after work_mem is set to 64kB), which a full disk refuses with 53100; nothing is kept.
SELECT count(*) FROM (SELECT g FROM generate_series(1, 5000) AS g ORDER BY g DESC OFFSET 0) AS spilled;
