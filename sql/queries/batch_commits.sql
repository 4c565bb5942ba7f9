-- name: batch_commits_rows_after
-- At most `chunks` committed chunks after a position (seq, chunk) of a batch's commit log, in commit order, each as one row: its rows' count and their JSON (results-page items joined by commas, or with `export` results.ndjson lines); a range of batch_commits' primary key, then each chunk's ranges of the results' and inputs' primary keys, joined. A chunk with no rows left still comes, with none, so the position passes it.
WITH entries AS (
    -- seq >= after_seq bounds the index range; the row comparison then drops
    -- the chunks of entry after_seq that the reader has had.
    SELECT c.seq, r.chunk, r.first_row, r.last_row
    FROM batch_commits AS c
    CROSS JOIN LATERAL unnest(c.first_rows, c.last_rows) WITH ORDINALITY AS r (first_row, last_row, chunk)
    WHERE c.batch_id = %(batch_id)s AND c.seq >= %(after_seq)s
      AND (c.seq, r.chunk) > (%(after_seq)s::integer, %(after_chunk)s::bigint)
    ORDER BY c.seq, r.chunk
    LIMIT %(chunks)s
)
SELECT e.seq, e.chunk::integer AS chunk, count(x.row_number)::integer AS rows,
       -- Each row's JSON is written here, in C, once per chunk for all of its followers: the
       -- members of rows.RESULT_MEMBERS (error and fields only when set) or, for `export`,
       -- rows.EXPORT_COLUMNS and fields, in their order (tests compare them with both). A label is
       -- one of three plain words, so it is quoted rather than escaped by to_json.
       coalesce(string_agg(x.json, CASE WHEN %(export)s THEN E'\n' ELSE ',' END ORDER BY x.row_number), '')
           AS json
FROM entries AS e
LEFT JOIN (SELECT field_names FROM batches WHERE id = %(batch_id)s) AS names ON true
LEFT JOIN LATERAL (
    SELECT j.row_number,
           CASE WHEN %(export)s THEN
               '{"id":' || to_json(j.client_id) || ',"text":' || to_json(j.text)
               || ',"sentiment":' || coalesce('"' || vader_label(j.compound) || '"', 'null')
               || ',"score":' || json_number(abs(j.compound))
               || ',"compound":' || json_number(j.compound)
               || ',"pos":' || json_number(j.pos)
               || ',"neu":' || json_number(j.neu)
               || ',"neg":' || json_number(j.neg)
               || ',"error":' || coalesce(to_json(j.error)::text, 'null')
               || coalesce(',"fields":' || json_object(names.field_names, j.fields)::text, '') || '}'
           ELSE
               '{"row":' || j.row_number || ',"line":' || coalesce(j.line_number::text, 'null')
               || ',"id":' || to_json(j.client_id) || ',"text":' || to_json(j.text)
               || ',"sentiment":' || coalesce('"' || vader_label(j.compound) || '"', 'null')
               || ',"score":' || json_number(abs(j.compound))
               || ',"compound":' || json_number(j.compound)
               || coalesce(',"error":' || to_json(j.error), '')
               || coalesce(',"fields":' || json_object(names.field_names, j.fields)::text, '') || '}'
           END AS json
    FROM (
        -- One chunk's results and inputs: two ranges of primary keys, each read once, then joined.
        -- A FULL JOIN runs only as a merge or a hash join: the planner cannot make it a loop that
        -- reads one range per row of the other, as it did for an inner join whenever the
        -- partitions' statistics (analyzed seldom, by design) said they were empty. The fence
        -- (OFFSET 0) keeps the filter below from turning it into an inner join.
        SELECT r.row_number, r.compound, r.pos, r.neu, r.neg, r.error,
               i.row_number AS input_row, i.line_number, i.client_id, i.text, i.fields
        FROM (SELECT * FROM batch_results
              WHERE batch_id = %(batch_id)s AND row_number BETWEEN e.first_row AND e.last_row) AS r
        FULL JOIN (SELECT * FROM batch_inputs
                   WHERE batch_id = %(batch_id)s AND row_number BETWEEN e.first_row AND e.last_row) AS i
            ON i.row_number = r.row_number
        OFFSET 0
    ) AS j
    WHERE j.row_number IS NOT NULL AND j.input_row IS NOT NULL
) AS x ON true
GROUP BY e.seq, e.chunk
ORDER BY e.seq, e.chunk;

-- name: batch_commits_follow_state
-- What followers of some batches wait for, in one read for all of them: each batch's row (gone once deleted), and whether a runner still holds one of its chunks (a cancelled batch's chunks in hand still commit).
SELECT {columns},
       -- Only a cancelled batch can be final with chunks in hand (the cancel deletes its others).
       b.status = 'cancelled'
       AND EXISTS (SELECT 1 FROM chunks AS c WHERE c.batch_id = b.id AND c.state = 'claimed') AS in_hand
FROM batches AS b
WHERE b.id = ANY(%(batch_ids)s) AND b.deleted_at IS NULL;

-- name: batch_commits_wal_positions
-- Where the WAL stands: its insert and flush positions, in bytes (a follower waits for the flush to pass what it was shown).
SELECT pg_current_wal_insert_lsn() - '0/0' AS written, pg_current_wal_flush_lsn() - '0/0' AS flushed;

-- name: batch_commits_chunk_count
-- How many chunks one entry of a batch's commit log holds (to check a follower's resume position).
SELECT cardinality(first_rows) FROM batch_commits WHERE batch_id = %(batch_id)s AND seq = %(seq)s;
