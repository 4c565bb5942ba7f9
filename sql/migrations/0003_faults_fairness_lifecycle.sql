-- 0003: retries with backoff and failed rows, fair sharing across batches,
-- a registry of runners, cancellation.

-- Batches can end with some rows failed, or be cancelled.
ALTER TABLE batches DROP CONSTRAINT batches_status_check;
ALTER TABLE batches ADD CONSTRAINT batches_status_check
    CHECK (status IN ('processing', 'completed', 'completed_with_errors', 'cancelled'));
ALTER TABLE batches DROP CONSTRAINT batches_completed_at_iff_completed;
ALTER TABLE batches ADD CONSTRAINT batches_completed_at_iff_finished
    CHECK ((status IN ('completed', 'completed_with_errors', 'cancelled')) = (completed_at IS NOT NULL));
ALTER TABLE batches ADD COLUMN failed_count integer NOT NULL DEFAULT 0 CHECK (failed_count >= 0);
ALTER TABLE batches DROP CONSTRAINT batches_counts_within_total;
ALTER TABLE batches ADD CONSTRAINT batches_counts_within_total
    CHECK (processed_count + failed_count + invalid_count <= total_count);
COMMENT ON COLUMN batches.failed_count IS
    'Rows whose scoring failed MAX_ATTEMPTS times; kept in batch_results with their error.';
COMMENT ON COLUMN batches.completed_at IS 'When the batch completed or was cancelled.';

-- A failed row keeps its place in the results (so row numbers stay dense)
-- with no sentiment and the error instead.
ALTER TABLE batch_results ALTER COLUMN sentiment DROP NOT NULL;
ALTER TABLE batch_results ALTER COLUMN score DROP NOT NULL;
ALTER TABLE batch_results ALTER COLUMN compound DROP NOT NULL;
ALTER TABLE batch_results ALTER COLUMN pos DROP NOT NULL;
ALTER TABLE batch_results ALTER COLUMN neu DROP NOT NULL;
ALTER TABLE batch_results ALTER COLUMN neg DROP NOT NULL;
ALTER TABLE batch_results ADD COLUMN error text;
ALTER TABLE batch_results ADD CONSTRAINT batch_results_scored_or_failed
    CHECK ((error IS NULL) = (sentiment IS NOT NULL AND score IS NOT NULL AND compound IS NOT NULL
                              AND pos IS NOT NULL AND neu IS NOT NULL AND neg IS NOT NULL));
COMMENT ON COLUMN batch_results.error IS 'Why scoring this row failed; NULL for scored rows.';

-- Fair sharing: a chunk's fair_key is its place in a round-robin over the
-- batches that have work. A new batch's chunks get keys from the smallest key
-- still waiting, so they interleave one-for-one with the older batches'
-- remaining chunks instead of queueing behind them (start-time fair queueing).
ALTER TABLE chunks ADD COLUMN fair_key bigint NOT NULL DEFAULT 0;
-- Retries wait until available_at (exponential backoff).
ALTER TABLE chunks ADD COLUMN available_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN chunks.fair_key IS
    'Round-robin position across batches: runners claim the smallest key first.';
COMMENT ON COLUMN chunks.available_at IS 'A retried chunk is not claimed before this time (backoff).';
DROP INDEX chunks_ready_idx;
CREATE INDEX chunks_ready_idx ON chunks (fair_key, id) WHERE state = 'ready';

CREATE TABLE runners (
    name            text PRIMARY KEY,
    host            text NOT NULL,
    pid             integer NOT NULL,
    scorer          text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    chunks_done     bigint NOT NULL DEFAULT 0,
    rows_done       bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE runners IS
    'Runner processes alive now: each beats its heartbeat while it runs; entries silent '
    'for RUNNER_EXPIRY_SECONDS are removed by the other runners.';
COMMENT ON COLUMN runners.name IS 'host:pid, as in chunks.claimed_by.';
