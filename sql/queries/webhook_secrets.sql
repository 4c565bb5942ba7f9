-- name: webhook_secrets_set
-- Give an API key a new webhook signing secret; the one it replaces (its own, or WEBHOOK_SECRET for its first: previous_secret NULL) goes on signing for overlap_seconds, and when that ends.
INSERT INTO webhook_secrets AS s (client, secret, previous_until)
SELECT name, %(secret)s, now() + make_interval(secs => %(overlap_seconds)s)
FROM api_keys WHERE name = %(client)s
ON CONFLICT (client) DO UPDATE
SET secret = excluded.secret,
    created_at = now(),
    previous_secret = s.secret,
    previous_until = now() + make_interval(secs => %(overlap_seconds)s)
RETURNING client, previous_until;
