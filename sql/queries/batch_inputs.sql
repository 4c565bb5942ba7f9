-- name: batch_inputs_copy
-- Stream the uploaded rows into batch_inputs, where they stay for the batch's life (cursor.copy; binary: less to format here and to parse there).
COPY batch_inputs (batch_id, row_number, line_number, client_id, text, problem, fields) FROM STDIN (FORMAT BINARY);

-- name: batch_inputs_disk_probe
-- Whether the disk under the database's tablespace (where uploads write batch_inputs) has room: a sort of 5,000 integers spills to a temporary file there (run after work_mem is set to 64kB), which a full disk refuses with 53100; nothing is kept.
SELECT count(*) FROM (SELECT g FROM generate_series(1, 5000) AS g ORDER BY g DESC OFFSET 0) AS spilled;

-- name: batch_inputs_widen_fields
-- Pad the fields of a batch's first valid rows with empty values up to one per field name, in the upload's transaction (a JSON Lines file's key first seen after they were written).
UPDATE batch_inputs
   SET fields = coalesce(fields, '{}') || array_fill(''::text, ARRAY[%(width)s - cardinality(coalesce(fields, '{}'))])
 WHERE batch_id = %(batch_id)s AND row_number BETWEEN 1 AND %(last_row)s
   AND cardinality(coalesce(fields, '{}')) < %(width)s;
