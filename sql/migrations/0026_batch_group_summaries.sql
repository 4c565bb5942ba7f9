-- A final batch's results summed up per value of one of its kept columns
-- (batches.field_names): the 1,000 largest groups and the rest folded into
-- one, written by the first read of that column once the batch is final with
-- no chunk in a runner's hands, then only read.
CREATE TABLE batch_group_summaries (
    batch_id      bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    field_name    text NOT NULL,
    rank          integer NOT NULL CHECK (rank BETWEEN 0 AND 1000),
    value         text,
    groups        bigint NOT NULL CHECK (groups >= 0),
    row_count     bigint NOT NULL,
    positive      bigint NOT NULL CHECK (positive >= 0),
    negative      bigint NOT NULL CHECK (negative >= 0),
    neutral       bigint NOT NULL CHECK (neutral >= 0),
    failed        bigint NOT NULL CHECK (failed >= 0),
    compound_sum  double precision,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, field_name, rank),
    CONSTRAINT batch_group_summaries_other CHECK ((rank = 0) = (value IS NULL) AND (rank = 0 OR groups = 1)),
    CONSTRAINT batch_group_summaries_counts_add_up CHECK (row_count = positive + negative + neutral + failed)
);
COMMENT ON TABLE batch_group_summaries IS
    'A final batch''s results per value of one kept column, counted once no runner holds one of its '
    'chunks: the 1,000 largest groups (rank 1, 2, ...: most rows first, then value in byte order) and '
    'rank 0, the rest folded together (always present: it marks the column as counted). Kept, never '
    'recomputed.';
COMMENT ON COLUMN batch_group_summaries.field_name IS 'The kept column (one of batches.field_names).';
COMMENT ON COLUMN batch_group_summaries.value IS 'The group''s value of the column; NULL on rank 0.';
COMMENT ON COLUMN batch_group_summaries.groups IS
    'Distinct values the row counts: 1 for a group, how many were folded together on rank 0.';
COMMENT ON COLUMN batch_group_summaries.row_count IS
    'Results of the group: positive + negative + neutral + failed (rows whose scoring failed).';
COMMENT ON COLUMN batch_group_summaries.compound_sum IS
    'The sum of the group''s compound scores (failed rows have none); NULL when none was scored. '
    'The mean is compound_sum / (positive + negative + neutral).';
COMMENT ON COLUMN batch_group_summaries.computed_at IS 'When the groups were counted.';

ALTER TABLE batch_group_summaries ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_group_summaries_own ON batch_group_summaries TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_group_summaries_all ON batch_group_summaries TO sentiment_web_admin USING (true);
REVOKE UPDATE, DELETE ON batch_group_summaries FROM sentiment_web, sentiment_web_admin;
