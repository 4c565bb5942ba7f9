-- name: webhook_secrets_set
-- Give an API key a new webhook signing secret (replacing its old one).
INSERT INTO webhook_secrets AS s (client, secret)
SELECT name, %(secret)s FROM api_keys WHERE name = %(client)s
ON CONFLICT (client) DO UPDATE SET secret = excluded.secret, created_at = now()
RETURNING client;
