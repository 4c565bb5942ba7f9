-- A row's text is written once: the upload's COPY puts every input row in
-- batch_inputs, partitioned as the results are, where it stays for the
-- batch's life. A finish inserts only what scoring adds (batch_results: the
-- row number, four scores, the error); pages and exports join the two on
-- (batch_id, row_number). The label follows from compound (vader_label).
-- Filtered and score-ordered listings read batch_result_keys, written in one
-- pass once a batch is final and a listing first asks for it, so scoring
-- maintains no index but the results' primary key.

-- Every lock the copy below needs, first: a migration that has to wait for one
-- gives up (and is tried again) before it has copied anything.
LOCK TABLE batch_rows, batch_results IN ACCESS EXCLUSIVE MODE;

CREATE FUNCTION vader_label(compound double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN compound >= 0.05 THEN 'positive'
            WHEN compound <= -0.05 THEN 'negative'
            WHEN compound IS NOT NULL THEN 'neutral' END;
COMMENT ON FUNCTION vader_label(double precision) IS
    'positive, negative or neutral from a VADER compound score, by VADER''s thresholds (+-0.05); '
    'NULL for a row whose scoring failed.';

CREATE TABLE batch_inputs (
    batch_id    bigint NOT NULL,
    row_number  integer NOT NULL,
    line_number integer,
    client_id   text NOT NULL,
    text        text NOT NULL,
    problem     text,
    PRIMARY KEY (batch_id, row_number),
    CONSTRAINT batch_inputs_numbering CHECK (row_number <> 0 AND (row_number > 0) = (problem IS NULL))
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_inputs IS
    'Every uploaded row to score, as the upload''s COPY wrote it, for the batch''s life (never '
    'updated, never moved). Partitioned as batch_results is.';
COMMENT ON COLUMN batch_inputs.row_number IS 'Position of the row among the data rows of the file, from 1.';
COMMENT ON COLUMN batch_inputs.client_id IS 'The id column of the uploaded file, kept as given.';
COMMENT ON COLUMN batch_inputs.line_number IS 'Line of the file where the row starts (the header is line 1).';
COMMENT ON COLUMN batch_inputs.problem IS
    'reason<TAB>detail of a set-aside row while its upload is in progress (row_number < 0); the '
    'upload moves such rows to batch_row_errors before it commits, so committed rows have none.';

-- A claim reads its chunks' rows through this function: EXECUTE plans the read
-- with the batch id known, so the planner reads, and locks, that batch's one
-- partition of batch_inputs. Read inside the claim statement itself, the id is
-- known only while it runs, and every partition would be planned and locked on
-- every claim: a cost that grows with the number of batches kept.
CREATE FUNCTION batch_inputs_of_chunks(batch bigint, chunk_ids bigint[], first_rows integer[], last_rows integer[])
RETURNS TABLE (chunk_id bigint, row_numbers integer[], texts text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT c.id, r.row_numbers, r.texts
         FROM unnest($2, $3, $4) AS c (id, first_row, last_row)
         CROSS JOIN LATERAL (
             SELECT array_agg(i.row_number) AS row_numbers, array_agg(i.text) AS texts
             FROM (SELECT row_number, text FROM batch_inputs
                   WHERE batch_id = $1 AND row_number BETWEEN c.first_row AND c.last_row
                   ORDER BY row_number) AS i
         ) AS r'
        USING batch, chunk_ids, first_rows, last_rows;
END
$$;
COMMENT ON FUNCTION batch_inputs_of_chunks(bigint, bigint[], integer[], integer[]) IS
    'Each chunk''s rows of one batch as two arrays (row numbers and texts, in order), read from the '
    'batch''s one partition of batch_inputs: what a claim hands a runner.';

CREATE TABLE batch_result_keys (
    batch_id    bigint NOT NULL,
    row_number  integer NOT NULL,
    sentiment   text NOT NULL,
    compound    double precision NOT NULL,
    PRIMARY KEY (batch_id, row_number)
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_result_keys IS
    'The sort keys of a final batch''s scored rows, written in one pass the first time a filtered '
    'or score-ordered listing of it is asked for (result_checkpoints listing ''keys'' marks it '
    'written); partitioned as batch_results is.';
CREATE INDEX batch_result_keys_sentiment_idx ON batch_result_keys (batch_id, sentiment, row_number);
CREATE INDEX batch_result_keys_compound_idx ON batch_result_keys (batch_id, sentiment, compound, row_number);

-- Row-level security as on the other batch tables (default privileges grant the web roles the rest).
ALTER TABLE batch_inputs ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_result_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_inputs_own ON batch_inputs TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_result_keys_own ON batch_result_keys TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_inputs_all ON batch_inputs TO sentiment_web_admin USING (true);
CREATE POLICY batch_result_keys_all ON batch_result_keys TO sentiment_web_admin USING (true);

CREATE OR REPLACE VIEW batch_partitions WITH (security_invoker = true) AS
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
WHERE i.inhparent IN ('batch_inputs'::regclass, 'batch_results'::regclass, 'batch_row_errors'::regclass,
                      'batch_result_keys'::regclass);
COMMENT ON VIEW batch_partitions IS
    'Every partition of batch_inputs, batch_results, batch_row_errors and batch_result_keys: the '
    'batch ids it holds (first_batch NULL: from the lowest), whether a DETACH CONCURRENTLY left it '
    'pending, its size with indexes.';

CREATE OR REPLACE FUNCTION batch_partitions_ensure(batch bigint, make boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    span constant bigint := batch_partition_span();
    low constant bigint := batch - batch % span;
    tables constant text[] := ARRAY['batch_inputs', 'batch_results', 'batch_row_errors', 'batch_result_keys'];
    tbl text;
    part text;
    attempt integer;
    saved_timeout text;
    idx record;
BEGIN
    -- Held until commit, shared: the purge, which try-locks the range
    -- exclusively, does not drop it under an upload still writing to it.
    PERFORM pg_advisory_xact_lock_shared(20560, (low / span)::integer);
    -- Every table's partition, attached: a drop cut short between the tables
    -- leaves some, and the others are then made again below.
    IF (SELECT count(DISTINCT table_name) FROM batch_partitions
        WHERE NOT detach_pending
          AND batch >= coalesce(first_batch, batch) AND batch < end_batch) = cardinality(tables) THEN
        RETURN true;
    END IF;
    IF NOT make THEN
        RETURN false;
    END IF;
    -- One maker per range; the next one finds it made (each statement reads
    -- the catalog afresh).
    PERFORM pg_advisory_xact_lock(20561, (low / span)::integer);
    saved_timeout := current_setting('lock_timeout');
    FOREACH tbl IN ARRAY tables LOOP
        IF EXISTS (SELECT 1 FROM batch_partitions
                   WHERE table_name = tbl AND batch >= coalesce(first_batch, batch) AND batch < end_batch) THEN
            CONTINUE;
        END IF;
        part := format('%s_p%s', tbl, low);
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, tbl);
        -- The parent's indexes, named after them (batch_results_pkey_p10), made on
        -- the empty table first: ATTACH then adopts them instead of naming its own.
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
        -- Inputs and results are written once and read by key: a vacuum for their
        -- inserts alone would only set visibility bits nothing reads (dead rows, of
        -- set-aside rows moved out or a deleted batch reaped, still start one), and
        -- statistics matter little to key-range reads: analysed when they doubled.
        IF tbl IN ('batch_inputs', 'batch_results') THEN
            EXECUTE format('ALTER TABLE %I SET (autovacuum_vacuum_insert_threshold = -1, '
                           'autovacuum_analyze_scale_factor = 1)', part);
        END IF;
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

-- The new tables' partitions, for every range that has batches or partitions
-- already: partitions of the range that holds the batch ids below a legacy
-- partition's bound are made per range, like any other.
SELECT batch_partitions_ensure(low)
FROM (SELECT id - id % batch_partition_span() AS low FROM batches
      UNION
      SELECT first_batch FROM batch_partitions WHERE first_batch IS NOT NULL) AS ranges
ORDER BY low;
SELECT batch_partitions_ensure(CASE WHEN is_called THEN last_value + 1 ELSE last_value END + k * batch_partition_span())
FROM batches_id_seq, generate_series(0, 1) AS k;

-- The results' partitions made before this migration, like those made from now on.
DO $$
DECLARE
    part record;
BEGIN
    FOR part IN SELECT partition FROM batch_partitions WHERE table_name = 'batch_results' LOOP
        EXECUTE format('ALTER TABLE %I SET (autovacuum_vacuum_insert_threshold = -1, '
                       'autovacuum_analyze_scale_factor = 1)', part.partition);
    END LOOP;
END
$$;

-- Every row's text, once: scored rows' from the results, waiting rows' from staging.
INSERT INTO batch_inputs (batch_id, row_number, line_number, client_id, text)
SELECT batch_id, row_number, line_number, client_id, text FROM batch_results
UNION ALL
SELECT batch_id, row_number, line_number, client_id, text FROM batch_rows WHERE row_number > 0;

-- Results keep only what scoring adds.
DROP INDEX batch_results_sentiment_idx;
DROP INDEX batch_results_compound_idx;
ALTER TABLE batch_results DROP CONSTRAINT batch_results_scored_or_failed;
ALTER TABLE batch_results
    DROP COLUMN client_id,
    DROP COLUMN text,
    DROP COLUMN sentiment,
    DROP COLUMN score,
    DROP COLUMN line_number;
ALTER TABLE batch_results ADD CONSTRAINT batch_results_scored_or_failed
    CHECK ((error IS NULL) = (compound IS NOT NULL AND pos IS NOT NULL AND neu IS NOT NULL AND neg IS NOT NULL));
COMMENT ON TABLE batch_results IS
    'What scoring adds to each input row (batch_inputs has the row itself, joined on (batch_id, '
    'row_number)); one per input row once scored. Partitioned by batch_id, batch_partition_span() '
    'batches per partition (see batch_partitions).';
COMMENT ON COLUMN batch_results.compound IS
    'VADER compound score in [-1, 1]; the label is vader_label(compound), the confidence abs(compound).';

DROP TABLE batch_rows;

-- Checkpoints of score-ordered listings were positions in batch_results' own
-- indexes; they are positions in batch_result_keys now, the same values, so
-- they stay. Finished batches' keys are written when a listing next asks.
COMMENT ON TABLE result_checkpoints IS
    'Where every 100th row of a finished batch''s ordered or filtered results lies, so page P of '
    'them is one index read from the nearest checkpoint. Written the first time a page past the first '
    'is asked for; rank 0 marks a listing whose checkpoints are all written, and listing ''keys'' the '
    'batch''s batch_result_keys written.';
COMMENT ON FUNCTION batch_partition_span() IS
    'Consecutive batch ids per partition of the partitioned batch tables (aligned: ids '
    'k*span .. k*span+span-1). Changing it needs a migration that keeps the existing bounds.';
