-- name: idempotency_keys_reserve
-- Take an upload's Idempotency-Key for this transaction; a second upload with the same key waits here until the first commits or rolls back (lock_timeout bounds the wait). Nothing comes back when the key is taken.
INSERT INTO idempotency_keys (client, key) VALUES (%(client)s, %(key)s)
ON CONFLICT (client, key) DO NOTHING
RETURNING key;

-- name: idempotency_keys_get
-- The upload an Idempotency-Key made: its batch's public id (NULL once the batch is deleted), the hash of its file and options, and whether it is younger than IDEMPOTENCY_TTL.
SELECT b.public_id, k.body_sha256,
       k.created_at > now() - make_interval(secs => %(ttl_seconds)s) AND b.deleted_at IS NULL AS live
FROM idempotency_keys AS k
LEFT JOIN batches AS b ON b.id = k.batch_id
WHERE k.client = %(client)s AND k.key = %(key)s;

-- name: idempotency_keys_drop
-- Free an expired key for a new upload (inside that upload's transaction).
DELETE FROM idempotency_keys WHERE client = %(client)s AND key = %(key)s;

-- name: idempotency_keys_record
-- Tie the reserved key to the batch the upload made and the hash of its file and options (committed with the batch).
UPDATE idempotency_keys SET batch_id = %(batch_id)s, body_sha256 = %(body_sha256)s
WHERE client = %(client)s AND key = %(key)s;

-- name: idempotency_keys_forget
-- Housekeeping: drop keys older than IDEMPOTENCY_TTL (reads idempotency_keys_created_idx).
DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %(ttl_seconds)s);
