-- name: batch_summaries_get
-- A batch's kept summary of compound scores, if it has one.
SELECT scored_count, mean_compound, histogram, computed_at, true AS kept
FROM batch_summaries WHERE batch_id = %(batch_id)s;

-- name: batch_summaries_count
-- Count a final batch's compound scores in one pass over its results (mean, 20 bins), and say whether they can be kept (no runner holds one of its chunks); with `settled_only`, count nothing unless they can. A plain SELECT, so that the pass may run in parallel.
WITH settled AS (
    -- Final, with every chunk's results committed: the scores can no longer change.
    SELECT EXISTS (
        SELECT 1 FROM batches AS b
        WHERE b.id = %(batch_id)s AND b.status IN ('completed', 'completed_with_errors', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM chunks AS c WHERE c.batch_id = b.id AND c.state = 'claimed')
    ) AS yes
), bins AS (
    -- A score's bin from its four decimals as an integer: [-1, -0.9) is bin 0, ..., [0.9, 1] bin 19
    -- (the same rule as the batch page's live histogram, webapp/static/batch_view.js).
    SELECT least(19, (round(r.compound * 10000)::integer + 10000) / 1000) AS bin,
           count(*) AS rows, sum(r.compound) AS total
    FROM batch_results AS r
    WHERE r.batch_id = %(batch_id)s AND r.compound IS NOT NULL
      AND (NOT %(settled_only)s OR (SELECT yes FROM settled))
    GROUP BY 1
)
SELECT coalesce(sum(rows), 0)::bigint AS scored_count, sum(total) / nullif(sum(rows), 0) AS mean_compound,
       ARRAY(SELECT coalesce(b.rows, 0)::integer FROM generate_series(0, 19) AS g (bin)
             LEFT JOIN bins AS b USING (bin) ORDER BY g.bin) AS histogram,
       NULL::timestamptz AS computed_at, (SELECT yes FROM settled) AS kept
FROM bins;

-- name: batch_summaries_keep
-- Keep a settled batch's counted summary (batch_summaries_count) while the batch exists and is not deleted (its row locked against the reaper until commit); the first one kept stays.
INSERT INTO batch_summaries (batch_id, scored_count, mean_compound, histogram)
SELECT b.id, %(scored_count)s, %(mean_compound)s, %(histogram)s
FROM batches AS b
-- A batch marked deleted or reaped before this statement began keeps nothing (one marked later keeps
-- its summary until the reaper's DELETE cascades to it).
WHERE b.id = %(batch_id)s AND b.deleted_at IS NULL
FOR KEY SHARE
ON CONFLICT (batch_id) DO NOTHING
RETURNING computed_at;
