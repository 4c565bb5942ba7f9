-- name: result_checkpoints_extend
-- Read on through one ordered or filtered list of a finished batch's results ({source}, {keys}, {order}, {filter}, {after} as core/batches/ordering.py composes them) from its last checkpoint, at most `scan` rows, noting where every `every`-th row lies; how many rows were read (fewer than `scan`: the list ended).
WITH scanned AS (
    -- Keys only (an index-only range), numbered from the checkpoint; the
    -- position is built for the one row in `every` that is kept.
    SELECT {keys}, row_number() OVER (ORDER BY {order}) AS n
    FROM (
        SELECT {keys} FROM {source}
        WHERE batch_id = %(batch_id)s AND {filter} {after}
        ORDER BY {order}
        LIMIT %(scan)s
    ) AS range_keys
), written AS (
    INSERT INTO result_checkpoints (batch_id, listing, rank, position)
    SELECT %(batch_id)s, %(listing)s, %(base)s + n, {position}
    FROM scanned
    WHERE mod(n, %(every)s) = 0
    ON CONFLICT (batch_id, listing, rank) DO NOTHING
)
SELECT count(*) AS scanned FROM scanned;

-- name: result_checkpoints_complete
-- Note that a list's checkpoints reach its end (rank 0): no page of it needs more of them.
INSERT INTO result_checkpoints (batch_id, listing, rank, position)
VALUES (%(batch_id)s, %(listing)s, 0, NULL)
ON CONFLICT (batch_id, listing, rank) DO NOTHING;

-- name: result_checkpoints_nearest
-- Three index probes of one list's checkpoints: the nearest at or before a rank, the last one written, and whether they reach the end of the list (rank 0).
SELECT coalesce(near.rank, 0) AS rank, near.position,
       coalesce(last.rank, 0) AS last_rank, last.position AS last_position,
       EXISTS (SELECT 1 FROM result_checkpoints
               WHERE batch_id = %(batch_id)s AND listing = %(listing)s AND rank = 0) AS complete
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT rank, position FROM result_checkpoints
    WHERE batch_id = %(batch_id)s AND listing = %(listing)s AND rank > 0 AND rank <= %(rank)s
    ORDER BY rank DESC LIMIT 1
) AS near ON true
LEFT JOIN LATERAL (
    SELECT rank, position FROM result_checkpoints
    WHERE batch_id = %(batch_id)s AND listing = %(listing)s AND rank > 0
    ORDER BY rank DESC LIMIT 1
) AS last ON true;
