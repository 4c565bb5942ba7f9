-- Retention as DROP, not DELETE (issue 18, part 3): batch_results and
-- batch_row_errors are partitioned by RANGE of batch_id, batch_partition_span()
-- consecutive batch ids per partition, so a purge detaches and drops whole
-- partitions (core/batches/partitions.py) instead of deleting their rows.
--
-- The existing tables are attached, not copied: renamed aside, checked against
-- the range they will cover (a read-only scan), and attached as one partition
-- from MINVALUE up to the next multiple of the span past every batch id handed
-- out so far. Their indexes are reused (ATTACH matches them), no row is
-- rewritten and no WAL is written for the data. On a database without any
-- batch they are simply dropped.

-- 1. The old tables aside, their names freed.
ALTER TABLE batch_results RENAME TO batch_results_legacy;
ALTER TABLE batch_row_errors RENAME TO batch_row_errors_legacy;
ALTER INDEX batch_results_pkey RENAME TO batch_results_pkey_legacy;
ALTER INDEX batch_results_sentiment_idx RENAME TO batch_results_sentiment_idx_legacy;
ALTER INDEX batch_results_compound_idx RENAME TO batch_results_compound_idx_legacy;
ALTER INDEX batch_row_errors_pkey RENAME TO batch_row_errors_pkey_legacy;
-- Row-level security is the parents' (a query through a parent uses the
-- parent's policies and privileges only); partitions are not for the web roles.
DROP POLICY batch_results_own ON batch_results_legacy;
DROP POLICY batch_results_all ON batch_results_legacy;
DROP POLICY batch_row_errors_own ON batch_row_errors_legacy;
DROP POLICY batch_row_errors_all ON batch_row_errors_legacy;
ALTER TABLE batch_results_legacy DISABLE ROW LEVEL SECURITY;
ALTER TABLE batch_row_errors_legacy DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON batch_results_legacy, batch_row_errors_legacy FROM sentiment_web, sentiment_web_admin;

-- 2. The partitioned tables: the same columns in the same order, the same constraints.
CREATE TABLE batch_results (
    batch_id    bigint NOT NULL,
    row_number  integer NOT NULL,
    client_id   text NOT NULL,
    text        text NOT NULL,
    sentiment   text CONSTRAINT batch_results_sentiment_check
                     CHECK (sentiment IN ('positive', 'negative', 'neutral')),
    score       double precision CONSTRAINT batch_results_score_check CHECK (score BETWEEN 0 AND 1),
    compound    double precision CONSTRAINT batch_results_compound_check CHECK (compound BETWEEN -1 AND 1),
    pos         double precision,
    neu         double precision,
    neg         double precision,
    line_number integer,
    error       text,
    CONSTRAINT batch_results_scored_or_failed
        CHECK ((error IS NULL) = (sentiment IS NOT NULL AND score IS NOT NULL AND compound IS NOT NULL
                                  AND pos IS NOT NULL AND neu IS NOT NULL AND neg IS NOT NULL)),
    PRIMARY KEY (batch_id, row_number)
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_results IS
    'One scored row per input row, in file order by row_number. Partitioned by batch_id, '
    'batch_partition_span() batches per partition (see batch_partitions).';
COMMENT ON COLUMN batch_results.score IS
    'Confidence in [0, 1]: abs(compound), the strength of the polarity VADER found.';
COMMENT ON COLUMN batch_results.compound IS 'VADER compound score in [-1, 1].';
COMMENT ON COLUMN batch_results.pos IS 'VADER share of positive sentiment in the text.';
COMMENT ON COLUMN batch_results.neu IS 'VADER share of neutral sentiment in the text.';
COMMENT ON COLUMN batch_results.neg IS 'VADER share of negative sentiment in the text.';
COMMENT ON COLUMN batch_results.line_number IS 'Line of the file where the row starts (the header is line 1).';
COMMENT ON COLUMN batch_results.error IS 'Why scoring this row failed; NULL for scored rows.';
CREATE INDEX batch_results_sentiment_idx ON batch_results (batch_id, sentiment, row_number);
CREATE INDEX batch_results_compound_idx ON batch_results (batch_id, sentiment, compound, row_number);

CREATE TABLE batch_row_errors (
    batch_id      bigint NOT NULL,
    error_number  integer NOT NULL CONSTRAINT batch_row_errors_error_number_check CHECK (error_number > 0),
    line_number   integer NOT NULL,
    client_id     text,
    reason        text NOT NULL CONSTRAINT batch_row_errors_reason_check
                  CHECK (reason IN ('wrong_field_count', 'empty_text', 'text_too_long', 'nul_character',
                                    'id_too_long')),
    detail        text NOT NULL,
    PRIMARY KEY (batch_id, error_number)
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_row_errors IS
    'Rows of an upload that were set aside and not scored, with the line and the reason. '
    'Partitioned as batch_results is.';
COMMENT ON COLUMN batch_row_errors.error_number IS 'Position among the batch''s set-aside rows, from 1.';
COMMENT ON COLUMN batch_row_errors.reason IS
    'wrong_field_count, empty_text, text_too_long, nul_character or id_too_long.';
COMMENT ON COLUMN batch_row_errors.client_id IS
    'The id column of the row as given, its first 1,000 characters at most.';

GRANT SELECT, INSERT, UPDATE, DELETE ON batch_results, batch_row_errors TO sentiment_web, sentiment_web_admin;
ALTER TABLE batch_results ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_row_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_results_own ON batch_results TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_row_errors_own ON batch_row_errors TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_results_all ON batch_results TO sentiment_web_admin USING (true);
CREATE POLICY batch_row_errors_all ON batch_row_errors TO sentiment_web_admin USING (true);

-- 3. The partitions, as psql users and the purge see them.
CREATE FUNCTION batch_partition_span() RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS 'SELECT 10::bigint';
COMMENT ON FUNCTION batch_partition_span() IS
    'Consecutive batch ids per partition of batch_results and batch_row_errors (aligned: ids '
    'k*span .. k*span+span-1). Changing it needs a migration that keeps the existing bounds.';

CREATE VIEW batch_partitions WITH (security_invoker = true) AS
SELECT parent.relname AS table_name,
       part.relname AS partition,
       nullif(bound[1], 'MINVALUE')::bigint AS first_batch,
       bound[2]::bigint AS end_batch,
       i.inhdetachpending AS detach_pending,
       pg_total_relation_size(part.oid) AS bytes
FROM pg_inherits AS i
JOIN pg_class AS parent ON parent.oid = i.inhparent
JOIN pg_class AS part ON part.oid = i.inhrelid
CROSS JOIN LATERAL regexp_match(pg_get_expr(part.relpartbound, part.oid),
                                'FROM \(''?([^'')]*)''?\) TO \(''?([^'')]*)''?\)') AS bound
WHERE i.inhparent IN ('batch_results'::regclass, 'batch_row_errors'::regclass);
COMMENT ON VIEW batch_partitions IS
    'Every partition of batch_results and batch_row_errors: the batch ids it holds (first_batch '
    'NULL: from the lowest), whether a DETACH CONCURRENTLY left it pending, its size with indexes.';
COMMENT ON COLUMN batch_partitions.end_batch IS 'The first batch id past the partition.';

-- Runs as the tables' owner (SECURITY DEFINER), so the web's upload, working as
-- sentiment_web, gets partitions the owner owns and the runners can drop.
CREATE FUNCTION batch_partitions_ensure(batch bigint, make boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    span constant bigint := batch_partition_span();
    low constant bigint := batch - batch % span;
    tbl text;
    part text;
    attempt integer;
    saved_timeout text;
    idx record;
BEGIN
    -- Held until commit, shared: the purge, which try-locks the range
    -- exclusively, does not drop it under an upload still writing to it.
    PERFORM pg_advisory_xact_lock_shared(20560, (low / span)::integer);
    IF EXISTS (SELECT 1 FROM batch_partitions
               WHERE table_name = 'batch_row_errors' AND NOT detach_pending
                 AND batch >= coalesce(first_batch, batch) AND batch < end_batch) THEN
        RETURN true;
    END IF;
    IF NOT make THEN
        RETURN false;
    END IF;
    -- One maker per range; the next one finds it made (each statement reads
    -- the catalog afresh).
    PERFORM pg_advisory_xact_lock(20561, (low / span)::integer);
    saved_timeout := current_setting('lock_timeout');
    FOREACH tbl IN ARRAY ARRAY['batch_results', 'batch_row_errors'] LOOP
        IF EXISTS (SELECT 1 FROM batch_partitions
                   WHERE table_name = tbl AND batch >= coalesce(first_batch, batch) AND batch < end_batch) THEN
            CONTINUE;
        END IF;
        part := format('%s_p%s', tbl, low);
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, tbl);
        -- The parent's indexes, named after them (batch_results_compound_idx_p10), made
        -- on the empty table first: ATTACH then adopts them instead of naming its own.
        FOR idx IN SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisprimary
                   FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
                   WHERE i.indrelid = tbl::regclass LOOP
            EXECUTE replace(replace(idx.definition, format(' ON ONLY public.%s ', tbl), format(' ON public.%I ', part)),
                            format('INDEX %s ON', idx.name), format('INDEX %I ON', idx.name || '_p' || low));
            IF idx.indisprimary THEN
                EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY USING INDEX %I', part, idx.name || '_p' || low);
            END IF;
        END LOOP;
        EXECUTE format('REVOKE ALL ON %I FROM sentiment_web, sentiment_web_admin', part);
        EXECUTE format('COMMENT ON TABLE %I IS %L', part,
                       format('Batches %s to %s of %s (a partition: dropped whole once all are deleted).',
                              low, low + span - 1, tbl));
        -- ATTACH takes SHARE UPDATE EXCLUSIVE on the parent (reads and writes go
        -- on); it waits at most 2 s at a time for a detach in progress.
        FOR attempt IN 1..5 LOOP
            BEGIN
                PERFORM set_config('lock_timeout', '2s', true);
                EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                               tbl, part, low, low + span);
                PERFORM set_config('lock_timeout', saved_timeout, true);
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                PERFORM set_config('lock_timeout', saved_timeout, true);
                IF attempt = 5 THEN
                    RAISE;
                END IF;
                PERFORM pg_sleep(0.2 * attempt);
            END;
        END LOOP;
    END LOOP;
    RETURN true;
END
$$;
COMMENT ON FUNCTION batch_partitions_ensure(bigint, boolean) IS
    'Make sure the partitions holding a batch''s rows exist (make = false: only say whether they do), '
    'and keep the purge from dropping them until this transaction ends.';
REVOKE ALL ON FUNCTION batch_partitions_ensure(bigint, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch_partitions_ensure(bigint, boolean) TO sentiment_web, sentiment_web_admin;

-- 4. The existing rows: attached, or nothing to keep.
DO $$
DECLARE
    span constant bigint := batch_partition_span();
    top bigint;
    upper_bound bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM batches) AND NOT EXISTS (SELECT 1 FROM batch_results_legacy)
       AND NOT EXISTS (SELECT 1 FROM batch_row_errors_legacy) THEN
        DROP TABLE batch_results_legacy, batch_row_errors_legacy;
        RETURN;
    END IF;
    SELECT greatest(CASE WHEN s.is_called THEN s.last_value ELSE 0 END,
                    (SELECT coalesce(max(batch_id), 0) FROM batch_results_legacy),
                    (SELECT coalesce(max(batch_id), 0) FROM batch_row_errors_legacy))
    INTO top FROM batches_id_seq AS s;
    upper_bound := (top / span + 1) * span;
    -- The CHECK lets ATTACH skip its own scan; it goes once attached (the bound says it).
    EXECUTE format('ALTER TABLE batch_results_legacy ADD CONSTRAINT batch_results_legacy_range '
                   'CHECK (batch_id < %s)', upper_bound);
    EXECUTE format('ALTER TABLE batch_row_errors_legacy ADD CONSTRAINT batch_row_errors_legacy_range '
                   'CHECK (batch_id < %s)', upper_bound);
    EXECUTE format('ALTER TABLE batch_results ATTACH PARTITION batch_results_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%s)', upper_bound);
    EXECUTE format('ALTER TABLE batch_row_errors ATTACH PARTITION batch_row_errors_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%s)', upper_bound);
    ALTER TABLE batch_results_legacy DROP CONSTRAINT batch_results_legacy_range;
    ALTER TABLE batch_row_errors_legacy DROP CONSTRAINT batch_row_errors_legacy_range;
    EXECUTE format('COMMENT ON TABLE batch_results_legacy IS %L',
                   format('Batches up to %s of batch_results, from before partitioning (0012).', upper_bound - 1));
    EXECUTE format('COMMENT ON TABLE batch_row_errors_legacy IS %L',
                   format('Batches up to %s of batch_row_errors, from before partitioning (0012).',
                          upper_bound - 1));
END $$;

-- 5. Partitions for the next batches (runners keep making them ahead; an upload
-- makes its own if they fall behind).
SELECT batch_partitions_ensure(CASE WHEN is_called THEN last_value + 1 ELSE last_value END + k * batch_partition_span())
FROM batches_id_seq, generate_series(0, 1) AS k;
