-- name: webhook_secrets_set
-- Give an API key a new webhook signing secret; the one it replaces goes on signing for overlap_seconds, and when that ends.
INSERT INTO webhook_secrets AS s (client, secret)
SELECT name, %(secret)s FROM api_keys WHERE name = %(client)s
ON CONFLICT (client) DO UPDATE
SET secret = excluded.secret,
    created_at = now(),
    previous_secret = s.secret,
    previous_until = now() + make_interval(secs => %(overlap_seconds)s)
RETURNING client, previous_until;
