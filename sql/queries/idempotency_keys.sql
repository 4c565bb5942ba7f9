-- name: idempotency_keys_reserve
-- Take an upload's Idempotency-Key for this transaction: insert it, or take over a row whose key is older than IDEMPOTENCY_TTL (a deleted batch's keys are deleted with it). A second upload with the same key waits here until the first commits or rolls back (lock_timeout bounds the wait), then sees the committed row. Nothing comes back when a live upload holds the key.
INSERT INTO idempotency_keys AS k (client, key) VALUES (%(client)s, %(key)s)
ON CONFLICT (client, key) DO UPDATE SET batch_id = NULL, body_sha256 = NULL, created_at = now()
-- Only the conflicting row's own columns: they are re-read at its latest version once its lock is
-- ours, where a subquery would still see this statement's older snapshot.
WHERE k.created_at <= now() - make_interval(secs => %(ttl_seconds)s)
RETURNING key;

-- name: idempotency_keys_get
-- The live upload that holds an Idempotency-Key (younger than IDEMPOTENCY_TTL, its batch committed): its batch's public id and the hash of its file and options.
SELECT b.public_id, k.body_sha256
FROM idempotency_keys AS k
JOIN batches AS b ON b.id = k.batch_id
WHERE k.client = %(client)s AND k.key = %(key)s
  AND k.created_at > now() - make_interval(secs => %(ttl_seconds)s);

-- name: idempotency_keys_record
-- Tie the reserved key to the batch the upload made and the hash of its file and options (committed with the batch).
UPDATE idempotency_keys SET batch_id = %(batch_id)s, body_sha256 = %(body_sha256)s
WHERE client = %(client)s AND key = %(key)s;

-- name: idempotency_keys_forget
-- Housekeeping: drop up to `limit` keys older than IDEMPOTENCY_TTL, oldest first (reads idempotency_keys_created_idx).
DELETE FROM idempotency_keys
WHERE (client, key) IN (
    SELECT client, key FROM idempotency_keys
    WHERE created_at < now() - make_interval(secs => %(ttl_seconds)s)
    ORDER BY created_at
    LIMIT %(limit)s
);
