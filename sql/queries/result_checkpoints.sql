-- name: result_checkpoints_write
-- Note where every `every`-th row of one ordered or filtered list of a finished batch's results lies ({order}, {filter}, {position} as core/batches/ordering.py composes them), plus rank 0, which says the list's checkpoints are all written. One pass over the list's index range, once per batch and list.
INSERT INTO result_checkpoints (batch_id, listing, rank, position)
SELECT %(batch_id)s, %(listing)s, ranked.rank, ranked.position
FROM (
    SELECT row_number() OVER (ORDER BY {order}) AS rank, {position} AS position
    FROM batch_results
    WHERE batch_id = %(batch_id)s AND {filter}
) AS ranked
WHERE mod(ranked.rank, %(every)s) = 0
UNION ALL
SELECT %(batch_id)s, %(listing)s, 0, NULL
ON CONFLICT (batch_id, listing, rank) DO NOTHING;

-- name: result_checkpoints_nearest
-- The checkpoint at or before a rank of one list (rank 0 when the list's checkpoints are written but none is that early); nothing when they are not written yet.
SELECT rank, position
FROM result_checkpoints
WHERE batch_id = %(batch_id)s AND listing = %(listing)s AND rank <= %(rank)s
ORDER BY rank DESC
LIMIT 1;
