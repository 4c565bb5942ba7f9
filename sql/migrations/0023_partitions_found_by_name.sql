-- batch_partitions_ensure, which runs twice per upload, finds a batch's
-- partitions by name (batch_partitions_holding) rather than in the
-- batch_partitions view, whose every row reads a partition's bounds: an
-- upload costs the same however many partitions there are.

-- The partitions that hold a batch's rows, found by name: batch_partitions_ensure
-- names each <table>_p<first id of the range>, and a table partitioned by 0012
-- keeps the batches before it in <table>_legacy. Each is a lookup by name and
-- one by oid in pg_inherits, whatever the catalog's statistics, so the cost is
-- the same with 100 partitions or 10,000.
CREATE FUNCTION batch_partitions_holding(batch bigint)
RETURNS TABLE (table_name text, partition regclass, detach_pending boolean)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
SELECT t.name, found.part, pg_partition_root(found.part) = found.part
FROM unnest(ARRAY['batch_inputs', 'batch_results', 'batch_row_errors', 'batch_result_keys']) AS t(name)
CROSS JOIN LATERAL (
    SELECT to_regclass(format('public.%I', t.name || '_p' || (batch - batch % batch_partition_span()))) AS part
    UNION ALL
    SELECT legacy
    FROM to_regclass(format('public.%I', t.name || '_legacy')) AS legacy
    WHERE batch < (regexp_match(pg_get_expr((SELECT relpartbound FROM pg_class WHERE oid = legacy), legacy),
                                'TO \(''?([^'')]*)''?\)'))[1]::bigint
) AS found
-- A partition, attached or pending detach (it is its own root then), of this table.
WHERE pg_partition_root(found.part) IN (t.name::regclass, found.part)
$$;
COMMENT ON FUNCTION batch_partitions_holding(bigint) IS
    'The partitions of batch_inputs, batch_results, batch_row_errors and batch_result_keys that hold '
    'a batch''s rows (by name: the same cost however many partitions there are).';

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
