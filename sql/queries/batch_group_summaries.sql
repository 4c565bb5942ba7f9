-- name: batch_group_summaries_get
-- One kept column's kept groups of a batch: ranks 1 to `limit`, then rank 0 with the ranks past `limit` folded into it; none until they are counted.
SELECT rank, value, groups, row_count, positive, negative, neutral, failed, compound_sum, computed_at
FROM batch_group_summaries
WHERE batch_id = %(batch_id)s AND field_name = %(field_name)s AND rank BETWEEN 1 AND %(limit)s
UNION ALL
SELECT 0, NULL, sum(groups)::bigint, sum(row_count)::bigint, sum(positive)::bigint, sum(negative)::bigint,
       sum(neutral)::bigint, sum(failed)::bigint, sum(compound_sum), min(computed_at)
FROM batch_group_summaries
WHERE batch_id = %(batch_id)s AND field_name = %(field_name)s AND (rank = 0 OR rank > %(limit)s)
HAVING count(*) > 0
ORDER BY rank;

-- name: batch_group_summaries_try_lock
-- Take the lock on the first count of one batch's column until commit, without waiting: false while another transaction holds it.
SELECT pg_try_advisory_xact_lock(%(lock_class)s, hashtext(%(batch_id)s::text || ':' || %(field_name)s));

-- name: batch_group_summaries_count
-- Count a final batch's results per value of its kept column number k in one pass (inputs joined with results): the `top` largest groups (most rows, then value in byte order) ranked 1, 2, ..., and rank 0 the rest folded together; whether they can be kept (no runner holds one of its chunks). A plain SELECT, so that the pass may run in parallel.
WITH settled AS (
    -- Final, with every chunk's results committed: the groups can no longer change.
    SELECT EXISTS (
        SELECT 1 FROM batches AS b
        WHERE b.id = %(batch_id)s AND b.status IN ('completed', 'completed_with_errors', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM chunks AS c WHERE c.batch_id = b.id AND c.state = 'claimed')
    ) AS yes
), grouped AS (
    SELECT i.fields[%(k)s] AS value, count(*) AS row_count,
           count(*) FILTER (WHERE vader_label(r.compound) = 'positive') AS positive,
           count(*) FILTER (WHERE vader_label(r.compound) = 'negative') AS negative,
           count(*) FILTER (WHERE vader_label(r.compound) = 'neutral') AS neutral,
           count(*) FILTER (WHERE r.compound IS NULL) AS failed,
           sum(r.compound) AS compound_sum
    FROM batch_results AS r
    JOIN batch_inputs AS i ON i.batch_id = r.batch_id AND i.row_number = r.row_number
    WHERE r.batch_id = %(batch_id)s AND i.batch_id = %(batch_id)s
    GROUP BY 1
), ranked AS (
    SELECT g.*, row_number() OVER (ORDER BY g.row_count DESC, g.value COLLATE "C") AS rank FROM grouped AS g
)
SELECT rank::integer, value, 1::bigint AS groups, row_count, positive, negative, neutral, failed, compound_sum,
       NULL::timestamptz AS computed_at, (SELECT yes FROM settled) AS kept
FROM ranked WHERE rank <= %(top)s
UNION ALL
SELECT 0, NULL, count(*), coalesce(sum(row_count), 0)::bigint, coalesce(sum(positive), 0)::bigint,
       coalesce(sum(negative), 0)::bigint, coalesce(sum(neutral), 0)::bigint, coalesce(sum(failed), 0)::bigint,
       sum(compound_sum), NULL::timestamptz, (SELECT yes FROM settled)
FROM ranked WHERE rank > %(top)s
ORDER BY rank;

-- name: batch_group_summaries_keep
-- Keep a settled batch's counted groups of one column (batch_group_summaries_count, as arrays by rank) while the batch exists and is not deleted (its row locked against the reaper until commit); a set already kept stays. Whether the batch was there, and when the groups were kept.
WITH live AS (
    SELECT id FROM batches WHERE id = %(batch_id)s AND deleted_at IS NULL FOR KEY SHARE
), kept AS (
    INSERT INTO batch_group_summaries (batch_id, field_name, rank, value, groups, row_count, positive, negative,
                                       neutral, failed, compound_sum)
    SELECT l.id, %(field_name)s, g.*
    FROM live AS l,
         unnest(%(rank)s::integer[], %(value)s::text[], %(groups)s::bigint[], %(row_count)s::bigint[],
                %(positive)s::bigint[], %(negative)s::bigint[], %(neutral)s::bigint[], %(failed)s::bigint[],
                %(compound_sum)s::float8[])
             AS g (rank, value, groups, row_count, positive, negative, neutral, failed, compound_sum)
    ORDER BY g.rank
    ON CONFLICT (batch_id, field_name, rank) DO NOTHING
    RETURNING computed_at
)
SELECT EXISTS (SELECT 1 FROM live) AS live, (SELECT min(computed_at) FROM kept) AS computed_at;
