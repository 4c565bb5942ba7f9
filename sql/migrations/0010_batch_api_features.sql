-- What users of batch APIs expect: labels on a batch, its own expiry, safe
-- retries of an upload, and result pages in any order at any depth.

ALTER TABLE batches ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT batches_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object');
ALTER TABLE batches ADD COLUMN expires_after interval
    CONSTRAINT batches_expires_after_positive CHECK (expires_after > interval '0');
COMMENT ON COLUMN batches.metadata IS
    'The client''s labels: up to 16 string pairs (key up to 64 characters, value up to 512).';
COMMENT ON COLUMN batches.expires_after IS
    'How long after it finishes the batch is kept: expires_after at upload, else RESULTS_TTL as it '
    'was then; NULL keeps it until deleted.';
-- /batches?metadata[k]=v: containment (metadata @> '{"k": "v"}').
CREATE INDEX batches_metadata_idx ON batches USING gin (metadata jsonb_path_ops);

CREATE TABLE idempotency_keys (
    client       text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    body_sha256  bytea CHECK (length(body_sha256) = 32),
    batch_id     bigint REFERENCES batches (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key)
);
COMMENT ON TABLE idempotency_keys IS
    'Idempotency-Key headers of uploads, per client, for IDEMPOTENCY_TTL: a retry with the same key '
    'and the same file answers the batch the first one made.';
COMMENT ON COLUMN idempotency_keys.client IS 'The API key''s name; '''' for uploads without a key.';
COMMENT ON COLUMN idempotency_keys.body_sha256 IS
    'SHA-256 of the file and the upload''s options: the same key with another file is refused (422).';
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
-- Deleting a batch deletes its key by cascade: found through this one.
CREATE INDEX idempotency_keys_batch_idx ON idempotency_keys (batch_id);

-- Results in compound order (most negative first, or most positive first),
-- alone or within one sentiment. The sentiment follows from compound (VADER's
-- thresholds), and 'negative' < 'neutral' < 'positive', so (sentiment,
-- compound, row_number) is also the order of compound over the whole batch.
CREATE INDEX batch_results_compound_idx ON batch_results (batch_id, sentiment, compound, row_number);

CREATE TABLE result_checkpoints (
    batch_id   bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    listing    text NOT NULL,
    rank       integer NOT NULL CHECK (rank >= 0),
    position   jsonb,
    PRIMARY KEY (batch_id, listing, rank)
);
COMMENT ON TABLE result_checkpoints IS
    'Where every 100th row of a finished batch''s ordered or filtered results lies, so page P of '
    'them is one index read from the nearest checkpoint. Written the first time a page past the first '
    'is asked for; rank 0 marks a listing whose checkpoints are all written.';
COMMENT ON COLUMN result_checkpoints.listing IS
    'Which list: row:<sentiment> (file order), compound or -compound, optionally :<sentiment>.';
COMMENT ON COLUMN result_checkpoints.position IS 'The keyset position of the row of that rank, as a cursor holds it.';

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE result_checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_own ON idempotency_keys TO sentiment_web
    USING (client = current_setting('sentiment.client', true));
CREATE POLICY result_checkpoints_own ON result_checkpoints TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY idempotency_keys_all ON idempotency_keys TO sentiment_web_admin USING (true);
CREATE POLICY result_checkpoints_all ON result_checkpoints TO sentiment_web_admin USING (true);
