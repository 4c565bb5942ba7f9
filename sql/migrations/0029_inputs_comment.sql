-- batch_inputs are written by the upload; a JSON Lines file whose keys first
-- appear late pads the earlier rows' fields once, in the upload's transaction,
-- before anyone can read them: the table's comment, and the reason new
-- partitions give for their vacuum settings, say so.
COMMENT ON TABLE batch_inputs IS
    'Every uploaded row to score, as the upload wrote it, for the batch''s life: never updated or '
    'moved once the upload commits (a JSON Lines file whose keys first appear late pads its earlier '
    'rows'' fields before then). Partitioned as batch_results is.';

CREATE OR REPLACE FUNCTION batch_partitions_ensure(batch bigint, make boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    span constant bigint := batch_partition_span();
    low constant bigint := batch - batch % span;
    tables constant text[] := ARRAY['batch_inputs', 'batch_results', 'batch_row_errors', 'batch_result_keys'];
    tbl text;
    present text[];
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
    IF (SELECT count(*) FROM batch_partitions_holding(batch) WHERE NOT detach_pending) = cardinality(tables) THEN
        RETURN true;
    END IF;
    IF NOT make THEN
        RETURN false;
    END IF;
    -- One maker per range; the next one finds it made (each statement reads
    -- the catalog afresh).
    PERFORM pg_advisory_xact_lock(20561, (low / span)::integer);
    saved_timeout := current_setting('lock_timeout');
    SELECT array_agg(table_name) INTO present FROM batch_partitions_holding(batch);
    FOREACH tbl IN ARRAY tables LOOP
        IF tbl = ANY (present) THEN
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
        -- set-aside rows moved out, a JSON Lines upload's rows padded before it
        -- commits or a deleted batch reaped, still start one), and
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
