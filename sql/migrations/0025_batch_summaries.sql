-- A final batch's compound scores summed up once: their mean and a 20-bin
-- histogram, written when the batch reaches a final state with no chunk in a
-- runner's hands (or by the first read of it after that), then only read.
CREATE TABLE batch_summaries (
    batch_id       bigint PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
    scored_count   bigint NOT NULL CHECK (scored_count >= 0),
    mean_compound  double precision,
    histogram      integer[] NOT NULL CHECK (cardinality(histogram) = 20),
    computed_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE batch_summaries IS
    'A final batch''s compound scores summed up once no runner holds one of its chunks: kept, never '
    'recomputed.';
COMMENT ON COLUMN batch_summaries.scored_count IS 'Rows with a compound score (failed rows have none).';
COMMENT ON COLUMN batch_summaries.mean_compound IS 'The mean compound score; NULL when no row has one.';
COMMENT ON COLUMN batch_summaries.histogram IS
    'Rows per bin of compound score: bin i holds [-1 + i/10, -0.9 + i/10), the last one also 1; a score '
    'is binned on its four decimals as an integer (least(19, (round(compound * 10000) + 10000) / 1000)).';
COMMENT ON COLUMN batch_summaries.computed_at IS 'When the summary was counted.';

ALTER TABLE batch_summaries ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_summaries_own ON batch_summaries TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_summaries_all ON batch_summaries TO sentiment_web_admin USING (true);
REVOKE UPDATE, DELETE ON batch_summaries FROM sentiment_web, sentiment_web_admin;
