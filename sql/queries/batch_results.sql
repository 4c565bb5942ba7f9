-- name: batch_results_page
-- One keyset page of results: an index range on the primary key, whatever the depth.
SELECT row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error
FROM batch_results
WHERE batch_id = %(batch_id)s
  AND row_number > %(after_row)s
ORDER BY row_number
LIMIT %(limit)s;

-- name: batch_results_page_by_sentiment
-- One keyset page of the results with one sentiment: a range of batch_results_sentiment_idx.
SELECT row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error
FROM batch_results
WHERE batch_id = %(batch_id)s
  AND sentiment = %(sentiment)s
  AND row_number > %(after_row)s
ORDER BY row_number
LIMIT %(limit)s;

-- name: batch_results_page_before
-- One keyset page backwards (the batch page's Previous link): the same index range, read in reverse.
SELECT row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error
FROM batch_results
WHERE batch_id = %(batch_id)s
  AND row_number < %(before_row)s
ORDER BY row_number DESC
LIMIT %(limit)s;

-- name: batch_results_page_by_sentiment_before
-- One keyset page backwards of the results with one sentiment: batch_results_sentiment_idx in reverse.
SELECT row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error
FROM batch_results
WHERE batch_id = %(batch_id)s
  AND sentiment = %(sentiment)s
  AND row_number < %(before_row)s
ORDER BY row_number DESC
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
SELECT row_number, line_number, client_id, text, sentiment, score, compound, pos, neu, neg, error
FROM batch_results
WHERE batch_id = %(batch_id)s
ORDER BY row_number;

-- name: batch_results_ordered
-- One keyset page of results in an order of core/batches/ordering.py ({columns}, {filter}, {after}, {order}): a range of the primary key, batch_results_sentiment_idx or batch_results_compound_idx, whatever the depth.
SELECT {columns}
FROM batch_results
WHERE batch_id = %(batch_id)s AND {filter} {after}
ORDER BY {order}
LIMIT %(limit)s;

-- name: batch_results_partitions_ensure
-- Make sure the partitions of batch_results and batch_row_errors that hold one batch exist (make = false: only whether they do), and keep the purge off them until commit (core/batches/partitions.py).
SELECT batch_partitions_ensure(%(batch_id)s, %(make)s) AS covered;

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
  AND c.relname ~ '^batch_(results|row_errors)_(p[0-9]+|legacy)$'
  AND NOT EXISTS (SELECT 1 FROM pg_inherits AS i WHERE i.inhrelid = c.oid)
  AND obj_description(c.oid, 'pg_class') = %(mark)s
ORDER BY c.relname
LIMIT %(limit)s;

-- name: batch_results_partitions_droppable
-- Partitions (of batch_results and batch_row_errors) that can go whole: every batch id of their range was handed out, and every batch of it is deleted or gone; ranges in order, pending detaches first.
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
