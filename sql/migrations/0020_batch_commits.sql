-- A batch's results in the order they committed, for followers of a running
-- batch (GET /batch/<id>/events): each finish of a batch's chunks adds one
-- entry, numbered under the batch row's lock that the finish already takes, so
-- the numbers follow commit order and any snapshot sees a gapless prefix of
-- them. A reader that has passed entry n can never be overtaken by a later
-- commit that lands before it.
ALTER TABLE batches ADD COLUMN commit_seq integer NOT NULL DEFAULT 0 CHECK (commit_seq >= 0);
COMMENT ON COLUMN batches.commit_seq IS
    'Entries of batch_commits so far: the seq of the last finish that committed this batch''s results.';

CREATE TABLE batch_commits (
    batch_id    bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    seq         integer NOT NULL CHECK (seq > 0),
    first_rows  integer[] NOT NULL,
    last_rows   integer[] NOT NULL,
    PRIMARY KEY (batch_id, seq),
    CONSTRAINT batch_commits_ranges
        CHECK (cardinality(first_rows) > 0 AND cardinality(first_rows) = cardinality(last_rows))
);
COMMENT ON TABLE batch_commits IS
    'One entry per finish of a batch''s chunks, numbered 1, 2, ... in commit order (batches.commit_seq '
    'is the last): the row ranges, one per chunk in row order, whose results that finish wrote.';

ALTER TABLE batch_commits ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_commits_own ON batch_commits TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_commits_all ON batch_commits TO sentiment_web_admin USING (true);
REVOKE INSERT, UPDATE, DELETE ON batch_commits FROM sentiment_web, sentiment_web_admin;

-- Results written before this migration: one entry per chunk-sized range that
-- holds results (a chunk's results commit together, so such a range is whole).
WITH ranges AS (
    SELECT b.id AS batch_id, r.first_row, least(r.first_row + b.chunk_size - 1, b.total_count) AS last_row
    FROM batches AS b
    CROSS JOIN LATERAL generate_series(1, b.total_count, b.chunk_size) AS r (first_row)
    WHERE EXISTS (SELECT 1 FROM batch_results AS x
                  WHERE x.batch_id = b.id AND x.row_number BETWEEN r.first_row
                        AND r.first_row + b.chunk_size - 1)
), numbered AS (
    SELECT batch_id, first_row, last_row,
           row_number() OVER (PARTITION BY batch_id ORDER BY first_row) AS seq
    FROM ranges
), logged AS (
    INSERT INTO batch_commits (batch_id, seq, first_rows, last_rows)
    SELECT batch_id, seq, ARRAY[first_row], ARRAY[last_row] FROM numbered
    RETURNING batch_id, seq
)
UPDATE batches AS b SET commit_seq = l.last
FROM (SELECT batch_id, max(seq) AS last FROM logged GROUP BY batch_id) AS l
WHERE b.id = l.batch_id;
