-- name: batch_results_page
-- One keyset page of results in file order: one range of the primary key of batch_results, joined to the same range of batch_inputs, whatever the depth.
SELECT i.row_number, i.line_number, i.client_id, i.text, vader_label(r.compound) AS sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error,
       json_object((SELECT field_names FROM batches WHERE id = %(batch_id)s), i.fields) AS fields
FROM batch_results AS r
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = r.row_number
WHERE r.batch_id = %(batch_id)s
  AND r.row_number > %(after_row)s
  -- The same bound on the inputs: the planner does not carry an inequality across the join, and
  -- a merge join would read the inputs from the batch's first row to reach the page.
  AND i.row_number > %(after_row)s
ORDER BY r.row_number
LIMIT %(limit)s;

-- name: batch_results_page_before
-- One keyset page backwards (the batch page's Previous link): the same index ranges, read in reverse.
SELECT i.row_number, i.line_number, i.client_id, i.text, vader_label(r.compound) AS sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error,
       json_object((SELECT field_names FROM batches WHERE id = %(batch_id)s), i.fields) AS fields
FROM batch_results AS r
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = r.row_number
WHERE r.batch_id = %(batch_id)s
  AND r.row_number < %(before_row)s
  AND i.row_number < %(before_row)s
ORDER BY r.row_number DESC
LIMIT %(limit)s;

-- name: batch_results_export_csv
-- Every result of a batch as CSV for COPY ... TO STDOUT, cells that a spreadsheet would run as formulas defused; {fields} are the batch's kept columns, defused alike (core/batches/store.py), {header} whether COPY writes the header (not when store.py does).
COPY (
    -- OWASP CSV injection: a cell starting with = + - @ TAB or CR gets a leading quote.
    SELECT CASE WHEN i.client_id ~ '^[=+@\t\r-]' THEN '''' || i.client_id ELSE i.client_id END AS id,
           CASE WHEN i.text ~ '^[=+@\t\r-]' THEN '''' || i.text ELSE i.text END AS text,
           vader_label(r.compound) AS sentiment, abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg,
           r.error{fields}
    FROM batch_results AS r
    JOIN batch_inputs AS i ON i.batch_id = {batch_id} AND i.row_number = r.row_number
    WHERE r.batch_id = {batch_id}
    ORDER BY r.row_number
) TO STDOUT (FORMAT csv, HEADER {header});

-- name: batch_results_export_csv_field
-- One kept column of batch_results_export_csv: the k-th value of the row's fields, defused as the other cells are.
CASE WHEN i.fields[{k}] ~ '^[=+@\t\r-]' THEN '''' || i.fields[{k}] ELSE i.fields[{k}] END

-- name: batch_results_export_rows
-- Every result of a batch in file order, for streaming exports through a server-side cursor.
SELECT i.row_number, i.line_number, i.client_id, i.text, vader_label(r.compound) AS sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error,
       json_object((SELECT field_names FROM batches WHERE id = %(batch_id)s), i.fields) AS fields
FROM batch_results AS r
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = r.row_number
WHERE r.batch_id = %(batch_id)s
ORDER BY r.row_number;

-- name: batch_results_ordered
-- One keyset page of results in an order of core/batches/ordering.py ({source}, {keys}, {filter}, {after}, {order}, {outer_order}): a range of the primary key of batch_results or of an index of batch_result_keys, then the rows it names, whatever the depth.
SELECT i.row_number, i.line_number, i.client_id, i.text, vader_label(r.compound) AS sentiment,
       abs(r.compound) AS score, r.compound, r.pos, r.neu, r.neg, r.error,
       json_object((SELECT field_names FROM batches WHERE id = %(batch_id)s), i.fields) AS fields
FROM (
    SELECT {keys} FROM {source}
    WHERE batch_id = %(batch_id)s AND {filter} {after}
    ORDER BY {order}
    LIMIT %(limit)s
) AS k
JOIN batch_results AS r ON r.batch_id = %(batch_id)s AND r.row_number = k.row_number
JOIN batch_inputs AS i ON i.batch_id = %(batch_id)s AND i.row_number = k.row_number
ORDER BY {outer_order};

-- name: batch_results_ordered_keys
-- The keys alone of one keyset range in an order of core/batches/ordering.py, as batch_results_ordered reads them: an index-only range.
SELECT {keys} FROM {source}
WHERE batch_id = %(batch_id)s AND {filter} {after}
ORDER BY {order}
LIMIT %(limit)s;

-- name: batch_results_partitions_ensure
-- Make sure the partitions of every partitioned batch table that hold one batch exist (make = false: only whether they do), and keep the purge off them until commit (core/batches/partitions.py).
SELECT batch_partitions_ensure(%(batch_id)s, %(make)s) AS covered;

-- name: batch_results_partitions_keeper
-- Whether this login may make, detach and drop the partitions of the row tables (their owner, a member of the owner's role with its privileges, or a superuser), and who owns them; true before the migrations made the tables.
SELECT coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), true) AS may_keep,
       pg_get_userbyid(c.relowner) AS owner, current_user AS login
FROM (SELECT to_regclass('public.batch_results') AS oid) AS t
LEFT JOIN pg_class AS c ON c.oid = t.oid;

-- name: batch_results_partitions_make_ahead
-- Make the partitions of the next batch ids to be handed out, and of the range after them, ahead of the uploads (runners' housekeeping).
SELECT batch_partitions_ensure(CASE WHEN is_called THEN last_value + 1 ELSE last_value END
                               + k * batch_partition_span())
FROM batches_id_seq, generate_series(0, 1) AS k;

-- name: batch_results_partitions_orphaned
-- Partitions detached but never dropped (a runner stopped between the two): tables named as partitions are, attached to nothing, that carry the mark the purge comments a partition with before it detaches it (so a partition an operator restores from an archive is left alone).
SELECT c.relname AS partition
FROM pg_class AS c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
  AND c.relname ~ '^batch_(inputs|results|row_errors|result_keys)_(p[0-9]+|legacy)$'
  AND NOT EXISTS (SELECT 1 FROM pg_inherits AS i WHERE i.inhrelid = c.oid)
  AND obj_description(c.oid, 'pg_class') = %(mark)s
ORDER BY c.relname
LIMIT %(limit)s;

-- name: batch_results_partition_autovacuum_wait
-- Seconds a lock request on a partition must wait to have an autovacuum worker that holds it cancelled: deadlock_timeout and one more second when one does, else 0.
SELECT CASE WHEN EXISTS (
           SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
           WHERE l.relation = to_regclass(%(partition)s) AND a.backend_type = 'autovacuum worker'
             -- One that prevents wraparound is never cancelled: waiting for it would only cost the turn.
             AND a.query NOT LIKE '%%(to prevent wraparound)'
       ) THEN extract(epoch FROM current_setting('deadlock_timeout')::interval)::float8 + 1 ELSE 0 END
       AS seconds;

-- name: batch_results_partitions_droppable
-- Partitions (of every partitioned batch table) that can go whole: every batch id of their range was handed out, and every batch of it is deleted or gone; ranges in order, pending detaches first.
WITH handed_out AS (
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS last_id FROM batches_id_seq
)
SELECT p.table_name, p.partition, p.first_batch, p.end_batch, p.detach_pending
FROM batch_partitions AS p, handed_out AS h
WHERE p.end_batch - 1 <= h.last_id
  AND NOT EXISTS (SELECT 1 FROM batches AS b
                  WHERE b.id < p.end_batch AND (p.first_batch IS NULL OR b.id >= p.first_batch)
                    AND b.deleted_at IS NULL)
ORDER BY p.detach_pending DESC, p.end_batch, p.table_name
LIMIT %(limit)s;
